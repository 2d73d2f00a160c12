"""Tests of the embedded file export (OTLP-JSON lines, the otelcol file exporter's shape) and of setup()."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from run_identity import (
    Composition,
    Ed25519Signer,
    IdentitySpanProcessor,
    Manifest,
    OtlpJsonFileLogExporter,
    OtlpJsonFileSpanExporter,
    declare,
    file_exporters,
    setup,
    start_genai_span,
)
from run_identity.otel.export_file import MANIFESTS_FILE, TRACES_FILE

COMPOSITION: dict[str, Any] = {
    "model": {"provider": "openai", "name": "gpt-4o"},
    "operation": "chat",
    "messages": [{"role": "user", "parts": [{"type": "text", "content": 'ça va ? \u2028 "quoted" \\ ok'}]}],
}


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of an OTLP-JSON lines file, parsed; any line reader (even str.splitlines) must do."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\u2028" not in text and "\u2029" not in text
    return [json.loads(line) for line in text.splitlines()]


def ids_to_base64(node: Any) -> Any:
    """Undo the OTLP/JSON hex ids so protobuf's own JSON parser can read the document."""
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in ("traceId", "spanId", "parentSpanId")
            else ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [ids_to_base64(v) for v in node]
    return node


def test_span_lines_are_otlp_json_export_requests(tmp_path: Path) -> None:
    """Each line is an ExportTraceServiceRequest in OTLP/JSON: camelCase, hex ids, int enums, int64 text."""
    exporter = OtlpJsonFileSpanExporter(tmp_path / TRACES_FILE)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope-a")
    with (
        tracer.start_as_current_span("parent", kind=SpanKind.CLIENT, attributes={"n": 7, "x": 1.5, "s": "é"}),
        tracer.start_as_current_span("child"),
    ):
        pass
    provider.shutdown()
    docs = lines(tmp_path / TRACES_FILE)
    assert len(docs) == 2  # one line per export call (SimpleSpanProcessor exports each span)
    child_doc, parent_doc = docs
    span = parent_doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    child = child_doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert parent_doc["resourceSpans"][0]["scopeSpans"][0]["scope"] == {"name": "scope-a"}
    assert span["name"] == "parent" and span["kind"] == 3
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert int(span["traceId"], 16) == memory.get_finished_spans()[1].context.trace_id
    assert child["parentSpanId"] == span["spanId"] and child["traceId"] == span["traceId"]
    assert isinstance(span["startTimeUnixNano"], str) and span["startTimeUnixNano"].isdigit()
    assert {a["key"]: a["value"] for a in span["attributes"]} == {
        "n": {"intValue": "7"},
        "x": {"doubleValue": 1.5},
        "s": {"stringValue": "é"},
    }
    expected = encode_spans([memory.get_finished_spans()[1]])
    parsed = json_format.ParseDict(ids_to_base64(parent_doc), ExportTraceServiceRequest())
    assert parsed == expected


def test_manifest_lines_hold_only_manifests_with_the_exact_body(tmp_path: Path) -> None:
    """manifests.jsonl holds run_identity.manifest records only; the body string is the manifest JSON."""
    spans, manifests = file_exporters(tmp_path)
    assert (spans.path.name, manifests.path.name) == (TRACES_FILE, MANIFESTS_FILE)
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(manifests))
    logger_provider.get_logger("app").emit(body="an application log line")
    signer = Ed25519Signer.generate()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(IdentitySpanProcessor(signer, logger_provider=logger_provider))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with start_genai_span(COMPOSITION, tracer_provider=provider) as span:
        context = span.get_span_context()
    provider.shutdown()
    logger_provider.shutdown()
    (doc,) = lines(tmp_path / MANIFESTS_FILE)
    (record,) = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert record["eventName"] == "run_identity.manifest"
    assert record["traceId"] == f"{context.trace_id:032x}" and record["spanId"] == f"{context.span_id:016x}"
    assert record["severityNumber"] == 9 and isinstance(record["timeUnixNano"], str)
    body = record["body"]["stringValue"]
    manifest = Manifest.from_json(body)
    assert manifest.recompute().problems == ()
    assert manifest.to_json_bytes() == body.encode("utf-8")
    (span_doc,) = lines(tmp_path / TRACES_FILE)
    span_attributes = span_doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    assert {"key": "run_identity.id", "value": {"stringValue": manifest.identity}} in span_attributes


def test_log_exporter_without_filter_writes_every_record(tmp_path: Path) -> None:
    """Without event_name every record is written; a bytes body is base64 as OTLP/JSON says."""
    exporter = OtlpJsonFileLogExporter(tmp_path / "logs.jsonl")
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("app").emit(body=b"\x00\xff")
    provider.shutdown()
    (doc,) = lines(tmp_path / "logs.jsonl")
    record = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["body"] == {"bytesValue": "AP8="}
    assert "traceId" not in record  # no span: the empty id is omitted
    json_format.ParseDict(ids_to_base64(doc), ExportLogsServiceRequest())


def test_files_are_appended_and_writes_after_shutdown_fail(tmp_path: Path) -> None:
    """A second exporter on the same file appends; exporting after shutdown reports FAILURE."""
    for _ in range(2):
        provider = TracerProvider(shutdown_on_exit=False)
        exporter = OtlpJsonFileSpanExporter(tmp_path / TRACES_FILE)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        provider.get_tracer("t").start_span("s").end()
        provider.shutdown()
    assert len(lines(tmp_path / TRACES_FILE)) == 2
    assert exporter.export([]) is SpanExportResult.SUCCESS
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("s").end()
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.FAILURE
    logs = OtlpJsonFileLogExporter(tmp_path / "l.jsonl")
    logs.shutdown()
    assert logs.export([]) is LogRecordExportResult.SUCCESS


def test_concurrent_exports_write_whole_lines(tmp_path: Path) -> None:
    """Spans exported from many threads at once land as whole, parseable lines."""
    exporter = OtlpJsonFileSpanExporter(tmp_path / TRACES_FILE)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")

    def work(i: int) -> None:
        for j in range(20):
            tracer.start_span(f"s-{i}-{j}", attributes={"payload": "x" * 5000}).end()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    provider.shutdown()
    docs = lines(tmp_path / TRACES_FILE)
    names = {d["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for d in docs}
    assert len(docs) == 160 and len(names) == 160


def test_setup_writes_spans_and_manifests_to_the_directory(tmp_path: Path) -> None:
    """setup(directory=...) wires providers, processor and file export; shutdown flushes both files."""
    signer = Ed25519Signer.generate()
    key = tmp_path / "key.pem"
    key.write_bytes(signer.private_pem())
    handle = setup(key, directory=tmp_path / "out", set_global=False)
    tracer = handle.tracer_provider.get_tracer("app")
    with (
        declare(COMPOSITION) as declaration,
        tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}),
    ):
        pass
    assert handle.force_flush()
    handle.shutdown()
    (span_doc,) = lines(tmp_path / "out" / TRACES_FILE)
    (manifest_doc,) = lines(tmp_path / "out" / MANIFESTS_FILE)
    body = manifest_doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"]
    assert Manifest.from_json(body).identity == declaration.identity
    assert Manifest.from_json(body).composition_json() == Composition.from_dict(COMPOSITION).to_dict()
    assert handle.processor.coverage.identified == 1
    assert span_doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] == "chat gpt-4o"
