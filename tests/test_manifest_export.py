"""Tests of the manifest signal: one run_identity.manifest log record per run, through real OTLP exporters."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from conftest import Pipeline
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from run_identity import Composition, IdentitySampler, IdentitySpanProcessor, Manifest, declare, sign_run
from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.otel.manifest_export import ManifestEmitter

GENAI = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}


def composition() -> dict[str, Any]:
    """A chat composition with non-ASCII text, so body bytes are checked beyond ASCII."""
    return {
        "model": {"provider": "openai", "name": "gpt-4o"},
        "operation": "chat",
        "instructions": [{"type": "text", "content": "Réponds en français, brièvement. 🙂"}],
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "Quelle heure est-il ?"}]}],
        "parameters": {"temperature": 0.5, "max_tokens": 64},
    }


def expected_manifest(span: ReadableSpan, signer: Ed25519Signer) -> bytes:
    """The manifest bytes sign_run produces for this span (Ed25519 signatures are deterministic)."""
    attributes = span.attributes or {}
    declared_at = attributes["run_identity.declared_at"]
    assert isinstance(declared_at, str)
    run = sign_run(
        Composition.from_dict(composition()),
        signer,
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        declared_at=declared_at,
    )
    return run.manifest_json()


def test_one_manifest_record_per_run_with_ids_body_and_attributes(
    pipeline: Pipeline, signer: Ed25519Signer
) -> None:
    """Each identified run emits one record: event name, span ids, canonical body, routing attributes."""
    with (
        declare(composition()) as declaration,
        pipeline.tracer.start_as_current_span("chat gpt-4o", attributes=GENAI),
    ):
        pass
    span = pipeline.span("chat gpt-4o")
    (record,) = pipeline.manifests()
    log = record.log_record
    assert log.event_name == "run_identity.manifest"
    assert (log.trace_id, log.span_id) == (span.context.trace_id, span.context.span_id)
    assert log.trace_flags.sampled
    assert isinstance(log.body, str) and log.body.encode("utf-8") == expected_manifest(span, signer)
    assert dict(log.attributes or {}) == {
        "run_identity.id": declaration.identity,
        "run_identity.key_id": signer.key_id,
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai",
    }
    assert log.timestamp is not None and log.severity_text == "INFO"
    assert pipeline.processor.coverage.manifests_emitted == 1


def test_manifest_body_parses_and_recomputes_the_span_identity(pipeline: Pipeline, keyring: Keyring) -> None:
    """The manifest body is a Manifest whose content recomputes to the identity on the span."""
    with declare(composition()), pipeline.tracer.start_as_current_span("chat gpt-4o", attributes=GENAI):
        pass
    (record,) = pipeline.manifests()
    assert isinstance(record.log_record.body, str)
    manifest = Manifest.from_json(record.log_record.body)
    recomputed = manifest.recompute()
    assert recomputed.problems == ()
    assert recomputed.identity == (pipeline.span("chat gpt-4o").attributes or {})["run_identity.id"]
    assert manifest.composition_json() == composition()


def test_unsampled_span_still_emits_its_manifest_with_unsampled_flags(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """A declared run whose span is not sampled still emits its manifest, carrying the unsampled flag."""
    pipeline = make_pipeline(sampler=ALWAYS_OFF)
    with (
        declare(composition()) as declaration,
        pipeline.tracer.start_as_current_span("chat gpt-4o", attributes=GENAI) as span,
    ):
        context = span.get_span_context()
    assert pipeline.spans() == []
    (record,) = pipeline.manifests()
    log = record.log_record
    assert (log.trace_id, log.span_id) == (context.trace_id, context.span_id)
    assert not log.trace_flags.sampled
    assert isinstance(log.body, str)
    assert Manifest.from_json(log.body).identity == declaration.identity


def test_no_manifest_when_turned_off(make_pipeline: Callable[..., Pipeline]) -> None:
    """emit_manifests=False binds the identity but emits nothing."""
    pipeline = make_pipeline(emit_manifests=False)
    with (
        declare(composition()) as declaration,
        pipeline.tracer.start_as_current_span("chat", attributes=GENAI),
    ):
        pass
    assert declaration.identity is not None and pipeline.manifests() == []


class _FailingProvider:
    """A LoggerProvider whose loggers fail to emit."""

    def get_logger(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("logs pipeline broken")


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_manifest_failure_is_counted_and_keeps_the_identity(signer: Ed25519Signer, background: bool) -> None:
    """A broken logs pipeline does not raise; the span keeps its identity and the failure is counted.

    In strict mode it raises: in on_start when signing inline, when the span ends when signing on the worker.
    """
    provider = TracerProvider(shutdown_on_exit=False)
    processor = IdentitySpanProcessor(signer, logger_provider=_FailingProvider(), background_signing=background)
    provider.add_span_processor(processor)
    with declare(composition()) as declaration:
        provider.get_tracer("t").start_span("chat", attributes=GENAI).end()
    assert declaration.identity is not None
    coverage = processor.coverage
    assert (coverage.identified, coverage.manifests_emitted, coverage.manifest_failures) == (1, 0, 1)
    strict = TracerProvider(shutdown_on_exit=False)
    strict.add_span_processor(
        IdentitySpanProcessor(signer, logger_provider=_FailingProvider(), strict=True, background_signing=background)
    )
    with declare(composition()), pytest.raises(RuntimeError):
        strict.get_tracer("t").start_span("chat", attributes=GENAI).end()


def test_emitter_uses_the_global_provider_by_default() -> None:
    """Without a LoggerProvider, manifests go to the global one."""
    from opentelemetry._logs import get_logger_provider

    assert ManifestEmitter().logger_provider is get_logger_provider()


# --- real OTLP exporters to receivers on 127.0.0.1 -------------------------------------------------------


class _GrpcLogs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[logs_service_pb2.ExportLogsServiceRequest] = []

    def Export(self, request: Any, context: Any) -> logs_service_pb2.ExportLogsServiceResponse:
        self.requests.append(request)
        return logs_service_pb2.ExportLogsServiceResponse()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep proxy settings of the machine away from loopback traffic."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def grpc_receiver(no_proxy: None) -> Iterator[tuple[str, _GrpcLogs]]:
    """An OTLP/gRPC logs receiver on 127.0.0.1 (random port), stopped after the test."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _GrpcLogs()
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(grace=None)


@pytest.fixture
def http_receiver(no_proxy: None) -> Iterator[tuple[str, list[logs_service_pb2.ExportLogsServiceRequest]]]:
    """An OTLP/HTTP (protobuf) logs receiver on 127.0.0.1 (random port), stopped after the test."""
    received: list[logs_service_pb2.ExportLogsServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            ok = self.path == "/v1/logs" and self.headers.get("Content-Type") == "application/x-protobuf"
            if ok:
                received.append(logs_service_pb2.ExportLogsServiceRequest.FromString(body))
            reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/logs", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _run_through(
    exporter: LogRecordExporter, signer: Ed25519Signer, *, sampled: bool
) -> tuple[ReadableSpan, str]:
    """Declare and run one GenAI span with manifests going to ``exporter``; returns the span and identity."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    sampler = IdentitySampler(None if sampled else ALWAYS_OFF)
    tracer_provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    tracer_provider.add_span_processor(IdentitySpanProcessor(signer, logger_provider=logger_provider))
    spans = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    with declare(composition()) as declaration:
        span = tracer_provider.get_tracer("t").start_span("chat gpt-4o", attributes=GENAI)
        span.end()
    assert tracer_provider.force_flush(10_000)  # also flushes the manifests' LoggerProvider
    logger_provider.shutdown()
    tracer_provider.shutdown()
    assert isinstance(span, ReadableSpan) and declaration.identity is not None
    return span, declaration.identity


def _only_record(requests: list[logs_service_pb2.ExportLogsServiceRequest]) -> LogRecord:
    records = [
        r for req in requests for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records
    ]
    assert len(records) == 1
    return records[0]


def _check_received(record: LogRecord, span: ReadableSpan, identity: str, signer: Ed25519Signer) -> None:
    assert record.event_name == "run_identity.manifest"
    assert record.trace_id == span.context.trace_id.to_bytes(16, "big")
    assert record.span_id == span.context.span_id.to_bytes(8, "big")
    assert record.body.string_value.encode("utf-8") == expected_manifest(span, signer)
    attributes = {kv.key: kv.value.string_value for kv in record.attributes}
    assert attributes == {
        "run_identity.id": identity,
        "run_identity.key_id": signer.key_id,
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai",
    }


@pytest.mark.parametrize("sampled", [True, False])
def test_manifest_through_real_otlp_grpc_exporter(
    grpc_receiver: tuple[str, _GrpcLogs], signer: Ed25519Signer, sampled: bool
) -> None:
    """The OTLP gRPC exporter delivers the manifest byte for byte, with the span's ids and sampled flag."""
    endpoint, servicer = grpc_receiver
    span, identity = _run_through(
        GrpcLogExporter(endpoint=endpoint, insecure=True, timeout=10), signer, sampled=sampled
    )
    record = _only_record(servicer.requests)
    _check_received(record, span, identity, signer)
    assert bool(record.flags & 0x01) is sampled


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_manifest_through_real_otlp_http_exporter(
    http_receiver: tuple[str, list[logs_service_pb2.ExportLogsServiceRequest]],
    signer: Ed25519Signer,
    compression: Compression,
) -> None:
    """The OTLP HTTP exporter delivers the manifest byte for byte (plain and gzip)."""
    endpoint, received = http_receiver
    exporter = HttpLogExporter(endpoint=endpoint, timeout=10, compression=compression)
    span, identity = _run_through(exporter, signer, sampled=False)
    record = _only_record(received)
    _check_received(record, span, identity, signer)
    assert not record.flags & 0x01
