"""Issue 17 benchmark: the verifier's extra cost per run with a transparency log (``verify --tlog``).

The same export is verified without a log and with one, alternately in each round, in this process, and the
CPU time (``time.process_time``) of each is compared: the ratio is the extra cost of step 9 (opening the
log: checkpoint, every entry bundle read and hashed to the root and indexed; per run: entry bytes, leaf
hash, an inclusion proof from the tiles and its verification; the runs the export lacks). Goal: at most
25 % more than without the log. Exports: typical (about 17 KB), small and minimal runs as bench_verify.py
generates them, OTLP/JSON lines; logs: one holding exactly the export's runs, and one holding them among
ten times as many entries of another producer (a log shared by many services).

    python3 scripts/dev.py bench verify_tlog [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_tlog import entries as foreign_entries
from bench_verify import generate
from tlog_fixtures import entries_of, publish

from run_identity.core.keys import Keyring
from run_identity.core.note import generate_signer
from run_identity.verify import Policy, Verifier
from run_identity.verify.tlog import LogTrust, TransparencyLog

ROUNDS = 5


def _cpu(call: object) -> float:
    start = time.process_time()
    call()  # type: ignore[operator]
    return time.process_time() - start


def measure(export: Path, keyring: Keyring, log: Path, trust: LogTrust, runs: int) -> tuple[float, float, float]:
    """Best-of-rounds CPU seconds: without the log, with it (opening included), and opening alone."""
    plain, logged, opening = [], [], []

    def without() -> None:
        report = Verifier(keyring, Policy()).verify([export])
        assert report.counts["verified"] == runs, report.counts

    def with_log() -> None:
        report = Verifier(keyring, Policy(), log=TransparencyLog(str(log), trust)).verify([export])
        assert report.counts["verified"] == runs and report.passed, report.counts

    for _ in range(ROUNDS):
        plain.append(_cpu(without))
        logged.append(_cpu(with_log))
        opening.append(_cpu(lambda: TransparencyLog(str(log), trust)))
    return min(plain), min(logged), min(opening)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the benchmark)")
    parser.add_argument("--runs", type=int, help="runs per export (default 2,048)")
    args = parser.parse_args(argv)
    runs = args.runs or (256 if args.quick else 2048)
    root = Path(tempfile.mkdtemp(prefix="bench-verify-tlog-"))
    signer = generate_signer("bench.example/runs")
    trust = LogTrust(signer.verifier)
    try:
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; CPU time, best of {ROUNDS} rounds")
        print(f"{'export':<10}{'runs':>7}{'log entries':>13}{'plain s':>10}{'--tlog s':>10}{'open s':>9}"
              f"{'extra/run':>12}{'extra':>8}")  # fmt: skip
        for kind in ("typical", "small", "minimal"):
            export = root / kind
            generate(export, kind, runs, processes=min(os.cpu_count() or 1, 4))
            keyring = Keyring.from_jwks(export.parent / f"{export.name}.jwks.json")
            own = entries_of(export, keyring)
            assert len(own) == runs
            for label, log_entries in (("own", own), ("shared", foreign_entries(0, 10 * runs) + own)):
                log = root / f"{kind}-{label}-log"
                publish(log, log_entries, signer)
                plain, logged, opening = measure(export, keyring, log, trust, runs)
                extra = logged - plain
                print(
                    f"{kind:<10}{runs:>7,}{len(log_entries):>13,}{plain:>10.2f}{logged:>10.2f}{opening:>9.2f}"
                    f"{extra / runs * 1e6:>10.0f}µs{extra / plain:>8.0%}"
                )
        print()
        print("goal: verify --tlog costs at most 25 % more CPU than verify on the same export (issue 17)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
