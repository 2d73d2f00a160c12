"""Issue 16 benchmark: ``verify`` on a local Dask cluster against one process, on the same input.

Runs (span + manifest, the minimal composition of bench_verify.py) are generated into a folder, then each
mode runs in a fresh subprocess: one process (``Verifier.verify``), and ``dask=Client(local:N)``. Printed
per mode as one JSON object: wall seconds (verification and JSON output to /dev/null), CPU seconds of
every process involved (the client, each worker), the peak resident memory of each (``VmHWM``), and the
machine's load average before and after, since a shared machine's other jobs change wall times.

    python bench/bench_verify_dask.py [--runs N] [--workers N] [--keep DIR] [--modes single,dask]
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
from typing import Any

HERE = Path(__file__).resolve().parent


def _hwm_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    return 0


def measure(folder: str, mode: str, workers: int) -> dict[str, Any]:
    """Verify ``folder`` in ``mode`` (``single`` or ``dask``) in this process; the figures."""
    from run_identity.core.keys import Keyring
    from run_identity.verify import Policy, Verifier
    from run_identity.verify.report import write_json

    verifier = Verifier(Keyring.from_jwks(folder + ".jwks.json"), Policy())
    out: dict[str, Any] = {"mode": mode if mode == "single" else f"dask local:{workers}"}
    out["load_before"] = os.getloadavg()[0]
    cpu0 = time.process_time()
    if mode == "dask":
        from run_identity.verify.cluster import connect

        client, close = connect(f"local:{workers}")
        try:
            before = client.run(time.process_time)
            start = time.time()
            report = verifier.verify([folder], dask=client)
            with open(os.devnull, "w") as sink:
                write_json(report, sink)
            out["wall_s"] = round(time.time() - start, 1)
            after = client.run(time.process_time)
            out["worker_cpu_s"] = round(sum(after.values()) - sum(before.values()), 1)
            out["worker_peak_mb"] = sorted(client.run(_hwm_mb).values())
        finally:
            close()
    else:
        start = time.time()
        report = verifier.verify([folder])
        with open(os.devnull, "w") as sink:
            write_json(report, sink)
        out["wall_s"] = round(time.time() - start, 1)
    out["client_cpu_s"] = round(time.process_time() - cpu0, 1)
    out["client_peak_mb"] = _hwm_mb()
    out["runs"] = report.runs
    out["load_after"] = os.getloadavg()[0]
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="generate into (or reuse) DIR/export instead of a temp dir")
    parser.add_argument("--modes", default="single,dask")
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.workers)), flush=True)
        return 0
    sys.path.insert(0, str(HERE))
    from bench_verify import generate

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        folder = base / "export"
        if not folder.exists():
            started = time.time()
            generate(folder, "minimal", args.runs, processes=2)
            print(f"generated {args.runs:,} runs in {time.time() - started:.0f} s", flush=True)
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--workers", str(args.workers), "--measure", str(folder), mode]
            subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
