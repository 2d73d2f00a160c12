"""Issue 5 benchmark: runs per second end to end, app -> rotel -> serve, against the SDK alone -> serve.

Both paths, measured in the same process run and alternated round by round: the app (OTel SDK + the identity
processor, ``run_identity.setup`` with OTLP/HTTP protobuf exporters) declares N runs of the example app's
compositions; the clock stops when ``run-identity serve`` (a separate process, no keyring, so it only decodes
and writes OTLP-JSON lines) holds all N run spans and N manifests. The baseline exports straight to serve;
the pipeline exports to rotel on 127.0.0.1, which forwards traces and manifests (through the manifest router)
to the same kind of serve. Rate = N / (first run started -> last record written). Best of the rounds
(and the ratio of the medians).

Goal: the pipeline keeps at least 80% of the SDK-alone rate.

    python3 scripts/dev.py bench pipeline [--runs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Large SDK queues: the benchmark measures delivery, not the SDK dropping records when its queue is full.
os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "200000")
os.environ.setdefault("OTEL_BLRP_MAX_QUEUE_SIZE", "200000")
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "100")
os.environ.setdefault("OTEL_BLRP_SCHEDULE_DELAY", "100")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "collector_pipeline"))

from app import compositions  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402

import run_identity  # noqa: E402
from run_identity.pipeline.collector import CollectorUnavailable, rotel_version, start_rotel  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]


class Serve:
    """``run-identity serve --port 0`` in its own process."""

    def __init__(self, out: Path) -> None:
        self.process = subprocess.Popen(
            [*CLI, "serve", "--port", "0", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on " not in line:
            self.stop()
            raise RuntimeError(f"serve did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split(",", 1)[0]

    def received(self) -> tuple[int, int]:
        with urllib.request.urlopen(f"{self.url}/summary", timeout=10) as response:
            got = json.loads(response.read())["received"]
        return int(got["run_spans"]), int(got["manifests"])

    def wait_for(self, runs: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < (runs, runs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve holds {self.received()} of {runs} runs after {timeout:.0f} s")
            time.sleep(0.005)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def one_round(signer: run_identity.Signer, endpoint: str, serve: Serve, runs: int) -> float:
    """Runs per second: ``runs`` declared runs exported to ``endpoint`` until serve holds them all."""
    before = serve.received()
    identity = run_identity.setup(
        signer,
        span_exporters=[OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=30)],
        manifest_exporters=[OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=30)],
        set_global=False,
    )
    docs = compositions()
    start = time.perf_counter()
    for i in range(runs):
        with run_identity.start_genai_span(docs[i % len(docs)], tracer_provider=identity.tracer_provider):
            pass
    identity.shutdown()
    serve.wait_for(before[0] + runs)
    elapsed = time.perf_counter() - start
    return runs / elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path (default 3)")
    args = parser.parse_args(argv)
    try:
        version = rotel_version()
    except CollectorUnavailable as exc:
        print(f"skipped: rotel cannot run here: {exc}")
        return 0
    signer = run_identity.Ed25519Signer.generate()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        direct, behind = Serve(work / "direct"), Serve(work / "behind-rotel")
        rotel = None
        try:
            rotel = start_rotel(
                traces_endpoint=behind.url, manifests_endpoint=behind.url, workdir=work / "rotel"
            )
            one_round(signer, direct.url, direct, 200)  # warm-up: imports, connections, JIT-free caches
            one_round(signer, rotel.otlp_http_endpoint, behind, 200)
            sdk_rates, pipeline_rates = [], []
            for _ in range(args.rounds):
                sdk_rates.append(one_round(signer, direct.url, direct, args.runs))
                pipeline_rates.append(one_round(signer, rotel.otlp_http_endpoint, behind, args.runs))
        finally:
            if rotel is not None:
                rotel.stop()
            direct.stop()
            behind.stop()
    sdk, pipeline = max(sdk_rates), max(pipeline_rates)
    print(
        f"rotel {version}; {args.runs} runs per round, {args.rounds} rounds; OTLP/HTTP; serve without keyring"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (load skews rounds)")
    print(f"{'path':<34}{'runs/s':>10}{'ratio':>9}   rounds")
    print(f"{'SDK alone -> serve':<34}{sdk:10.0f}{1:9.2f}   {' '.join(f'{r:.0f}' for r in sdk_rates)}")
    print(
        f"{'SDK -> rotel -> serve':<34}{pipeline:10.0f}{pipeline / sdk:9.2f}   "
        f"{' '.join(f'{r:.0f}' for r in pipeline_rates)}"
    )
    median = statistics.median(pipeline_rates) / statistics.median(sdk_rates)
    print(f"ratio of the medians: {median:.2f}")
    verdict = "met" if pipeline / sdk >= 0.8 else "NOT met"
    print(f"goal: pipeline >= 0.80x the SDK-alone rate (best of rounds): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
