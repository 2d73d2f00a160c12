"""Step 1 for OTLP/JSON lines in the plain shape exporters write: typed decoding straight into records.

A line is decoded by msgspec against the OTLP/JSON schema of a traces or logs export request (camelCase
members, every member of every message typed, nothing unknown), which builds no dict for the many small
objects of a request, then turned into the records :mod:`._records` would make of it. It is the general
reader's fast path, and it gives way to it (returns None) at anything out of the ordinary:

* a line that does not decode against the schema: another spelling (snake_case members), an unknown or
  mistyped member, ``null`` where OTLP has a value, bytes or numbers that are not valid JSON;
* a record the general reader would report or read in a special way: a missing or malformed id, a kept
  attribute repeated, an AnyValue with no single kind, a value nested too deeply, a non-int64 intValue.

Every member being typed is what makes the two agree: msgspec skips the members it does not know without
validating them as strictly as orjson does (invalid UTF-8, out-of-range numbers), and here none is skipped.
So on every line this returns records for, the general reader accepts the same JSON and makes the same
records (tests/test_verify_json_fast.py compares them on generated requests).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from msgspec.structs import astuple

from run_identity.attributes import RECEIPT_EVENT_NAME
from run_identity.verify._record_types import (
    EVENT_NAME_ATTRIBUTE,
    KEPT_PREFIXES,
    MAX_VALUE_DEPTH,
    OUR_EVENTS,
    BadShape,
    ManifestRecord,
    ReceiptRecord,
    SpanRecord,
    Tally,
    int64,
    json_id,
)

__all__ = ["DecodedRequest", "decode_line"]

#: Integers within int64: msgspec takes any integer, orjson (the general reader) none past a double's range.
_Int64 = Annotated[int, Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
_Int = _Int64 | str  # OTLP/JSON writes 64-bit integers as decimal strings; some writers use numbers
_Enum = _Int64 | str  # enums by number, or by name as protobuf's JSON mapping allows


class _Strict(Struct, forbid_unknown_fields=True, gc=False):
    pass


class AnyValue(_Strict):
    stringValue: str | UnsetType = UNSET
    boolValue: bool | UnsetType = UNSET
    intValue: _Int | UnsetType = UNSET
    doubleValue: float | str | UnsetType = UNSET
    arrayValue: ArrayValue | UnsetType = UNSET
    kvlistValue: KeyValueList | UnsetType = UNSET
    bytesValue: str | UnsetType = UNSET


class ArrayValue(_Strict):
    values: list[AnyValue] | UnsetType = UNSET


class KeyValue(_Strict):
    key: str
    value: AnyValue | UnsetType = UNSET


class KeyValueList(_Strict):
    values: list[KeyValue] | UnsetType = UNSET


class _Attributed(_Strict):
    attributes: list[KeyValue] | UnsetType = UNSET
    droppedAttributesCount: _Int64 | UnsetType = UNSET


class Resource(_Attributed):
    pass


class Scope(_Attributed):
    name: str | UnsetType = UNSET
    version: str | UnsetType = UNSET


class Event(_Attributed):
    timeUnixNano: _Int | UnsetType = UNSET
    name: str | UnsetType = UNSET


class Link(_Attributed):
    traceId: str | UnsetType = UNSET
    spanId: str | UnsetType = UNSET
    traceState: str | UnsetType = UNSET
    flags: _Int64 | UnsetType = UNSET


class Status(_Strict):
    message: str | UnsetType = UNSET
    code: _Enum | UnsetType = UNSET


class Span(_Attributed):
    traceId: str | UnsetType = UNSET
    spanId: str | UnsetType = UNSET
    traceState: str | UnsetType = UNSET
    parentSpanId: str | UnsetType = UNSET
    flags: _Int64 | UnsetType = UNSET
    name: str | UnsetType = UNSET
    kind: _Enum | UnsetType = UNSET
    startTimeUnixNano: _Int | UnsetType = UNSET
    endTimeUnixNano: _Int | UnsetType = UNSET
    events: list[Event] | UnsetType = UNSET
    droppedEventsCount: _Int64 | UnsetType = UNSET
    links: list[Link] | UnsetType = UNSET
    droppedLinksCount: _Int64 | UnsetType = UNSET
    status: Status | UnsetType = UNSET


class LogRecord(_Attributed):
    timeUnixNano: _Int | UnsetType = UNSET
    observedTimeUnixNano: _Int | UnsetType = UNSET
    severityNumber: _Enum | UnsetType = UNSET
    severityText: str | UnsetType = UNSET
    body: AnyValue | UnsetType = UNSET
    flags: _Int64 | UnsetType = UNSET
    traceId: str | UnsetType = UNSET
    spanId: str | UnsetType = UNSET
    eventName: str | UnsetType = UNSET


class ScopeSpans(_Strict):
    scope: Scope | UnsetType = UNSET
    spans: list[Span] | UnsetType = UNSET
    schemaUrl: str | UnsetType = UNSET


class ResourceSpans(_Strict):
    resource: Resource | UnsetType = UNSET
    scopeSpans: list[ScopeSpans] | UnsetType = UNSET
    schemaUrl: str | UnsetType = UNSET


class ScopeLogs(_Strict):
    scope: Scope | UnsetType = UNSET
    logRecords: list[LogRecord] | UnsetType = UNSET
    schemaUrl: str | UnsetType = UNSET


class ResourceLogs(_Strict):
    resource: Resource | UnsetType = UNSET
    scopeLogs: list[ScopeLogs] | UnsetType = UNSET
    schemaUrl: str | UnsetType = UNSET


class ExportRequest(_Strict):
    resourceSpans: list[ResourceSpans] | UnsetType = UNSET
    resourceLogs: list[ResourceLogs] | UnsetType = UNSET


_decode = msgspec.json.Decoder(ExportRequest).decode
_KINDS = len(AnyValue.__struct_fields__)
_NONE: list[Any] = []


class _GiveWay(Exception):
    """Something the general reader handles (and words): this line is not for the fast path."""


class DecodedRequest:
    """The records of one export request, already read, and what they add to the tally."""

    __slots__ = ("items", "kind", "tally")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: list[SpanRecord | ManifestRecord | ReceiptRecord] = []
        self.tally = Tally()  # spans and log records seen and ignored (requests are counted by the caller)


def decode_line(line: bytes | memoryview, position: int) -> DecodedRequest | None:
    """The records of one OTLP/JSON line, or None when the general reader must read it (module docstring)."""
    try:
        request = _decode(line)
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValidationError is a DecodeError; bad UTF-8
        return None
    spans, logs = request.resourceSpans, request.resourceLogs
    try:
        if logs is UNSET and spans is not UNSET:
            return _spans(spans, position)
        if spans is UNSET and logs is not UNSET:
            return _logs(logs, position)
    except (_GiveWay, BadShape):
        return None
    return None  # both, or neither: the general reader says what it makes of that


def _spans(resource_spans: list[ResourceSpans], position: int) -> DecodedRequest:
    out = DecodedRequest("traces")
    items = out.items
    index = 0
    for rs in resource_spans:
        for ss in rs.scopeSpans or _NONE:
            for span in ss.spans or _NONE:
                index += 1
                out.tally.spans += 1
                trace_id = json_id(span.traceId or "", 16, "traceId")
                span_id = json_id(span.spanId or "", 8, "spanId")
                if not trace_id or not span_id:
                    raise _GiveWay
                attributes = _kept(span.attributes)
                if not attributes:
                    out.tally.ignored_spans += 1
                    continue
                name = span.name
                items.append(SpanRecord(trace_id, span_id, name or "", attributes, position, index))
    return out


def _logs(resource_logs: list[ResourceLogs], position: int) -> DecodedRequest:
    out = DecodedRequest("logs")
    items = out.items
    index = 0
    for rl in resource_logs:
        for sl in rl.scopeLogs or _NONE:
            for log in sl.logRecords or _NONE:
                index += 1
                out.tally.log_records += 1
                attributes = _kept(log.attributes)
                event: Any = log.eventName
                if event not in OUR_EVENTS:
                    event = attributes.get(EVENT_NAME_ATTRIBUTE)
                    if event not in OUR_EVENTS:
                        out.tally.ignored_log_records += 1
                        continue
                trace_id = json_id(log.traceId or "", 16, "traceId")
                span_id = json_id(log.spanId or "", 8, "spanId")
                body = None if log.body is UNSET else _value(log.body, 0)
                kind = ReceiptRecord if event == RECEIPT_EVENT_NAME else ManifestRecord
                items.append(kind(trace_id, span_id, attributes, body, position, index))
    return out


def _kept(items: list[KeyValue] | UnsetType) -> dict[str, Any]:
    """The ``run_identity.*``, ``gen_ai.*`` and ``event.name`` attributes; gives way at a repeated one."""
    out: dict[str, Any] = {}
    if items is UNSET:
        return out
    for kv in items:
        key = kv.key
        if key.startswith(KEPT_PREFIXES) or key == EVENT_NAME_ATTRIBUTE:
            if key in out:
                raise _GiveWay
            value = kv.value
            if value is not UNSET:
                members = astuple(value)
                if members.count(UNSET) == _KINDS - 1:  # one kind: the common ones without a call
                    text = members[0]
                    if text is not UNSET:
                        out[key] = text
                        continue
                    number = members[3]
                    if type(number) is float:
                        out[key] = number
                        continue
            out[key] = _value(value, 0)
    return out


def _value(value: AnyValue | UnsetType, depth: int) -> Any:
    """An AnyValue (absent: UNSET) as the general reader reads it; gives way where it would report a problem."""
    if depth > MAX_VALUE_DEPTH:
        raise _GiveWay
    if value is UNSET:
        return None
    unset = astuple(value).count(UNSET)
    if unset == _KINDS:
        return None
    if unset != _KINDS - 1:
        raise _GiveWay  # which kind holds would depend on member order: the general reader decides
    if value.stringValue is not UNSET:
        return value.stringValue
    if value.boolValue is not UNSET:
        return value.boolValue
    if value.intValue is not UNSET:
        raw = value.intValue
        return int64(raw if type(raw) is str else str(raw))
    if value.doubleValue is not UNSET:
        number = value.doubleValue
        if type(number) is float:
            return number
        if number in ("NaN", "Infinity", "-Infinity"):
            return float(number.replace("Infinity", "inf"))
        raise _GiveWay
    if value.arrayValue is not UNSET:
        return [_value(v, depth + 1) for v in value.arrayValue.values or _NONE]
    if value.kvlistValue is not UNSET:
        out: dict[str, Any] = {}
        for kv in value.kvlistValue.values or _NONE:
            out[kv.key] = _value(kv.value, depth + 1)
        return out
    assert value.bytesValue is not UNSET
    try:
        return base64.b64decode(value.bytesValue, validate=True)
    except (binascii.Error, ValueError):
        raise _GiveWay from None
