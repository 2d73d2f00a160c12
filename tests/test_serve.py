"""run-identity serve: the OTLP/HTTP receiver that writes OTLP-JSON lines and verifies what it holds."""

from __future__ import annotations

import ast
import gzip
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import run_identity
from run_identity.core.attributes import MANIFEST_EVENT_NAME
from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.otel.export_file import otlp_json_line as export_file_line
from run_identity.pipeline.serve import (
    LOGS_FILE,
    MANIFESTS_FILE,
    TRACES_FILE,
    ServeHandle,
    otlp_json_line,
    split_manifests,
    start_server,
    verification_summarizer,
)

COMPOSITION = {
    "model": {"provider": "openai", "name": "gpt-4o-mini"},
    "operation": "chat",
    "messages": [{"role": "user", "parts": [{"type": "text", "content": "Capital of Portugal?"}]}],
    "parameters": {"temperature": 0.2},
}
CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]
SRC = Path(__file__).resolve().parent.parent / "src" / "run_identity"


@pytest.fixture
def server(tmp_path: Path, keyring: Keyring) -> Iterator[ServeHandle]:
    with start_server(tmp_path / "out", summarize=verification_summarizer(keyring)) as handle:
        yield handle


def _post(url: str, body: bytes, content_type: str, encoding: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def _logs_request(*event_names: str) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "svc"
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "tests"
    for i, name in enumerate(event_names):
        record = scope.log_records.add(event_name=name, trace_id=bytes([1] * 16), span_id=bytes([i + 1] * 8))
        record.body.string_value = f"record {i}"
    return request


def _run_real_pipeline(signer: Ed25519Signer, url: str, *, compression: Compression | None = None) -> None:
    """Two declared runs through the real SDK, our processor and the OTLP/HTTP exporters to ``url``."""
    kwargs: dict[str, Any] = {"compression": compression} if compression is not None else {}
    identity = run_identity.setup(
        signer,
        span_exporters=[OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=5, **kwargs)],
        manifest_exporters=[OTLPLogExporter(endpoint=f"{url}/v1/logs", timeout=5, **kwargs)],
        set_global=False,
    )
    for temperature in (0.2, 0.9):
        composition = {**COMPOSITION, "parameters": {"temperature": temperature}}
        with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider):
            pass
    identity.shutdown()


def test_real_otlp_http_exporters_land_in_separate_files_and_verify(
    server: ServeHandle, signer: Ed25519Signer
) -> None:
    """Spans and manifests from the SDK's OTLP/HTTP exporters are written apart and every run verifies."""
    _run_real_pipeline(signer, server.url)
    assert server.sink.wait_for(spans=2, manifests=2, timeout=10)
    out = server.sink.directory
    traces, manifests = _lines(out / TRACES_FILE), _lines(out / MANIFESTS_FILE)
    assert sum(len(ss["spans"]) for t in traces for rs in t["resourceSpans"] for ss in rs["scopeSpans"]) == 2
    records = [
        r for m in manifests for rl in m["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]
    ]
    assert [r["eventName"] for r in records] == [MANIFEST_EVENT_NAME] * 2
    assert not (out / LOGS_FILE).exists()
    summary = _get(f"{server.url}/summary")
    assert summary["received"]["run_spans"] == 2 and summary["received"]["manifests"] == 2
    assert summary["verification"]["passed"] is True
    assert summary["verification"]["counts"]["verified"] == 2


def test_gzip_requests_are_accepted(server: ServeHandle, signer: Ed25519Signer) -> None:
    """The SDK exporters with gzip compression deliver runs that verify."""
    _run_real_pipeline(signer, server.url, compression=Compression.Gzip)
    assert server.sink.wait_for(spans=2, manifests=2, timeout=10)
    assert server.summary()["verification"]["counts"]["verified"] == 2


def test_protobuf_line_is_the_file_export_encoding(server: ServeHandle) -> None:
    """A protobuf request is written exactly as the embedded file export would write it."""
    request = _logs_request(MANIFEST_EVENT_NAME)
    request.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "line\u2028separator"
    status, body = _post(f"{server.url}/v1/logs", request.SerializeToString(), "application/x-protobuf")
    assert status == 200 and body == b""
    assert (server.sink.directory / MANIFESTS_FILE).read_bytes() == export_file_line(request)
    assert otlp_json_line(request) == export_file_line(request)


def test_otlp_json_request_with_hex_ids_round_trips(server: ServeHandle) -> None:
    """An OTLP/JSON body (hex ids, gzip) is decoded and re-encoded to the same JSON document."""
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=bytes(range(16)), span_id=bytes(range(8)), name="chat gpt-4o-mini", kind=3)
    )
    span.attributes.add(key="run_identity.id").value.string_value = "sha256:" + "0" * 64
    span.attributes.add(key="gen_ai.request.max_tokens").value.int_value = 2**40
    line = export_file_line(request)
    status, body = _post(f"{server.url}/v1/traces", gzip.compress(line), "application/json", "gzip")
    assert (status, body) == (200, b"{}")
    (written,) = _lines(server.sink.directory / TRACES_FILE)
    assert written == orjson.loads(line)
    assert written["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == bytes(range(16)).hex()
    assert server.sink.counts.run_spans == 1


def test_mixed_logs_request_is_split_keeping_resource_and_scope(server: ServeHandle) -> None:
    """Manifests go to manifests.jsonl, other records to logs.jsonl, each with its resource and scope."""
    request = _logs_request("app.event", MANIFEST_EVENT_NAME, "", MANIFEST_EVENT_NAME)
    status, _ = _post(f"{server.url}/v1/logs", request.SerializeToString(), "application/x-protobuf")
    assert status == 200
    (manifests,) = _lines(server.sink.directory / MANIFESTS_FILE)
    (others,) = _lines(server.sink.directory / LOGS_FILE)
    for doc, bodies in ((manifests, ["record 1", "record 3"]), (others, ["record 0", "record 2"])):
        (rl,) = doc["resourceLogs"]
        assert rl["resource"]["attributes"][0]["value"]["stringValue"] == "svc"
        (sl,) = rl["scopeLogs"]
        assert sl["scope"]["name"] == "tests"
        assert [r["body"]["stringValue"] for r in sl["logRecords"]] == bodies
    counts = server.sink.counts
    assert (counts.manifests, counts.other_logs) == (2, 2)


def test_split_of_a_request_without_manifests_is_empty() -> None:
    """split_manifests leaves the manifest side empty (no resource at all) when none is present."""
    manifests, others = split_manifests(_logs_request("a", "b"))
    assert len(manifests.resource_logs) == 0
    assert json_format.MessageToDict(others) == json_format.MessageToDict(_logs_request("a", "b"))


@pytest.mark.parametrize(
    ("path", "body", "content_type", "encoding", "status"),
    [
        ("/v1/traces", b"{}", "text/plain", None, 415),
        ("/v1/traces", b"\xff\xff\xff", "application/x-protobuf", None, 400),
        ("/v1/logs", b"{not json", "application/json", None, 400),
        ("/v1/logs", b'{"resourceLogs": 3}', "application/json", None, 400),
        (
            "/v1/traces",
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}',
            "application/json",
            None,
            400,
        ),
        ("/v1/logs", b"not gzip", "application/x-protobuf", "gzip", 400),
        ("/v1/logs", b"", "application/x-protobuf", "br", 415),
        ("/v1/metrics", b"", "application/x-protobuf", None, 404),
    ],
)
def test_bad_requests_are_refused_and_counted(
    server: ServeHandle, path: str, body: bytes, content_type: str, encoding: str | None, status: int
) -> None:
    """Each malformed request gets its 4xx status, is counted as rejected, and writes nothing."""
    got, _ = _post(f"{server.url}{path}", body, content_type, encoding)
    assert got == status
    assert server.sink.counts.rejected_requests == 1
    assert server.sink.files() == []


def test_truncated_gzip_is_refused(server: ServeHandle) -> None:
    """A gzip body cut short is a 400, not a partial request."""
    data = gzip.compress(_logs_request(MANIFEST_EVENT_NAME).SerializeToString())
    status, _ = _post(f"{server.url}/v1/logs", data[:-12], "application/x-protobuf", "gzip")
    assert status == 400


def test_path_prefix_is_accepted(server: ServeHandle) -> None:
    """A signal path under a prefix (an exporter endpoint with a path) reaches the same handler."""
    data = _logs_request(MANIFEST_EVENT_NAME).SerializeToString()
    status, _ = _post(f"{server.url}/manifests/v1/logs", data, "application/x-protobuf")
    assert status == 200 and server.sink.counts.manifests == 1


def test_summary_without_keyring_has_no_verification(tmp_path: Path) -> None:
    """Without a summarizer the summary holds counts and file paths only."""
    with start_server(tmp_path) as handle:
        summary = _get(f"{handle.url}/summary")
        assert _get(f"{handle.url}/summary")["received"]["requests"] == 0
        with urllib.request.urlopen(f"{handle.url}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
    assert "verification" not in summary
    assert summary["files"]["manifests"].endswith(MANIFESTS_FILE)


def test_summary_reports_a_tampered_manifest(server: ServeHandle, signer: Ed25519Signer) -> None:
    """A manifest whose content was edited before reaching serve shows as identity_mismatch."""
    _run_real_pipeline(signer, server.url)
    assert server.sink.wait_for(spans=2, manifests=2, timeout=10)
    path = server.sink.directory / MANIFESTS_FILE
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Capital of Portugal", "Capital of Portugul", 1), encoding="utf-8")
    verification = server.summary()["verification"]
    assert verification["passed"] is False
    assert verification["counts"]["identity_mismatch"] == 1
    assert [f["code"] for f in verification["failures"]] == ["identity_mismatch"]


def test_serve_imports_nothing_from_the_sdk_side() -> None:
    """serve's modules import neither the processor, the exporters nor the OTel SDK."""
    forbidden = (
        "run_identity.otel.processor",
        "run_identity.otel.export_file",
        "run_identity.otel.manifest_export",
        "run_identity.pipeline.wiring",
        "opentelemetry.sdk",
        "opentelemetry.exporter",
    )
    for path in (SRC / "serve").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_cli_serve_picks_a_port_and_prints_the_summary_on_sigterm(
    tmp_path: Path, signer: Ed25519Signer
) -> None:
    """`serve --port 0` prints its URL, takes runs, and on SIGTERM prints a verified summary."""
    keys = tmp_path / "keys"
    key_path, jwks_path, _ = run_identity.generate_key_files(keys)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--port",
            "0",
            "--out",
            str(out),
            "--keyring",
            str(jwks_path),
            "--summary-json",
            str(tmp_path / "summary.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("run-identity serve: listening on http://127.0.0.1:"), first
        url = first.split("listening on ", 1)[1].split(",", 1)[0]
        _run_real_pipeline(run_identity.load_signer(key_path), url)
        process.send_signal(signal.SIGTERM)
        rest, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err
    assert "received: 2 requests, 2 spans (2 runs), 2 manifests" in rest
    assert "verification: passed: 2 runs (verified 2)" in rest
    assert json.loads((tmp_path / "summary.json").read_text())["verification"]["counts"]["verified"] == 2


def test_cli_serve_reports_a_busy_port_in_one_line(tmp_path: Path, server: ServeHandle) -> None:
    """Asking for a port that is taken is a one-line error and exit 1."""
    from run_identity.cli import main

    code = main(["serve", "--port", str(server.port), "--out", str(tmp_path / "x")])
    assert code == 1
