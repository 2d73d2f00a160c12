"""The embedded default export: spans and manifests as OTLP-JSON lines, with no collector.

Files, in the directory given to :func:`file_exporters` (or :func:`run_identity.setup`):

* ``traces.jsonl``: one line per span export batch, each line one ``ExportTraceServiceRequest``;
* ``manifests.jsonl``: one line per log export batch, each line one ``ExportLogsServiceRequest`` holding
  the identity signal: ``run_identity.manifest`` records and the ``run_identity.receipt`` records of the
  client integrations (other log records are skipped by this exporter).

Format: exactly what the ``otelcol-contrib`` file exporter writes with its default ``json`` format, i.e. the
OTLP/JSON encoding of the OTLP specification: lowerCamelCase keys (``resourceSpans``, ``scopeSpans``,
``traceId``...), ``traceId``/``spanId``/``parentSpanId`` as lowercase hex strings (not base64), enums as
integers (``kind``, ``severityNumber``, ``status.code``), 64-bit integers as decimal strings
(``startTimeUnixNano``, ``intValue``), other ``bytes`` values as base64, fields with default values omitted,
one compact UTF-8 JSON object per line, ``\\n`` terminated (U+2028 and U+2029 inside strings are written
escaped, so any line reader splits correctly). Files are appended to, never truncated; each line
is written and flushed whole under a lock, so a reader never sees half a request from one process.

The manifest's body is the canonical manifest JSON as an OTLP string value
(``logRecords[i].body.stringValue``); its ``eventName`` is ``run_identity.manifest``.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME

__all__ = [
    "MANIFESTS_FILE",
    "TRACES_FILE",
    "OtlpJsonFileLogExporter",
    "OtlpJsonFileSpanExporter",
    "file_exporters",
    "otlp_json_line",
]

TRACES_FILE = "traces.jsonl"
MANIFESTS_FILE = "manifests.jsonl"

# OTLP/JSON writes these bytes fields as hex; protobuf's JSON mapping would write base64.
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids_to_hex(node: Any) -> None:
    if type(node) is dict:
        for key, value in node.items():
            if key in _ID_KEYS and type(value) is str:
                node[key] = base64.b64decode(value).hex()
            elif type(value) is dict or type(value) is list:
                _ids_to_hex(value)
    elif type(node) is list:
        for item in node:
            _ids_to_hex(item)


def otlp_json_line(request: Message) -> bytes:
    """One OTLP export request in OTLP/JSON encoding, as one ``\\n``-terminated line."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)
    _ids_to_hex(doc)
    line = orjson.dumps(doc)
    # U+2028/U+2029 are legal raw in JSON strings, but line readers (Python's str.splitlines, JavaScript)
    # break lines there; escaped, as Go's encoding/json writes them, they read back the same.
    if b"\xe2\x80\xa8" in line or b"\xe2\x80\xa9" in line:
        line = line.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return line + b"\n"


class _LineFile:
    """An append-only file that takes whole lines from many threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Created 0600: the lines hold prompts and messages. Kept open until shutdown.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file: IO[bytes] | None = os.fdopen(fd, "ab")

    def write(self, line: bytes) -> bool:
        with self._lock:
            if self._file is None:
                return False
            self._file.write(line)
            self._file.flush()
            return True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class OtlpJsonFileSpanExporter(SpanExporter):
    """Appends each batch of spans to ``path`` as one OTLP/JSON ``ExportTraceServiceRequest`` line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._out = _LineFile(path)

    @property
    def path(self) -> Path:
        return self._out.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            ok = self._out.write(otlp_json_line(encode_spans(spans)))
        except (OSError, ValueError):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonFileLogExporter(LogRecordExporter):
    """Appends each batch of log records to ``path`` as one OTLP/JSON ``ExportLogsServiceRequest`` line.

    With ``event_name`` set (one name, or a collection of names), only records with such an ``event_name``
    are written.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, event_name: str | Collection[str] | None = None
    ) -> None:
        self._out = _LineFile(path)
        self._event_names = frozenset([event_name] if isinstance(event_name, str) else event_name or ())

    @property
    def path(self) -> Path:
        return self._out.path

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self._event_names:
            batch = [r for r in batch if r.log_record.event_name in self._event_names]
        if not batch:
            return LogRecordExportResult.SUCCESS
        try:
            ok = self._out.write(otlp_json_line(encode_logs(batch)))
        except (OSError, ValueError):
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def file_exporters(
    directory: str | os.PathLike[str],
) -> tuple[OtlpJsonFileSpanExporter, OtlpJsonFileLogExporter]:
    """Exporters for ``<directory>/traces.jsonl`` (spans) and ``<directory>/manifests.jsonl`` (manifests, receipts)."""
    out = Path(directory)
    return (
        OtlpJsonFileSpanExporter(out / TRACES_FILE),
        OtlpJsonFileLogExporter(out / MANIFESTS_FILE, event_name=(MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME)),
    )
