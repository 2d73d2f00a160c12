"""Commands of the verifier: ``verify``, ``diff`` and ``show`` (a thin layer over run_identity.verify)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._args import check_jobs
from run_identity.core.errors import KeyringError, ManifestError
from run_identity.core.keys import Keyring
from run_identity.core.receipt import Receipt
from run_identity.verify import FAILURE_CODES, MANIFEST_MISSING, SPAN_MISSING, Policy, Verifier
from run_identity.verify.diff import diff_manifests
from run_identity.verify.lookup import (
    FoundRun,
    Selector,
    find_runs_of,
    load_manifest_file,
    parse_selector,
    run_labels,
)
from run_identity.verify.render import esc, render_diff, render_manifest, render_receipt, render_status
from run_identity.verify.report import INSECURE_BANNER, ProgressBar, write_json, write_text

__all__ = ["register"]


def _salts(paths: list[str] | None) -> list[bytes]:
    salts = []
    for path in paths or ():
        try:
            text = Path(path).read_text(encoding="ascii").strip()
            salts.append(bytes.fromhex(text))
        except (OSError, UnicodeDecodeError, ValueError):
            raise CliError(f"{path}: a salt file holds the salt as hex digits") from None
    return salts


def _policy(args: argparse.Namespace, *, allow: tuple[str, ...] = ()) -> Policy:
    require = [c.strip() for item in getattr(args, "require_content", None) or () for c in item.split(",") if c.strip()]
    expect = getattr(args, "expect", None)
    exact = at_least = None
    if expect is not None:
        text = expect.strip()
        try:
            if text.endswith("+"):
                at_least = int(text[:-1])
            else:
                exact = int(text)
        except ValueError:
            raise CliError(f"--expect {expect}: give a number of runs (N, or N+ for at least N)", exit_code=2) from None
    try:
        return Policy(
            allow=(*(getattr(args, "allow", None) or ()), *allow),
            require_content=require,
            allow_empty=getattr(args, "allow_empty", False),
            expect=exact,
            expect_min=at_least,
            require_identity=getattr(args, "require_identity", False),
        )
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None


def _verifier(args: argparse.Namespace, policy: Policy) -> Verifier:
    salts = _salts(getattr(args, "salt_file", None))
    if args.insecure_skip_signatures:
        if args.keyring:
            raise CliError("--keyring and --insecure-skip-signatures exclude each other", exit_code=2)
        sys.stderr.write(INSECURE_BANNER)
        return Verifier.insecure(policy, salts=salts)
    if not args.keyring:
        raise CliError("--keyring JWKS is required (the trusted public keys)", exit_code=2)
    try:
        keyring = Keyring.from_jwks(args.keyring)
    except KeyringError as exc:
        raise CliError(str(exc)) from None
    return Verifier(keyring, policy, salts=salts)


def _verify(args: argparse.Namespace) -> int:
    jobs = check_jobs(args.jobs) or (os.cpu_count() or 1)
    if args.dask is None:
        return _verify_with(args, jobs, None)
    from run_identity.verify.cluster import connect, parse_scheduler

    try:
        parse_scheduler(args.dask)
    except ValueError as exc:
        raise CliError(f"--dask {exc}", exit_code=2) from None
    try:
        client, close = connect(args.dask)
    except (OSError, TimeoutError) as exc:
        raise CliError(f"--dask {args.dask}: cannot reach the scheduler ({exc})") from None
    try:
        return _verify_with(args, jobs, client)
    finally:
        close()


def _verify_with(args: argparse.Namespace, jobs: int, client: Any) -> int:
    verifier = _verifier(args, _policy(args))
    bar = ProgressBar()
    try:
        report = verifier.verify(args.paths, jobs=jobs, progress=bar, dask=client)
    finally:
        bar.close()
    if args.json:
        write_json(report, sys.stdout)
    else:
        write_text(report, sys.stdout)
    if report.insecure:
        sys.stderr.write(INSECURE_BANNER)
    return 0 if report.passed else 1


def _selector(name: str, inputs: list[str] | None) -> Selector:
    selector = parse_selector(name)
    if selector is None and inputs:  # a run label, as the demo's table shows it
        labelled = run_labels(inputs).get(name)
        selector = parse_selector(labelled) if labelled is not None else None
    if selector is None:
        what = "neither a manifest file, an identity (sha256:…), TRACE_ID[/SPAN_ID] nor a run label"
        raise CliError(f"{esc(name)}: {what}", 2)
    if not inputs:
        raise CliError(f"{esc(name)}: give the exported data to search with --in PATH", exit_code=2)
    return selector


def _find_all(names: list[str], inputs: list[str] | None, verifier: Verifier) -> list[tuple[FoundRun, str]]:
    """The run each name designates (a manifest file, or an identity / trace id / run id in ``inputs``),
    reading ``inputs`` once for all of them."""
    selectors = {n: _selector(n, inputs) for n in names if not os.path.isfile(n)}
    searched = find_runs_of(inputs or [], list(selectors.values()), verifier) if selectors else []
    found = dict(zip(selectors, searched, strict=True))
    return [
        _one(n, found[n], selectors[n], inputs or []) if n in selectors else (load_manifest_file(n, verifier), n)
        for n in names
    ]


def _one(name: str, runs: list[FoundRun], selector: Selector, inputs: list[str]) -> tuple[FoundRun, str]:
    if not runs:
        raise CliError(f"{esc(name)}: no run with a readable manifest matches in {esc(', '.join(inputs))}")
    if len(runs) > 1:
        listed = ", ".join(r.run for r in runs[:5])
        more = "give more digits" if selector.identity is not None else "give TRACE_ID/SPAN_ID"
        raise CliError(f"{esc(name)}: matches {len(runs)} runs ({listed}); {more}")
    return runs[0], runs[0].run


def _receipt_file(path: str) -> Receipt | None:
    """The receipt a file holds (``run-identity`` writes receipt.json files), or None for any other file."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        if b'"receipt"' not in head:
            return None
        return Receipt.from_json(Path(path).read_bytes())
    except (OSError, ManifestError):
        return None


def _show_receipt_file(args: argparse.Namespace, receipt: Receipt) -> int:
    """A receipt file checked on its own, as ``verify`` checks it: signature, output, ids; no run beside it."""
    verifier = _verifier(args, _policy(args, allow=(MANIFEST_MISSING,)))
    report = verifier.verify([args.run])
    result = next(iter(report.results()), None)
    if args.json:
        out = {"result": result.to_json() if result else None, "receipts": [receipt.to_json()]}
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=True) + "\n")
    else:
        lines = [line for line in render_status(result) if "no span" not in line]
        sys.stdout.write("\n".join(lines) + "\n(receipt file: signature and output checked; no run beside it)\n\n")
        sys.stdout.write(render_receipt(receipt, args.run))
    if not verifier.checks_signatures:
        sys.stderr.write(INSECURE_BANNER)
    return 0 if result is not None and result.passed else 1


def _show(args: argparse.Namespace) -> int:
    manifest_file = os.path.isfile(args.run)
    receipt = _receipt_file(args.run) if manifest_file else None
    if receipt is not None:
        return _show_receipt_file(args, receipt)
    # A manifest file has no span beside it: that one check cannot be made, and is named, not failed.
    verifier = _verifier(args, _policy(args, allow=(SPAN_MISSING,) if manifest_file else ()))
    run, _label = _find_all([args.run], args.inputs, verifier)[0]
    result = run.result
    if args.json:
        out: dict[str, Any] = {
            "result": result.to_json() if result is not None else None,
            "manifest": run.manifests[0][0].to_json() if run.manifests else None,
            "receipts": [r.to_json() for r, _ in run.receipts],
            "insecure": not verifier.checks_signatures,
        }
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=True) + "\n")
    else:
        if run.manifests:
            manifest, where = run.manifests[0]
            sys.stdout.write(render_manifest(manifest, result, where, manifest_file=manifest_file))
        else:
            sys.stdout.write("\n".join(render_status(result)) + "\n")
        for receipt, where in run.receipts:
            sys.stdout.write("\n" + render_receipt(receipt, where))
        others = len(run.manifests) - 1
        if others > 0:
            sys.stdout.write(f"\n({others} other manifest(s) for this run in the input; see verify)\n")
    if not verifier.checks_signatures:
        sys.stderr.write(INSECURE_BANNER)
    return 0 if result is not None and result.passed else 1


def _diff(args: argparse.Namespace) -> int:
    verifier = Verifier.insecure(Policy(allow_empty=True))
    (run_a, label_a), (run_b, label_b) = _find_all([args.run_a, args.run_b], args.inputs, verifier)
    for run, name in ((run_a, args.run_a), (run_b, args.run_b)):
        if not run.manifests:
            raise CliError(f"{esc(name)}: no readable manifest for this run")
    manifest_a, manifest_b = run_a.manifests[0][0], run_b.manifests[0][0]
    unproven: list[str] = []  # sides whose content does not (or cannot) stand for their identity
    for side, manifest, label in (("A", manifest_a, label_a), ("B", manifest_b, label_b)):
        if manifest.salt_id is not None:
            unproven.append(f"{side} is salted (its content was not recomputed)")
            continue
        problems = manifest.recompute().problems
        if problems:
            unproven.append(f"{side} does not recompute to its identity")
            sys.stderr.write(
                f"run-identity: warning: {side} ({esc(label)}) does not recompute to its identity "
                f"(identity_mismatch: {esc(problems[0])}); the diff shows its content as found\n"
            )
    diff = diff_manifests(manifest_a, manifest_b)
    if args.json:
        sys.stdout.write(json.dumps(diff.to_json(), indent=2, ensure_ascii=True, default=str) + "\n")
    else:
        sys.stdout.write(render_diff(diff, label_a, label_b))
    if diff.identical and unproven:
        # Equal stated identities say the same composition only when each side's content recomputes to them.
        sys.stdout.write(f"not established: {'; '.join(unproven)}; equal stated identities prove nothing\n")
        return 1
    return 0 if diff.identical else 1


def _trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keyring", metavar="JWKS", help="trusted public keys (JWKS file); required")
    p.add_argument(
        "--insecure-skip-signatures",
        action="store_true",
        help="check NO signature, only internal consistency (never establishes trust)",
    )
    p.add_argument(
        "--salt-file",
        action="append",
        metavar="FILE",
        help="a blinding salt (hex) to recompute salted content",
    )


def register(sub: Any) -> None:
    """Add the verify, diff and show commands."""
    p = sub.add_parser("verify", help="verify exported spans and manifests against trusted keys")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="exported data: files, folders or URLs (s3://...), any OTLP encoding, plain, gzip or zstd",
    )
    _trust_options(p)
    p.add_argument("--json", action="store_true", help="JSON lines: one object per run, then a summary")
    p.add_argument(
        "--allow",
        action="append",
        choices=FAILURE_CODES,
        metavar="CODE",
        help="tolerate this result code (repeatable; never a missing, unknown or bad signature)",
    )
    p.add_argument(
        "--require-content",
        action="append",
        metavar="COMPONENTS",
        help="fail runs that withhold these components (comma-separated, e.g. model,parameters)",
    )
    p.add_argument("--allow-empty", action="store_true", help="pass when the input holds no run at all")
    p.add_argument(
        "--require-identity",
        action="store_true",
        help="every model-call span (chat, text_completion, generate_content, embeddings) must carry an identity",
    )
    p.add_argument("--expect", metavar="N", help="fail unless exactly N runs are found (N+ : at least N)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes (0: one per core)")
    p.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="run on Dask: local:N (a local cluster of N worker processes) or tcp://HOST:8786 (needs [dask])",
    )
    p.set_defaults(func=_verify)

    p = sub.add_parser("show", help="a run's manifest, readable, with its verification status")
    p.add_argument("run", metavar="RUN", help="identity, TRACE_ID[/SPAN_ID], or a manifest file")
    p.add_argument("--in", dest="inputs", action="append", metavar="PATH", help="exported data to search")
    _trust_options(p)
    p.add_argument("--json", action="store_true", help="print the result and the manifest as JSON")
    p.set_defaults(func=_show)

    p = sub.add_parser(
        "diff", help="why two runs differ: components, messages, parts, tools, parameters (exit 1 when they differ)"
    )
    p.add_argument("run_a", metavar="RUN_A", help="identity, TRACE_ID[/SPAN_ID], or a manifest file")
    p.add_argument("run_b", metavar="RUN_B", help="identity, TRACE_ID[/SPAN_ID], or a manifest file")
    p.add_argument("--in", dest="inputs", action="append", metavar="PATH", help="exported data to search")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=_diff)
