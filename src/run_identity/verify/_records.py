"""Step 1 (parse): export requests into span records and manifest records, in either OTLP encoding.

Only what verification reads is kept: a span's ids, name and its ``run_identity.*`` and ``gen_ai.*``
attributes; a manifest log record's ids, attributes and body. Other spans and log records are counted and
dropped. A record that breaks the OTLP shape becomes a :class:`BadRecord` and the others are still read.
OTLP/JSON is decoded here, protobuf in :mod:`run_identity.verify._records_proto`. A member spelled both in
camelCase and in snake_case, or an AnyValue with two kinds, is ambiguous and so malformed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from typing import Any, cast

from run_identity.core.attributes import RECEIPT_EVENT_NAME, RUN_IDENTITY_ID
from run_identity.verify._content import CONTENT_ATTRIBUTES
from run_identity.verify._record_types import (
    EVENT_NAME_ATTRIBUTE,
    KEPT_PREFIXES,
    MAX_VALUE_DEPTH,
    OUR_EVENTS,
    BadRecord,
    BadShape,
    ContentRecord,
    ManifestRecord,
    ReceiptRecord,
    RepeatedKey,
    SpanRecord,
    Tally,
    event_of,
    int64,
    json_id,
    read_attributes,
    repeated_member,
    too_deep,
)
from run_identity.verify._records_proto import proto_logs, proto_spans
from run_identity.verify._requests import MANIFEST_DOCUMENT, RECEIPT_DOCUMENT, RawRequest

__all__ = ["BadRecord", "ContentRecord", "ManifestRecord", "ReceiptRecord", "SpanRecord", "Tally", "records"]

_EMPTY: dict[str, Any] = {}


def records(
    request: RawRequest, tally: Tally
) -> Iterator[SpanRecord | ManifestRecord | ReceiptRecord | ContentRecord | BadRecord]:
    """The span and manifest records of one export request, in order."""
    tally.requests += 1
    payload = request.payload
    if request.kind in (RECEIPT_DOCUMENT, MANIFEST_DOCUMENT):
        tally.log_records += 1
        yield _document(request)
    elif request.kind == "empty":
        return
    elif type(payload) is dict:
        if request.kind == "traces":
            yield from _json_spans(payload, request.position, tally)
        else:
            yield from _json_logs(payload, request.position, tally)
    elif request.kind == "traces":
        yield from proto_spans(payload, request.position, tally)
    else:
        yield from proto_logs(payload, request.position, tally)


def _document(request: RawRequest) -> ManifestRecord | ReceiptRecord | BadRecord:
    """A receipt or manifest file read as the record it would travel in: its run's ids are its statement's."""
    doc, text = cast("tuple[dict[str, Any], str]", request.payload)
    receipt = request.kind == RECEIPT_DOCUMENT
    statement = doc.get("receipt" if receipt else "statement")
    what = "receipt" if receipt else "manifest"
    try:
        if type(statement) is not dict:
            raise BadShape(f"the {what} has no statement object")
        trace_id = json_id(statement.get("trace_id"), 16, "trace_id")
        span_id = json_id(statement.get("span_id"), 8, "span_id")
        if not trace_id or not span_id:
            raise BadShape(f"the {what}'s statement names no trace_id or span_id")
    except BadShape as exc:
        return BadRecord(request.position, 0, f"{what} file: {exc}")
    kind = ReceiptRecord if receipt else ManifestRecord
    return kind(trace_id, span_id, {}, text, request.position, 0)


# --- OTLP/JSON ------------------------------------------------------------------------------------------


def _member(obj: dict[str, Any], camel: str, snake: str) -> Any:
    if camel != snake and camel in obj and snake in obj:
        raise BadShape(f"both {camel} and {snake} are given (which one holds is ambiguous)")
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _json_list(obj: object, camel: str, snake: str) -> list[Any]:
    if type(obj) is not dict:
        raise BadShape("expected an object")
    value = _member(obj, camel, snake)
    if value is None:
        return []
    if type(value) is not list:
        raise BadShape(f"{camel} is not an array")
    return value


_JSON_KINDS = {
    "stringValue": "s",
    "string_value": "s",
    "intValue": "i",
    "int_value": "i",
    "doubleValue": "d",
    "double_value": "d",
    "boolValue": "b",
    "bool_value": "b",
    "arrayValue": "a",
    "array_value": "a",
    "kvlistValue": "k",
    "kvlist_value": "k",
    "bytesValue": "y",
    "bytes_value": "y",
}


def _json_value(value: object, depth: int = 0) -> Any:
    if type(value) is not dict:
        raise BadShape("an attribute value is not an AnyValue object")
    if depth > MAX_VALUE_DEPTH:
        raise too_deep()
    kinds = [key for key in value if key in _JSON_KINDS]
    if len(kinds) > 1:
        raise BadShape(f"an AnyValue has {len(kinds)} kinds ({', '.join(kinds)}): which one holds is ambiguous")
    for key in kinds:
        raw = value[key]
        kind = _JSON_KINDS[key]
        if kind == "s":
            if type(raw) is not str:
                raise BadShape("stringValue is not a string")
            return raw
        if kind == "i":
            if type(raw) is int:
                return int64(str(raw))
            if type(raw) is str:
                return int64(raw)
            # A JSON number is read by value (spec §12 step 1): 200.0 is 200 for a reader of doubles too.
            if type(raw) is float and raw.is_integer() and -(2.0**63) <= raw < 2.0**63:
                return int(raw)
            raise BadShape("intValue is not an integer")
        if kind == "d":
            if type(raw) is float or type(raw) is int:
                return float(raw)
            if raw in ("NaN", "Infinity", "-Infinity"):
                return float(raw.replace("Infinity", "inf"))
            raise BadShape("doubleValue is not a number")
        if kind == "b":
            if type(raw) is not bool:
                raise BadShape("boolValue is not a boolean")
            return raw
        if kind == "a":
            return [_json_value(v, depth + 1) for v in _json_list(raw, "values", "values")]
        if kind == "k":
            return _json_attributes(_json_list(raw, "values", "values"), keep_all=True, depth=depth + 1)
        try:
            return base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise BadShape("bytesValue is not base64") from None
    return None


def _json_attributes(
    items: list[Any], *, keep_all: bool = False, lenient: bool = False, depth: int = 0
) -> dict[str, Any]:
    """The kept attributes, or all of them with ``keep_all`` (the members of a kvlist value).

    A kept key that appears twice raises :class:`RepeatedKey` (which one a reader takes is ambiguous), unless
    ``lenient`` or ``keep_all``: then the last one holds.
    """
    out: dict[str, Any] = {}
    for kv in items:
        key = kv.get("key") if type(kv) is dict else None
        if type(key) is not str:
            raise BadShape("an attribute has no string key")
        if keep_all or key.startswith(KEPT_PREFIXES) or key == EVENT_NAME_ATTRIBUTE:
            if key in out and keep_all:
                raise repeated_member(key)
            if key in out and not lenient:
                raise RepeatedKey(key)
            out[key] = _json_value(kv.get("value", _EMPTY), depth)
    return out


def _json_content(items: list[Any]) -> dict[str, Any]:
    """The captured-content attributes among ``items`` (docs/spec.md §12 step 6); one given twice is ambiguous."""
    out: dict[str, Any] = {}
    for kv in items:
        key = kv.get("key") if type(kv) is dict else None
        if key in CONTENT_ATTRIBUTES:
            if key in out:
                raise RepeatedKey(key)
            out[key] = _json_value(kv.get("value", _EMPTY))
    return out


def _json_events(span: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The run span's events that carry captured content: (name, content attributes)."""
    found = []
    for event in _json_list(span, "events", "events"):
        if type(event) is not dict:
            raise BadShape("a span event is not an object")
        content = _json_content(_json_list(event, "attributes", "attributes"))
        if content:
            name = event.get("name")
            found.append((name if type(name) is str else "", content))
    return tuple(found)


def _json_spans(doc: dict[str, Any], position: int, tally: Tally) -> Iterator[SpanRecord | BadRecord]:
    index = 0
    try:
        for rs in _json_list(doc, "resourceSpans", "resource_spans"):
            for ss in _json_list(rs, "scopeSpans", "scope_spans"):
                for span in _json_list(ss, "spans", "spans"):
                    index += 1
                    tally.spans += 1
                    try:
                        found = _json_span(span, position, index, tally)
                    except BadShape as exc:
                        found = BadRecord(position, index, f"span: {exc}", *_lenient_ids(span))
                    if found is not None:
                        yield found
    except BadShape as exc:
        yield BadRecord(position, index + 1, f"traces request: {exc}")


def _lenient_ids(record: object) -> tuple[str, str]:
    """A bad record's ids, if any spelling of them reads, so its finding reaches its run; else empty."""
    if type(record) is not dict:
        return "", ""
    for trace_key, span_key in (("traceId", "spanId"), ("trace_id", "span_id")):
        with contextlib.suppress(BadShape):
            trace_id = json_id(record.get(trace_key), 16, trace_key)
            span_id = json_id(record.get(span_key), 8, span_key)
            if trace_id and span_id:
                return trace_id, span_id
    return "", ""


def _json_span(span: object, position: int, index: int, tally: Tally) -> SpanRecord | BadRecord | None:
    if type(span) is not dict:
        raise BadShape("expected an object")
    trace_id = json_id(_member(span, "traceId", "trace_id"), 16, "traceId")
    span_id = json_id(_member(span, "spanId", "span_id"), 8, "spanId")
    if not trace_id or not span_id:
        raise BadShape("no traceId or spanId")
    try:
        attributes = _json_attributes(_json_list(span, "attributes", "attributes"))
        events = _json_events(span) if RUN_IDENTITY_ID in attributes else ()
    except BadShape as exc:  # the run is known: the finding goes to it
        return BadRecord(position, index, f"span: {exc}", trace_id, span_id)
    if not attributes:
        tally.ignored_spans += 1
        return None
    name = span.get("name", "")
    return SpanRecord(trace_id, span_id, name if type(name) is str else "", attributes, position, index, events)


def _json_logs(
    doc: dict[str, Any], position: int, tally: Tally
) -> Iterator[ManifestRecord | ReceiptRecord | ContentRecord | BadRecord]:
    index = 0
    try:
        for rl in _json_list(doc, "resourceLogs", "resource_logs"):
            for sl in _json_list(rl, "scopeLogs", "scope_logs"):
                for log in _json_list(sl, "logRecords", "log_records"):
                    index += 1
                    tally.log_records += 1
                    found = _json_log(log, position, index, tally)
                    if found is not None:
                        yield found
    except BadShape as exc:
        yield BadRecord(position, index + 1, f"logs request: {exc}")


def _json_log(
    log: object, position: int, index: int, tally: Tally
) -> ManifestRecord | ReceiptRecord | ContentRecord | BadRecord | None:
    if type(log) is not dict:
        return BadRecord(position, index, "log record: expected an object")
    trace_id = span_id = ""
    event: object = None
    try:
        event = _member(log, "eventName", "event_name")
        items = _json_list(log, "attributes", "attributes")
        attributes, twice = read_attributes(_json_attributes, items)
        event = event_of(event, attributes)
        if event not in OUR_EVENTS:
            content = _json_content(items) if any(a in attributes for a in CONTENT_ATTRIBUTES) else None
            trace_id = json_id(_member(log, "traceId", "trace_id"), 16, "traceId") if content else ""
            span_id = json_id(_member(log, "spanId", "span_id"), 8, "spanId") if content else ""
            if not (content and trace_id and span_id):  # no captured content, or no run to compare it with
                tally.ignored_log_records += 1
                return None
            return ContentRecord(trace_id, span_id, event if type(event) is str else "", content, position, index)
        trace_id = json_id(_member(log, "traceId", "trace_id"), 16, "traceId")
        span_id = json_id(_member(log, "spanId", "span_id"), 8, "spanId")
        if twice is not None:
            raise twice
        body = _json_value(log["body"]) if "body" in log else None
    except BadShape as exc:
        if not (trace_id and span_id):  # a record whose shape failed: find its run
            trace_id, span_id = _lenient_ids(log)
        return BadRecord(position, index, f"log record: {exc}", trace_id, span_id)
    kind = ReceiptRecord if event == RECEIPT_EVENT_NAME else ManifestRecord
    return kind(trace_id, span_id, attributes, body, position, index)
