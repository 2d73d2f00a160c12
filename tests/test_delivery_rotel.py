"""Delivery through the real rotel collector: receipts take the manifests route; serve killed -9 loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

import run_identity
from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME
from run_identity.pipeline.collector import CollectorUnavailable, free_port, rotel_pipeline, rotel_version, start_rotel
from run_identity.pipeline.serve import LOGS_FILE, MANIFESTS_FILE
from run_identity.verify import Policy, Verifier

CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def rotel() -> str:
    try:
        return rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")


def _event_names(path: Path) -> list[str]:
    return [
        r.get("eventName", "")
        for line in path.read_bytes().splitlines()
        for rl in orjson.loads(line)["resourceLogs"]
        for sl in rl["scopeLogs"]
        for r in sl["logRecords"]
    ]


@pytest.mark.collector
def test_receipts_take_the_manifests_route_through_rotel(rotel: str, tmp_path: Path) -> None:
    """A run_identity.receipt record sent to rotel reaches the manifests destination; ordinary logs do not."""
    out = tmp_path / "out"
    with rotel_pipeline(out) as pipeline:
        provider = LoggerProvider()
        exporter = OTLPLogExporter(endpoint=f"{pipeline.rotel.otlp_http_endpoint}/v1/logs", timeout=5)
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = provider.get_logger("app")
        logger.emit(body="an ordinary log line")
        logger.emit(event_name=RECEIPT_EVENT_NAME, body="{}")
        logger.emit(event_name=MANIFEST_EVENT_NAME, body="{}")
        provider.shutdown()
        assert pipeline.serve.sink.wait_for(manifests=1, timeout=30)
        deadline = time.monotonic() + 30
        while pipeline.serve.sink.counts.receipts < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert sorted(_event_names(out / MANIFESTS_FILE)) == [MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME]
    assert not (out / LOGS_FILE).exists()


def _start_serve(out: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*CLI, "serve", "--out", str(out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("serve did not start")


@pytest.mark.collector
@pytest.mark.slow
def test_serve_killed_mid_stream_and_restarted_loses_no_acknowledged_run(
    rotel: str, tmp_path: Path, signer: run_identity.Ed25519Signer, keyring: run_identity.Keyring
) -> None:
    """app -> rotel -> serve; serve is killed -9 while runs flow and started again on the same folder: every
    run reaches the files (rotel retries what serve did not acknowledge) and every one verifies."""
    out, port = tmp_path / "out", free_port()
    serve = _start_serve(out, port)
    runs = 60
    try:
        with start_rotel(
            traces_endpoint=f"http://127.0.0.1:{port}",
            manifests_endpoint=f"http://127.0.0.1:{port}",
            workdir=tmp_path / "rotel",
        ) as collector:
            identity = run_identity.setup(
                signer,
                span_exporters=[OTLPSpanExporter(endpoint=f"{collector.otlp_http_endpoint}/v1/traces", timeout=5)],
                manifest_exporters=[OTLPLogExporter(endpoint=f"{collector.otlp_http_endpoint}/v1/logs", timeout=5)],
                set_global=False,
            )
            for i in range(runs):
                composition = {
                    "model": {"provider": "openai", "name": "m"},
                    "operation": "chat",
                    "messages": [{"role": "user", "parts": [{"type": "text", "content": f"question {i}"}]}],
                }
                with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider):
                    pass
                if i == runs // 2:
                    identity.force_flush()
                    time.sleep(0.3)
                    os.kill(serve.pid, signal.SIGKILL)
                    serve.wait(10)
                    with open(out / MANIFESTS_FILE, "ab") as f:  # as if killed in the middle of a write
                        f.write(b'{"resourceLogs":[{"scopeLogs":[{"logRec')
                    serve = _start_serve(out, port)
            identity.shutdown()
            deadline = time.monotonic() + 90  # rotel retries after about 5 s, backing off
            report = None
            while time.monotonic() < deadline:
                report = Verifier(keyring, Policy()).verify([out])
                if report.summary_json()["counts"].get("verified", 0) >= runs:
                    break
                time.sleep(1)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    assert report is not None
    summary = report.summary_json()
    assert summary["counts"].get("verified", 0) >= runs, summary
    (torn,) = out.glob(f"{MANIFESTS_FILE}.torn-*")
    assert torn.read_bytes() == b'{"resourceLogs":[{"scopeLogs":[{"logRec'
    for name in (MANIFESTS_FILE, "traces.jsonl"):
        for line in (out / name).read_bytes().splitlines():
            orjson.loads(line)  # every line whole: nothing glued onto a torn one
