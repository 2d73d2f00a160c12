"""Zero-code delivery: under the real opentelemetry-instrument, manifests leave through ManifestExportQueue.

Not the SDK's BatchLogRecordProcessor (queue 2048, the oldest records dropped silently): more runs than
2048 are made faster than the destination takes them, nothing is dropped, what the destination does not
take is spooled at exit (RUN_IDENTITY_SPOOL_DIR) and what is lost anyway is counted in ``coverage`` and
logged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from run_identity import Ed25519Signer
from run_identity.pipeline.collector import free_port
from run_identity.pipeline.serve import MANIFESTS_FILE, start_server
from run_identity.pipeline.spool import flush_spool_dir

BIN = Path(sys.executable).parent

APP = """
import dataclasses, json, sys
from opentelemetry import trace
import run_identity
from run_identity import zero_code

runs = int(sys.argv[1])
provider = trace.get_tracer_provider()
for i in range(runs):
    composition = {
        "model": {"provider": "openai", "name": "m"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": f"question {i}"}]}],
    }
    with run_identity.start_genai_span(composition, tracer_provider=provider):
        pass
zero_code.shutdown()  # what atexit does; called here to print the counters it leaves
setup = zero_code.installed_setup()
print(json.dumps({
    "coverage": dataclasses.asdict(setup.processor.coverage),
    "queue": setup.queue_sizes,
    "queue_type": type(setup.manifest_queue).__name__,
    "span_processors": [type(p).__name__ for p in provider._active_span_processor._span_processors],
}))
"""


def run_app(tmp_path: Path, runs: int, **variables: str) -> tuple[dict[str, Any], str]:
    """Run APP under opentelemetry-instrument with a fresh signing key; its counters and its stderr."""
    key = tmp_path / "signing-key.pem"
    key.write_bytes(Ed25519Signer.generate().private_pem())
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_SERVICE_NAME="zero-code-delivery",
        OTEL_EXPORTER_OTLP_LOGS_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(key),
    )
    env.update(variables)
    done = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(app), str(runs)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def manifest_ids(path: Path) -> list[str]:
    """The run_identity.id of every manifest record in an OTLP-JSON lines file."""
    return [
        next(a["value"]["stringValue"] for a in record["attributes"] if a["key"] == "run_identity.id")
        for line in path.read_bytes().splitlines()
        for resource in orjson.loads(line)["resourceLogs"]
        for scope in resource["scopeLogs"]
        for record in scope["logRecords"]
    ]


@pytest.mark.slow
def test_zero_code_spools_what_the_collector_does_not_take_and_drops_nothing(tmp_path: Path) -> None:
    """3,000 runs (more than the SDK batch processor's 2,048) with the OTLP destination down: nothing is
    dropped, every manifest is spooled by exit and reaches serve when the spool is flushed; the file
    exporter of RUN_IDENTITY_EXPORT_DIR, on the same queue, has all of them."""
    runs, port = 3000, free_port()
    counters, _ = run_app(
        tmp_path,
        runs,
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"http://127.0.0.1:{port}/v1/logs",
        RUN_IDENTITY_EXPORT_DIR=str(tmp_path / "files"),
        RUN_IDENTITY_SPOOL_DIR=str(tmp_path / "spool"),
    )
    assert counters["queue_type"] == "ManifestExportQueue"
    coverage, queue = counters["coverage"], counters["queue"]
    assert coverage["identified"] == coverage["manifests_emitted"] == runs, coverage
    assert coverage["manifest_failures"] == coverage["manifests_lost"] == 0, coverage
    assert queue["exported"] == runs and queue["dropped"] == queue["lost"] == 0, queue
    assert queue["spooled_pending"] > 0, queue  # the OTLP destination never answered
    files = manifest_ids(tmp_path / "files" / MANIFESTS_FILE)
    assert len(files) == len(set(files)) == runs
    with start_server(tmp_path / "serve", port=port) as serve:
        flushed = flush_spool_dir(tmp_path / "spool", serve.url)
        assert flushed["logs.spool.binpb"].left == 0, flushed
        assert serve.sink.wait_for(manifests=runs, timeout=60)
    assert sorted(manifest_ids(tmp_path / "serve" / MANIFESTS_FILE)) == sorted(files)


@pytest.mark.slow
def test_zero_code_counts_and_logs_the_manifests_it_loses(tmp_path: Path) -> None:
    """Without a spool, manifests the OTLP destination never takes are counted in coverage.manifests_lost
    and logged at exit, instead of vanishing."""
    runs = 50
    counters, stderr = run_app(
        tmp_path,
        runs,
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=f"http://127.0.0.1:{free_port()}/v1/logs",
    )
    coverage = counters["coverage"]
    assert coverage["manifests_emitted"] == runs and coverage["manifests_lost"] == runs, coverage
    assert counters["queue"]["lost"] == runs
    # One line per batch the queue gave up on (a slow machine may cut the runs into several batches).
    assert sum(int(n) for n in re.findall(r"(\d+) manifests lost: ", stderr)) == runs, stderr
    assert f"run_identity: {runs} manifests not delivered" in stderr


def test_zero_code_without_a_manifest_exporter_says_so(tmp_path: Path) -> None:
    """OTEL_LOGS_EXPORTER=none and no RUN_IDENTITY_EXPORT_DIR: the spans still get identities, and a
    warning says that manifests go nowhere (nothing claims a delivery)."""
    counters, stderr = run_app(tmp_path, 3, OTEL_LOGS_EXPORTER="none")
    assert counters["coverage"]["identified"] == 3 and counters["coverage"]["manifests_emitted"] == 0
    assert "no manifest exporter" in stderr


@pytest.mark.slow
def test_zero_code_spans_leave_through_the_span_queue_not_the_sdk_batch_processor(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=otlp: the configurator's BatchSpanProcessor (queue 2,048, drops silently) is
    replaced by the span queue around the same exporter; 3,000 runs with the destination down are all
    spooled, none dropped, and reach serve when the spool is flushed."""
    runs, port = 3000, free_port()
    counters, _ = run_app(
        tmp_path,
        runs,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{port}/v1/traces",
        RUN_IDENTITY_MANIFESTS="false",
        RUN_IDENTITY_SPOOL_DIR=str(tmp_path / "spool"),
    )
    assert "BatchSpanProcessor" not in counters["span_processors"], counters
    assert counters["span_processors"].count("SpanExportQueue") == 1, counters
    queue, coverage = counters["queue"], counters["coverage"]
    assert coverage["identified"] == runs and coverage["spans_lost"] == 0, coverage
    assert queue["spans_exported"] == runs and queue["spans_dropped"] == queue["spans_lost"] == 0, queue
    with start_server(tmp_path / "serve", port=port) as serve:
        flushed = flush_spool_dir(tmp_path / "spool", serve.url)
        assert flushed["traces.spool.binpb"].left == 0, flushed
        assert serve.sink.wait_for(spans=runs, timeout=60)
