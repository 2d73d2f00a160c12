"""The ``replay`` command: rebuild a run's exact request from its manifest, send it, compare.

The work is done by :mod:`run_identity.integrations.replay`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._args import check_url
from run_identity.core.attributes import RECEIPT_EVENT_NAME
from run_identity.core.errors import KeyringError, ManifestError
from run_identity.core.keys import Keyring
from run_identity.core.manifest import Manifest
from run_identity.core.receipt import Receipt
from run_identity.integrations.replay import ReplayError, compare, rebuild, send
from run_identity.verify import VERIFIED, CheckContext, InputError, Policy, Verifier, discover
from run_identity.verify.lookup import find_runs, load_manifest_file, parse_selector

__all__ = ["register"]


def _context(keyring: str | None) -> CheckContext:
    if keyring is None:
        return CheckContext(None, {})
    try:
        return CheckContext(Keyring.from_jwks(keyring), {})
    except KeyringError as exc:
        raise CliError(str(exc)) from None


def _manifest(args: argparse.Namespace, ctx: CheckContext) -> tuple[Manifest, str | None]:
    """The run's manifest and, when it was found in exported data, the run's verdict code."""
    if os.path.isfile(args.run):
        found = load_manifest_file(args.run, ctx)
    else:
        selector = parse_selector(args.run)
        if selector is None:
            raise CliError(f"{args.run}: neither a manifest file, an identity (sha256:…) nor TRACE_ID[/SPAN_ID]", 2)
        if not args.inputs:
            raise CliError(f"{args.run}: give the exported data to search with --in PATH", exit_code=2)
        runs = [r for r in find_runs(args.inputs, selector, ctx) if r.manifests]
        if not runs:
            raise CliError(f"{args.run}: no run with a readable manifest matches in {', '.join(args.inputs)}")
        if len({r.key for r in runs}) > 1:
            raise CliError(f"{args.run}: matches {len(runs)} runs; give TRACE_ID/SPAN_ID")
        found = runs[0]
        if ctx.keyring is not None:
            return found.manifests[0][0], _verdict(args.inputs, ctx.keyring, found.key)
    code = found.result.code if found.result is not None else None
    return found.manifests[0][0], code


def _verdict(inputs: list[str], keyring: Keyring, key: bytes) -> str | None:
    """The run's code as ``run-identity verify`` gives it: every check over all the inputs, by the Verifier.

    Every result naming the run counts (a record added for it may be reported on its own); the first that is
    not ``verified`` is the verdict.
    """
    trace_id, span_id = key[:16].hex(), key[16:].hex()
    try:
        report = Verifier(keyring, Policy()).verify(inputs)
    except InputError as exc:
        raise CliError(str(exc)) from None
    codes = [r.code for r in report.results() if (r.trace_id, r.span_id) == (trace_id, span_id)]
    return next((c for c in codes if c != VERIFIED), codes[0] if codes else None)


def _receipt(inputs: list[str] | None, manifest: Manifest) -> Receipt | None:
    """The run's receipt in OTLP-JSON lines exports (the file exporter's form), if any."""
    st = manifest.statement
    for path in discover(inputs or []):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                if RECEIPT_EVENT_NAME not in line:
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError, ManifestError):
                    for resource in json.loads(line).get("resourceLogs", []):
                        for scope in resource.get("scopeLogs", []):
                            for record in scope.get("logRecords", []):
                                if record.get("eventName") != RECEIPT_EVENT_NAME:
                                    continue
                                receipt = Receipt.from_json(record["body"]["stringValue"])
                                if receipt.binds(st):
                                    return receipt
    return None


# Verdicts under which the manifest is not what a trusted key declared, or the run has no single reading.
_UNTRUSTED = frozenset({"malformed", "bad_signature", "unknown_key", "identity_mismatch", "binding_mismatch"})
_TARGETS = {
    "named": "--base-url",
    "official": "the provider's official endpoint",
    "manifest": "the manifest's endpoint, verified",
}


def _check_target(args: argparse.Namespace, ctx: CheckContext, code: str | None) -> None:
    """Refuse ``--use-manifest-endpoint`` unless the run verified (every check, verdict ``verified``)."""
    if not args.use_manifest_endpoint:
        return
    if args.base_url is not None:
        raise CliError("give --base-url or --use-manifest-endpoint, not both", exit_code=2)
    if ctx.keyring is None:
        raise CliError(
            "--use-manifest-endpoint needs --keyring: a manifest's endpoint gets the API key only when the run "
            "verifies against trusted keys",
            exit_code=2,
        )
    if code != VERIFIED:
        raise CliError(
            f"the run's verdict is {code or 'unknown'}, not verified (a manifest file alone has no span: give the "
            "exported data with --in): refusing to send the API key to the manifest's endpoint"
        )


def _replay(args: argparse.Namespace) -> int:
    if args.base_url is not None:
        check_url(args.base_url, "--base-url")
    ctx = _context(args.keyring)
    manifest, code = _manifest(args, ctx)
    out = sys.stdout
    st = manifest.statement
    out.write(f"run       {st.trace_id}/{st.span_id}\n")
    if code is not None and ctx.keyring is not None:
        out.write(f"verified  {code}\n")
        if code in _UNTRUSTED:
            raise CliError(f"the run does not verify ({code}); refusing to replay it")
    elif ctx.keyring is None:
        out.write("verified  not checked (no --keyring)\n")
    _check_target(args, ctx, code)
    try:
        request = rebuild(manifest, args.base_url, use_manifest_endpoint=args.use_manifest_endpoint)
    except ReplayError as exc:
        raise CliError(f"cannot replay: {exc}") from None
    about = f"{request.provider} {request.api}{', streamed' if request.stream else ''}; {_TARGETS[request.target]}"
    out.write(f"request   POST {request.url} ({about})\n")
    out.write(f"identity  {request.original_identity} (declared)\n")
    verdict = "equal: the rebuilt request is the declared one" if request.same_identity else "DIFFERENT"
    out.write(f"rebuilt   {request.identity} ({verdict})\n")
    if args.dry_run:
        out.write(json.dumps(request.body, indent=2, ensure_ascii=False) + "\n")
        return 0 if request.same_identity else 1
    if not request.same_identity:
        raise CliError("the rebuilt request does not have the declared identity; not sent")
    variable = args.api_key_env or request.key_env
    api_key = os.environ.get(variable)
    if not api_key:
        raise CliError(f"set {variable} (or name another variable with --api-key-env) to send the request")
    try:
        output = send(request, api_key)
    except ReplayError as exc:
        raise CliError(str(exc)) from None
    outcome = compare(output, _receipt(args.inputs, manifest))
    out.write(f"output    {outcome.digest} (replayed; model {output.response_model or 'not reported'})\n")
    if outcome.original_digest is None:
        out.write("original  no receipt for this run in the input: outputs not compared\n")
    else:
        same = "the same output" if outcome.same_output else "the outputs differ"
        out.write(f"original  {outcome.original_digest} (receipt): {same}\n")
        if outcome.diff:
            out.write(outcome.diff + "\n")
    return 0


def register(sub: Any) -> None:
    """Add the replay command."""
    p = sub.add_parser("replay", help="rebuild a run's exact request from its manifest, send it, compare outputs")
    p.add_argument("run", metavar="RUN", help="identity, TRACE_ID[/SPAN_ID], or a manifest file")
    p.add_argument("--in", dest="inputs", action="append", metavar="PATH", help="exported data to search")
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="send to this base URL (as given to the client library); default: the provider's official API",
    )
    p.add_argument(
        "--use-manifest-endpoint",
        action="store_true",
        help="send to the manifest's own model.endpoint; only for a run that verifies against --keyring",
    )
    p.add_argument("--keyring", metavar="JWKS", help="check the run against these trusted keys first")
    p.add_argument("--dry-run", action="store_true", help="print the request instead of sending it")
    p.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the API key (default by provider)"
    )
    p.set_defaults(func=_replay)
