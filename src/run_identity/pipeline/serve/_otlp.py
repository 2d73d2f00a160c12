"""OTLP/HTTP wire forms for ``run-identity serve``: request bodies in, OTLP-JSON lines out.

Encoding rules of the lines are those of :mod:`run_identity.otel.export_file` (the ``otelcol-contrib`` file
exporter's ``json`` format); that module is not imported because it pulls in the OTel SDK.
"""

from __future__ import annotations

import base64
import itertools
import re
import zlib
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME
from run_identity.core.errors import RunIdentityError
from run_identity.core.strict_json import StrictJsonError, loads_strict

__all__ = [
    "MAX_BODY",
    "OUR_EVENTS",
    "RequestError",
    "decode_request",
    "decompress",
    "event_of",
    "otlp_json_line",
    "split_manifests",
]

#: Largest request body accepted, after decompression.
MAX_BODY = 64 * 1024 * 1024
#: The identity signal's log records (manifests and receipts): they go to ``manifests.jsonl``.
OUR_EVENTS = frozenset({MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME})
#: Where a record without ``event_name`` may carry it (older SDKs and collectors), as the verifier reads it.
EVENT_NAME_ATTRIBUTE = "event.name"
# OTLP/JSON writes the field names in lowerCamelCase; protobuf's JSON parser also takes the original names.
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class RequestError(RunIdentityError):
    """A request the receiver refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        self.status = status
        super().__init__(message)


def _convert_ids(node: Any, convert: Callable[[str], str]) -> None:
    """Rewrite trace/span ids in place: OTLP/JSON writes them as hex, protobuf's JSON mapping as base64."""
    if type(node) is dict:
        for key, value in node.items():
            if key in _ID_KEYS and type(value) is str:
                node[key] = convert(value)
            elif type(value) is dict or type(value) is list:
                _convert_ids(value, convert)
    elif type(node) is list:
        for item in node:
            _convert_ids(item, convert)


def _hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _base64(value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"an id is not hex: {value[:40]!r}") from None


def otlp_json_line(request: Message) -> bytes:
    """One export request as one OTLP/JSON line: the encoding rules of :mod:`run_identity.otel.export_file`."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)
    _convert_ids(doc, _hex)
    line = orjson.dumps(doc)
    # U+2028/U+2029 escaped, as export_file writes them: some line readers split lines there.
    if b"\xe2\x80\xa8" in line or b"\xe2\x80\xa9" in line:
        line = line.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return line + b"\n"


#: The kinds of an OTLP AnyValue, in both spellings protobuf's JSON parser takes.
_VALUE_KINDS = frozenset(
    f"{kind}{suffix}"
    for kind, suffix in itertools.product(
        ("string", "bool", "int", "double", "array", "kvlist", "bytes"), ("Value", "_value")
    )
)
_CAMEL = re.compile(r"_([a-z])")
_SIGNALS = (
    frozenset({"resourceSpans", "resource_spans"}),
    frozenset({"resourceLogs", "resource_logs"}),
    frozenset({"resourceMetrics", "resource_metrics"}),
)


def _ambiguity(root: Any) -> str | None:
    """Why an OTLP/JSON document has more than one reading, as the verifier sees it (docs/spec.md §12 step 1):
    a member given both in snake_case and in lowerCamelCase, or an AnyValue with more than one kind.
    Protobuf's JSON parser would keep one of them and the stored line would hide the other."""
    stack = [root]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for key in node:
                if "_" in key and _CAMEL.sub(lambda m: m.group(1).upper(), key) in node:
                    return f"both {key!r} and its lowerCamelCase spelling are given"
            kinds = [key for key in node if key in _VALUE_KINDS]
            if len(kinds) > 1:
                return f"an AnyValue has more than one kind ({', '.join(kinds)})"
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return None


def decode_request(body: bytes, content_type: str, message: Message) -> None:
    """Fill ``message`` from an OTLP/HTTP body (protobuf or OTLP/JSON). Raises :class:`RequestError`."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-protobuf":
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"not a valid protobuf request: {exc}") from None
    elif media == "application/json":
        try:
            doc = loads_strict(body)
        except StrictJsonError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"not valid JSON, or more than one reading: {exc}") from None
        if type(doc) is dict and sum(bool(spellings & doc.keys()) for spellings in _SIGNALS) > 1:
            # The other signal's records would be dropped as unknown fields: refused, never lost silently.
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body holds more than one signal: it is no one request")
        problem = _ambiguity(doc)
        if problem is not None:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"more than one reading: {problem}")
        try:
            _convert_ids(doc, _base64)
            json_format.ParseDict(doc, message, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"not an OTLP/JSON request: {exc}") from None
        except RecursionError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "JSON nested too deeply") from None
    else:
        raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported content type {content_type!r}")


def decompress(body: bytes, encoding: str, limit: int = MAX_BODY) -> bytes:
    """The body of a request with ``Content-Encoding: encoding`` (gzip, deflate or none), at most ``limit``
    bytes. Every member of a multi-member gzip body is read (RFC 1952). Raises :class:`RequestError`."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported content encoding {encoding!r}")
    out = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(wbits=wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad {encoding} body: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        if not inflater.eof:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"truncated {encoding} body")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if encoding != "gzip":
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bytes after the end of the {encoding} body")


def event_of(record: Any) -> str:
    """A log record's event name: ``event_name``, else its ``event.name`` attribute (as the verifier reads)."""
    if record.event_name:
        return str(record.event_name)
    for attribute in record.attributes:
        if attribute.key == EVENT_NAME_ATTRIBUTE:
            return str(attribute.value.string_value)
    return ""


def split_manifests(
    request: ExportLogsServiceRequest,
) -> tuple[ExportLogsServiceRequest, ExportLogsServiceRequest]:
    """(manifest and receipt records, other records) of a logs request, each keeping its resource and scope."""
    manifests, others = ExportLogsServiceRequest(), ExportLogsServiceRequest()
    for resource_logs in request.resource_logs:
        by_route: dict[bool, Any] = {}
        for scope_logs in resource_logs.scope_logs:
            parts: dict[bool, Any] = {}
            for record in scope_logs.log_records:
                is_manifest = event_of(record) in OUR_EVENTS
                if is_manifest not in parts:
                    if is_manifest not in by_route:
                        target = manifests if is_manifest else others
                        rl = target.resource_logs.add()
                        rl.resource.CopyFrom(resource_logs.resource)
                        rl.schema_url = resource_logs.schema_url
                        by_route[is_manifest] = rl
                    sl = by_route[is_manifest].scope_logs.add()
                    sl.scope.CopyFrom(scope_logs.scope)
                    sl.schema_url = scope_logs.schema_url
                    parts[is_manifest] = sl
                parts[is_manifest].log_records.add().CopyFrom(record)
    return manifests, others
