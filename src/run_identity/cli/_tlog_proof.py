"""``tlog proof`` and ``tlog verify-proof``: one run's inclusion in the log, as a C2SP tlog-proof.

The proof (c2sp.org/tlog-proof) carries the entry's index, its inclusion proof and the checkpoint verbatim
(with any witness cosignatures); its ``extra`` line carries the entry itself (docs/spec.md: the canonical
``{"signature", "statement"}`` of the run), so the proof is checked offline with the log key and the
producers' keyring alone: the entry's signature under a trusted key, the checkpoint under the log key (and
the witness quorum), the inclusion proof of the entry's leaf against the checkpoint's root. The extra data
is trusted only through these checks. Given the run's manifest too, its statement and signature must be
the entry's, and the manifest is checked as ``verify`` checks a manifest file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._tlog_args import add_log_options, log_trust
from run_identity.core.errors import KeyringError
from run_identity.core.keys import Keyring
from run_identity.core.merkle import ProofError, leaf_hash, verify_inclusion
from run_identity.core.statement import BindingStatement
from run_identity.core.tlog import TlogError, TlogProof, entry_bytes, parse_entry
from run_identity.verify import SPAN_MISSING, Policy, Verifier
from run_identity.verify.lookup import RunNotFound, find_runs_of, load_manifest_file, parse_selector
from run_identity.verify.render import esc
from run_identity.verify.tlog import INCLUDED, LogError, TransparencyLog, check_checkpoint

__all__ = ["register_proof_commands"]


def _signed_of_manifest(path: str) -> tuple[BindingStatement, bytes]:
    try:
        found = load_manifest_file(path, Verifier.insecure(Policy(allow_empty=True)))
    except RunNotFound as exc:
        raise CliError(str(exc)) from None
    manifest = found.manifests[0][0]
    return manifest.statement, manifest.signature


def _signed_of_run(run: str, export: list[str]) -> tuple[BindingStatement, bytes]:
    selector = parse_selector(run.replace(":", "/", 1))
    if selector is None or selector.trace_id is None or selector.span_id is None:
        raise CliError(f"--run {esc(run)}: give TRACE_ID:SPAN_ID (hex)", exit_code=2)
    found = find_runs_of(export, [selector], Verifier.insecure(Policy(allow_empty=True)))[0]
    manifests = [m for f in found for m, _ in f.manifests]
    if not manifests:
        raise CliError(f"--run {esc(run)}: no manifest of this run in {esc(', '.join(export))}")
    return manifests[0].statement, manifests[0].signature


def _proof(args: argparse.Namespace) -> int:
    if not args.tlog:
        raise CliError("--tlog DIR_OR_URL is required (the log holding the run)", exit_code=2)
    if (args.manifest is None) == (args.run is None):
        raise CliError("give a MANIFEST_FILE, or --run TRACE:SPAN with --export", exit_code=2)
    if args.run is not None and not args.export:
        raise CliError("--run needs --export PATH (the exported data holding the run)", exit_code=2)
    if args.manifest:
        statement, signature = _signed_of_manifest(args.manifest)
    else:
        statement, signature = _signed_of_run(args.run, args.export)
    try:
        log = TransparencyLog(args.tlog, log_trust(args))
    except LogError as exc:
        raise CliError(f"transparency log not verified: {exc}") from None
    found = log.inclusion(statement, signature)
    if found.status != INCLUDED or found.index is None:
        raise CliError(f"run {statement.trace_id}/{statement.span_id}: {found.reason}")
    entry = entry_bytes(statement, signature)
    proof = TlogProof(found.index, tuple(log.reader.inclusion_proof(found.index)), log.checked.note, entry)
    data = proof.encode()
    if args.out:
        Path(args.out).write_bytes(data)
        run = f"{statement.trace_id}/{statement.span_id}"
        print(f"wrote {esc(args.out)}: run {run} is entry {found.index:,} of {esc(log.origin)}")
    else:
        sys.stdout.write(data.decode("utf-8"))
    return 0


def _verify_proof(args: argparse.Namespace) -> int:
    data = _read(args.proof)
    try:
        proof = TlogProof.decode(data)
    except TlogError as exc:
        raise CliError(f"{esc(args.proof)}: not a tlog-proof: {exc}") from None
    try:
        keyring = Keyring.from_jwks(args.keyring)
    except KeyringError as exc:
        raise CliError(str(exc)) from None
    entry = proof.extra
    if args.manifest is not None:
        statement, signature = _signed_of_manifest(args.manifest)
        own = entry_bytes(statement, signature)
        if entry is not None and entry != own:
            raise CliError(f"{esc(args.proof)}: its entry is not the signed statement of {esc(args.manifest)}")
        entry = own
    if entry is None:
        raise CliError(f"{esc(args.proof)}: carries no entry (extra line); give the run's MANIFEST_FILE", exit_code=2)
    try:
        statement, signature = parse_entry(entry)
    except TlogError as exc:
        raise CliError(f"{esc(args.proof)}: its entry is not a signed statement: {exc}") from None
    if statement.key_id not in keyring:
        raise CliError(f"{esc(args.proof)}: the entry is signed by key {statement.key_id}, not in the keyring")
    if not keyring.verify(statement.key_id, signature, statement.signing_input()):
        raise CliError(f"{esc(args.proof)}: the entry's signature does not verify over its statement")
    try:
        checked = check_checkpoint(proof.checkpoint, log_trust(args), args.proof)
    except LogError as exc:
        raise CliError(str(exc)) from None
    c = checked.checkpoint
    try:
        verify_inclusion(leaf_hash(entry), proof.index, c.size, list(proof.proof), c.root_hash)
    except ProofError as exc:
        raise CliError(f"{esc(args.proof)}: the inclusion proof does not verify: {exc}") from None
    if args.manifest is not None:
        result = load_manifest_file(args.manifest, Verifier(keyring, Policy(allow={SPAN_MISSING}))).result
        if result is None or not result.passed:
            code = result.code if result else "unreadable"
            raise CliError(f"{esc(args.manifest)}: the manifest itself does not verify ({code})")
    witnesses = ", ".join(esc(n) for n, _ in checked.cosigners) or "none"
    print(
        f"verified: run {statement.trace_id}/{statement.span_id} ({statement.identity}) is entry {proof.index:,} "
        f"of {esc(c.origin)} at tree size {c.size:,}; witnesses cosigning: {witnesses}"
    )
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{esc(path)}: cannot read ({exc.strerror})") from None


def register_proof_commands(sub: Any) -> None:
    """Add ``proof`` and ``verify-proof`` to the ``tlog`` command's subparsers."""
    p = sub.add_parser("proof", help="write a C2SP tlog-proof of one run's entry in the log")
    p.add_argument("manifest", nargs="?", metavar="MANIFEST_FILE", help="the run's manifest (JSON or protobuf)")
    p.add_argument("--run", metavar="TRACE:SPAN", help="the run, found in --export")
    p.add_argument("--export", action="append", metavar="PATH", help="exported data holding --run")
    p.add_argument("--out", metavar="FILE", help="write the proof here (default: standard output)")
    add_log_options(p, window=False)
    p.set_defaults(func=_proof)

    p = sub.add_parser("verify-proof", help="check a tlog-proof offline: entry signature, checkpoint, inclusion")
    p.add_argument("proof", metavar="PROOF", help="the .tlog-proof file")
    p.add_argument("manifest", nargs="?", metavar="MANIFEST_FILE", help="the run's manifest, checked too")
    p.add_argument("--keyring", required=True, metavar="JWKS", help="trusted producer keys")
    p.add_argument("--tlog-key", required=True, metavar="VKEY", help="the log's verifier key (file or text)")
    p.add_argument("--witness-key", action="append", metavar="VKEY", help="a trusted witness key (repeatable)")
    p.add_argument("--witness-quorum", type=int, metavar="N", help="cosignatures required (default: every key)")
    p.set_defaults(func=_verify_proof)
