"""Peak memory of ``run-identity verify`` on bad input (the verdict issue, item 12), as a multiple of the largest
record it reads.

Two inputs, each verified in a subprocess whose peak RSS (``ru_maxrss``) is measured:

* garbage: ``--lines`` lines of ``{`` (default 3,000,000), none of them JSON;
* a huge manifest: one signed run whose composition holds ``--elements`` messages (default 1,000,000), its
  manifest re-encoded non-canonically (indented), exported as OTLP/JSON lines beside its span.

    python bench/bench_bad_input.py [--lines N] [--elements N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from run_identity import Composition, sign_run
from run_identity.core.keys import Ed25519Signer, Keyring

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked from this (large) process would
# report this process's size.
_CHILD = """
import sys
from run_identity.cli import main
code = main(sys.argv[1:])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(code, int(hwm.split()[1]) // 1024, file=sys.stderr)
"""


def _peak(path: Path, keyring: Path) -> tuple[int, float, int]:
    """Exit code, wall seconds and peak RSS (MB) of ``run-identity verify`` in a process of its own."""
    argv = [sys.executable, "-c", _CHILD, "verify", str(path), "--keyring", str(keyring)]
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    code, peak = done.stderr.split()[-2:]
    return int(code), wall, int(peak)


def _log_line(body: str) -> str:
    record = {
        "eventName": "run_identity.manifest",
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "body": {"stringValue": body},
    }
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})


def _span_line(attributes: dict[str, str]) -> str:
    span = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "name": "chat",
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=3_000_000)
    parser.add_argument("--elements", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-bad-"))
    signer = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    keyring = root / "keys.jwks"
    keyring.write_text(json.dumps(Keyring([signer.public_key]).to_jwks()))

    empty = root / "empty"
    empty.mkdir()
    _, _, base = _peak(empty, keyring)
    print(f"baseline (the CLI verifying an empty folder): peak RSS {base:,} MB")
    garbage = root / "garbage.jsonl"
    garbage.write_bytes(b"{\n" * args.lines)
    code, wall, peak = _peak(garbage, keyring)
    size = garbage.stat().st_size / 1e6
    print(f"{args.lines:,} lines of '{{' ({size:,.0f} MB): exit {code}, peak RSS {peak:,} MB, {wall:,.0f} s")

    messages = [{"role": "user", "parts": [{"type": "text", "content": f"message {i}"}]} for i in range(args.elements)]
    composition = Composition.from_dict(
        {"model": {"provider": "openai", "name": "gpt-4o-mini"}, "operation": "chat", "messages": messages}
    )
    run = sign_run(composition, signer, trace_id=TRACE_ID, span_id=SPAN_ID)
    body = json.dumps(json.loads(run.manifest_json()), indent=1)  # not canonical: the parsed path
    export = root / "export"
    export.mkdir()
    (export / "manifests.jsonl").write_text(_log_line(body) + "\n")
    attributes = {**run.span_attributes(), "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
    (export / "traces.jsonl").write_text(_span_line(attributes) + "\n")
    line = (export / "manifests.jsonl").stat().st_size / 1e6
    code, wall, peak2 = _peak(export, keyring)
    print(
        f"one manifest of {args.elements:,} messages, re-encoded ({len(body) / 1e6:,.0f} MB body, "
        f"{line:,.0f} MB line): "
        f"exit {code}, peak RSS {peak2:,} MB, {peak2 - base:,} MB over the baseline "
        f"({(peak2 - base) / line:,.1f}x the line), {wall:,.0f} s"
    )
    for path in sorted(root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    root.rmdir()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
