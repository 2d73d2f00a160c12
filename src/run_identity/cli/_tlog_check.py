"""``tlog check-consistency OLD NEW --tlog DIR_OR_URL --tlog-key VKEY``: does NEW extend OLD?

Both checkpoints must verify under the log key and the tiles at ``--tlog`` must hash to NEW's root; then an
RFC 9162 consistency proof computed from them must lead from OLD's root to NEW's (exit 0). Otherwise the log
forked (exit 1): the first differing entry is found by comparing the two trees when the tiles OLD was read
from are given (``--old-tlog``), else the tree size within which they differ is named.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._tlog_args import log_trust
from run_identity.core.merkle import ProofError, fork_point, verify_consistency
from run_identity.core.note import Checkpoint
from run_identity.core.tlog import TILE_WIDTH, TileReader, TlogError, parse_entry
from run_identity.verify.render import esc
from run_identity.verify.tlog import CheckedCheckpoint, LogError, LogTrust, check_checkpoint, log_fetcher

__all__ = ["register_commands"]


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{what} {esc(path)}: cannot read ({exc.strerror})") from None


def _checkpoint(path: str, trust: LogTrust) -> CheckedCheckpoint:
    try:
        return check_checkpoint(_read(path, "checkpoint"), trust, path)
    except LogError as exc:
        raise CliError(str(exc)) from None


def _reader(location: str, checkpoint: Checkpoint, what: str) -> TileReader:
    """The tiles at ``location`` read at ``checkpoint``'s size, checked to hash to its root."""
    reader = TileReader(log_fetcher(location), checkpoint.size)
    try:
        root = reader.tree_hash()
    except TlogError as exc:
        raise CliError(
            f"{what} {esc(location)}: the tiles of tree size {checkpoint.size:,} cannot be read: {exc}"
        ) from None
    if root != checkpoint.root_hash:
        raise CliError(
            f"{what} {esc(location)}: its tiles hash to root {_b64(root)} at tree size {checkpoint.size:,}, "
            f"the checkpoint says {_b64(checkpoint.root_hash)}"
        )
    return reader


def _describe_entry(reader: TileReader, index: int) -> str:
    try:
        statement, _ = parse_entry(reader.bundle(index // TILE_WIDTH)[index % TILE_WIDTH])
    except (TlogError, IndexError):
        return "an entry that is not a signed statement"
    return f"run {statement.trace_id}/{statement.span_id} ({statement.identity}, declared {statement.declared_at})"


def _check_consistency(args: argparse.Namespace) -> int:
    trust = log_trust(argparse.Namespace(tlog_key=args.tlog_key, witness_key=None, witness_quorum=None))
    old = _checkpoint(args.old, trust).checkpoint
    new = _checkpoint(args.new, trust).checkpoint
    if old.size > new.size:
        raise CliError(f"OLD has tree size {old.size:,}, NEW {new.size:,}: give the smaller one first", exit_code=2)
    reader = _reader(args.tlog, new, "--tlog")
    try:
        proof = reader.consistency_proof(old.size)
    except TlogError as exc:
        raise CliError(f"--tlog {esc(args.tlog)}: {exc}") from None
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except ProofError as exc:
        return _fork(args, old, new, reader, str(exc))
    print(
        f"consistent: tree size {new.size:,} (root {_b64(new.root_hash)}) extends tree size {old.size:,} "
        f"(root {_b64(old.root_hash)}) of {esc(old.origin)}; RFC 9162 consistency proof of {len(proof)} "
        "hashes verified"
    )
    return 0


def _fork(args: argparse.Namespace, old: Checkpoint, new: Checkpoint, reader: TileReader, why: str) -> int:
    print(f"FORK: {esc(old.origin)}: tree size {new.size:,} does not extend tree size {old.size:,} ({why})")
    if args.old_tlog is None:
        here = reader.tree_hash(old.size)
        print(
            f"  the tiles at --tlog give tree size {old.size:,} the root {_b64(here)}, OLD signs "
            f"{_b64(old.root_hash)}: the two histories differ within their first {old.size:,} entries "
            "(give --old-tlog, the tiles OLD was read from, to find the first differing entry)"
        )
        return 1
    old_reader = _reader(args.old_tlog, old, "--old-tlog")
    shared = fork_point(old.size, old_reader.node, new.size, reader.node)
    if shared is None:  # cannot happen when the proof failed and both tile sets match their roots
        raise CliError("the two trees agree although the consistency proof failed: the tiles changed while read")
    print(f"  the two histories share their first {shared:,} entries; entry {shared:,} differs:")
    for side, where, tiles in (("OLD", args.old_tlog, old_reader), ("NEW", args.tlog, reader)):
        described = esc(_describe_entry(tiles, shared))
        print(f"    {side} ({esc(where)}): leaf {_b64(tiles.leaf_hash(shared))}, {described}")
    return 1


def register_commands(sub: Any) -> None:
    """Add check-consistency to the ``tlog`` command's subparsers."""
    p = sub.add_parser("check-consistency", help="prove that NEW extends OLD (RFC 9162), or say where they fork")
    p.add_argument("old", metavar="OLD", help="the older checkpoint (file)")
    p.add_argument("new", metavar="NEW", help="the newer checkpoint (file)")
    p.add_argument("--tlog", required=True, metavar="DIR_OR_URL", help="the log's tiles (at least NEW's size)")
    p.add_argument("--tlog-key", required=True, metavar="VKEY", help="the log's verifier key (file or text)")
    p.add_argument("--old-tlog", metavar="DIR_OR_URL", help="the tiles OLD was read from, to locate a fork")
    p.set_defaults(func=_check_consistency)
