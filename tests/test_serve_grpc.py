"""``run-identity serve`` takes OTLP/gRPC as well as OTLP/HTTP: the SDK's own gRPC exporters (the default
exporter protocol) send spans and manifests to it, and what it stored verifies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import verify_fixtures as vf
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from run_identity.core.keys import Keyring
from run_identity.otel.genai import start_genai_span
from run_identity.pipeline.serve import start_server, verification_summarizer
from run_identity.pipeline.wiring import setup
from run_identity.verify import Policy, Verifier


def test_the_sdk_grpc_exporters_deliver_to_serve_and_the_runs_verify(tmp_path: Path) -> None:
    keyring = Keyring([vf.signer().public_key])
    handle = start_server(tmp_path / "out", summarize=verification_summarizer(keyring), grpc_port=0)
    try:
        assert handle.grpc_endpoint is not None and handle.grpc_port != handle.port
        endpoint = handle.grpc_endpoint
        pipeline = setup(
            vf.signer(),
            span_exporters=[OTLPSpanExporter(endpoint=endpoint, insecure=True)],
            manifest_exporters=[OTLPLogExporter(endpoint=endpoint, insecure=True)],
            set_global=False,
        )
        try:
            for _, composition in vf.compositions():
                with start_genai_span(composition, tracer_provider=pipeline.tracer_provider):
                    pass
        finally:
            pipeline.shutdown()
        assert handle.sink.wait_for(spans=5, manifests=5, timeout=30)
        summary = handle.summary()
    finally:
        handle.stop()
    assert summary["received"]["run_spans"] == 5 and summary["received"]["manifests"] == 5
    assert summary["verification"]["passed"] is True and summary["verification"]["counts"]["verified"] == 5
    report = Verifier(keyring, Policy()).verify([tmp_path / "out"])
    assert report.passed and report.counts["verified"] == 5


def test_the_cli_serves_grpc_beside_http_and_says_so(tmp_path: Path) -> None:
    """``serve --grpc-port 0`` names both endpoints; a taken gRPC port asked for explicitly is one error line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "run_identity", "serve", "--out", str(tmp_path / "o"), "--port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("run-identity serve: listening on http://127.0.0.1:"), first
        assert second.startswith("run-identity serve: OTLP/gRPC on http://127.0.0.1:"), second
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_grpc_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "run_identity", "serve", "--out", str(tmp_path / "o"), "--port", "0",
             "--grpc-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1 and "cannot listen" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["--grpc-port", "99999"], ["--grpc-port", "-1"]])
def test_a_bad_grpc_port_is_a_usage_error(tmp_path: Path, argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "run_identity", "serve", "--out", str(tmp_path / "o"), *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--grpc-port" in done.stderr
