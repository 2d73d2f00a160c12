"""Decoding exported data into export requests: OTLP/JSON lines, length-framed or whole-file protobuf, and the
receipt and manifest files ``run-identity`` writes. A bad line or frame is a :class:`BadRequest` with its
position; it never stops the rest.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from run_identity.core.strict_json import StrictJsonError, loads_strict
from run_identity.verify._compression import ZstdMissing, compression_of, decompressing, decompression_errors

__all__ = [
    "FRAME",
    "JSON_DOCUMENT",
    "MANIFEST_DOCUMENT",
    "OTLP_JSON",
    "OTLP_PROTOBUF",
    "OTLP_PROTO_FRAMED",
    "RECEIPT_DOCUMENT",
    "UNRECOGNIZED",
    "BadRequest",
    "RawRequest",
    "decode_protobuf",
    "read_requests",
]

#: Encodings of an input file (verify/_inputs.py detects them).
OTLP_JSON = "otlp-json"
#: The kinds of request a receipt file and a manifest file are read as (``run-identity`` writes both).
RECEIPT_DOCUMENT = "receipt-document"
MANIFEST_DOCUMENT = "manifest-document"
#: One JSON document filling the file, spread over lines (a receipt or manifest file, pretty-printed).
JSON_DOCUMENT = "json-document"
OTLP_PROTO_FRAMED = "otlp-proto-framed"
OTLP_PROTOBUF = "otlp-protobuf"
UNRECOGNIZED = "unrecognized"
#: The length prefix of a framed protobuf request: 4 bytes, big-endian.
FRAME = 4
_SPACE = frozenset(b" \t\r\x0b\x0c")  # what bytes.strip() strips, but newline


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A decoded export request: ``kind`` ``traces`` or ``logs``, ``payload`` a dict (OTLP/JSON) or a protobuf
    message."""

    position: int
    kind: str
    payload: object


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A line or frame that is not an export request, with the reason."""

    position: int
    message: str


def read_requests(encoding: str, data: bytes, first_line: int, start: int) -> Iterator[RawRequest | BadRequest]:
    """Decode the export requests of a chunk's ``data`` (its ``encoding``; its first line number, or its byte
    offset in the file), in order; a bad line or frame does not stop the rest."""
    if encoding == OTLP_JSON:
        yield from _json_lines(data, first_line)
    elif encoding == JSON_DOCUMENT:
        request = _json_request(data, 1)
        if request is not None:
            yield request
    elif encoding == OTLP_PROTO_FRAMED:
        yield from _frames(data, start)
    elif encoding == OTLP_PROTOBUF:
        yield decode_protobuf(data, start)
    else:
        yield BadRequest(start, "unrecognized file: neither OTLP/JSON lines nor OTLP protobuf")


def _json_lines(data: bytes, first_line: int) -> Iterator[RawRequest | BadRequest]:
    # Lines are found with memchr and decoded in place: no copy of a line, which may be megabytes long.
    view = memoryview(data)
    size = len(data)
    pos, number = 0, first_line
    while pos < size:
        end = data.find(b"\n", pos)
        if end < 0:
            end = size
        start, line = pos, number
        pos, number = end + 1, number + 1
        if line == 1 and data.startswith(b"\xef\xbb\xbf", start):
            start += 3  # a UTF-8 byte order mark some editors add
        if start == end or (data[start] in _SPACE and data[start:end].isspace()):
            continue
        request = _json_request(view[start:end], line)
        if request is not None:
            yield request


def _json_request(text: bytes | memoryview, line: int) -> RawRequest | BadRequest | None:
    """One OTLP/JSON export request (a line, or a frame's body), or a receipt or manifest document (a file of
    its own), from its text."""
    try:
        doc = loads_strict(text)
    except StrictJsonError as exc:
        return BadRequest(line, f"no single JSON reading: {exc}")
    if type(doc) is dict:
        traces = "resourceSpans" in doc or "resource_spans" in doc
        logs = "resourceLogs" in doc or "resource_logs" in doc
        if traces and logs:
            return BadRequest(line, "the line holds both resourceSpans and resourceLogs: it is neither request")
        if traces:
            return RawRequest(line, "traces", doc)
        if logs:
            return RawRequest(line, "logs", doc)
        if "receipt" in doc and "signature" in doc:
            return RawRequest(line, RECEIPT_DOCUMENT, (doc, str(text, "utf-8")))
        if "components" in doc and "statement" in doc:
            return RawRequest(line, MANIFEST_DOCUMENT, (doc, str(text, "utf-8")))
        if not doc:
            return RawRequest(line, "empty", None)
    return BadRequest(line, "not an OTLP/JSON traces or logs export request, a receipt or a manifest")


def _frames(data: bytes, base: int) -> Iterator[RawRequest | BadRequest]:
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        if len(data) - pos < FRAME:
            yield BadRequest(base + pos, f"truncated: {len(data) - pos} stray byte(s) where a length prefix belongs")
            return
        length = int.from_bytes(view[pos : pos + FRAME], "big")
        body = view[pos + FRAME : pos + FRAME + length]
        if len(body) < length:
            yield BadRequest(base + pos, f"truncated: the frame declares {length} bytes, only {len(body)} remain")
            return
        request = _frame_request(body, base + pos)
        if request is not None:
            yield request
        pos += FRAME + length


def _frame_request(body: memoryview, position: int) -> RawRequest | BadRequest | None:
    """A frame's request: protobuf, or (the file exporter's ``compression: zstd``) a zstd-compressed protobuf
    or OTLP/JSON request."""
    compression = compression_of(body[:4].tobytes())
    data = bytes(body)
    if compression:
        try:
            data = decompressing(io.BytesIO(data), compression).read()
        except ZstdMissing as exc:
            return BadRequest(position, str(exc))
        except decompression_errors() as exc:
            return BadRequest(position, f"a {compression}-compressed frame that does not decompress: {exc}")
        if data.lstrip(b" \t\r\n")[:1] == b"{":
            return _json_request(data, position)
    return decode_protobuf(data, position)


def decode_protobuf(data: bytes, position: int) -> RawRequest | BadRequest:
    """Decode one serialized ExportTraceServiceRequest or ExportLogsServiceRequest (which one is detected)."""
    found: list[RawRequest] = []
    for kind, cls in (("traces", ExportTraceServiceRequest), ("logs", ExportLogsServiceRequest)):
        try:
            found.append(RawRequest(position, kind, cls.FromString(data)))
        except (DecodeError, RuntimeError, ValueError):
            continue
    if not found:
        return BadRequest(position, "not a protobuf OTLP traces or logs export request (corrupt or truncated)")
    if len(found) == 2:
        # Bytes that decode both ways: the one that holds records is the request; both holding records is
        # ambiguous (never read one way and drop the other's records).
        traces, logs = found
        spans: Any = traces.payload
        logs_payload: Any = logs.payload
        has_spans = any(ss.spans for rs in spans.resource_spans for ss in rs.scope_spans)
        has_logs = any(sl.log_records for rl in logs_payload.resource_logs for sl in rl.scope_logs)
        if has_spans and has_logs:
            return BadRequest(position, "the bytes decode both as a traces and as a logs request: ambiguous")
        return logs if has_logs else traces
    return found[0]
