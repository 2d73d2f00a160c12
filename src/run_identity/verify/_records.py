"""Step 1 (parse): export requests into span records and manifest records, in either OTLP encoding.

Only what verification reads is kept: a span's ids, name and its ``run_identity.*`` and ``gen_ai.*``
attributes; a manifest log record's ids, attributes and body. Other spans and log records are counted and
dropped. A record that breaks the OTLP shape becomes a :class:`BadRecord` and the others are still read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from typing import Any

from run_identity.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME
from run_identity.verify._inputs import RawRequest
from run_identity.verify._record_types import BadRecord, ManifestRecord, ReceiptRecord, SpanRecord, Tally

__all__ = ["BadRecord", "ManifestRecord", "ReceiptRecord", "SpanRecord", "Tally", "records"]

_KEPT_PREFIXES = ("run_identity.", "gen_ai.")
_EVENT_NAME_ATTRIBUTE = "event.name"
_HEX = "0123456789abcdef"
_EMPTY: dict[str, Any] = {}


class _Bad(Exception):
    """A record that breaks the OTLP shape."""


class _Twice(_Bad):
    """A kept attribute key that appears more than once in one record."""


def records(
    request: RawRequest, tally: Tally
) -> Iterator[SpanRecord | ManifestRecord | ReceiptRecord | BadRecord]:
    """The span and manifest records of one export request, in order."""
    tally.requests += 1
    payload = request.payload
    if type(payload) is dict:
        if request.kind == "traces":
            yield from _json_spans(payload, request.position, tally)
        else:
            yield from _json_logs(payload, request.position, tally)
    elif request.kind == "traces":
        yield from _proto_spans(payload, request.position, tally)
    else:
        yield from _proto_logs(payload, request.position, tally)


# --- OTLP/JSON ------------------------------------------------------------------------------------------


def _member(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _json_list(obj: object, camel: str, snake: str) -> list[Any]:
    if type(obj) is not dict:
        raise _Bad("expected an object")
    value = _member(obj, camel, snake)
    if value is None:
        return []
    if type(value) is not list:
        raise _Bad(f"{camel} is not an array")
    return value


def _json_id(value: object, size: int, what: str) -> str:
    """A hex id (OTLP/JSON) or, leniently, the base64 id of protobuf's JSON mapping; '' when absent."""
    if value is None or value == "":
        return ""
    if type(value) is not str:
        raise _Bad(f"{what} is not a string")
    if len(value) == 2 * size:
        low = value.lower()
        if not low.strip(_HEX):  # every character a hex digit
            return low
    elif len(value) == 4 * ((size + 2) // 3):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == size:
            return raw.hex()
    raise _Bad(f"{what} {value[:40]!r} is not {2 * size} hex digits")


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


#: AnyValues nested deeper than this are malformed (OTLP's protobuf decoders stop at 100 levels of messages).
_MAX_VALUE_DEPTH = 32
_INT64_DIGITS = 19


def _int64(text: str) -> int:
    """An OTLP int64 from its decimal text (``-`` then ASCII digits); raises _Bad outside int64."""
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdecimal()):  # not "--5", not "²"
        raise _Bad("intValue is not an integer")
    value = int(text) if len(digits) <= _INT64_DIGITS else 1 << 64
    if not -(1 << 63) <= value < 1 << 63:
        raise _Bad("intValue is outside the 64-bit range")
    return value


def _json_value(value: object, depth: int = 0) -> Any:
    if type(value) is not dict:
        raise _Bad("an attribute value is not an AnyValue object")
    if depth > _MAX_VALUE_DEPTH:
        raise _Bad(f"an attribute value is nested more than {_MAX_VALUE_DEPTH} levels deep")
    for key, raw in value.items():
        kind = _JSON_KINDS.get(key)
        if kind is None:
            continue
        if kind == "s":
            if type(raw) is not str:
                raise _Bad("stringValue is not a string")
            return raw
        if kind == "i":
            if type(raw) is int:
                return _int64(str(raw))
            if type(raw) is str:
                return _int64(raw)
            raise _Bad("intValue is not an integer")
        if kind == "d":
            if type(raw) is float or type(raw) is int:
                return float(raw)
            if raw in ("NaN", "Infinity", "-Infinity"):
                return float(raw.replace("Infinity", "inf"))
            raise _Bad("doubleValue is not a number")
        if kind == "b":
            if type(raw) is not bool:
                raise _Bad("boolValue is not a boolean")
            return raw
        if kind == "a":
            return [_json_value(v, depth + 1) for v in _json_list(raw, "values", "values")]
        if kind == "k":
            return _json_attributes(_json_list(raw, "values", "values"), keep_all=True, depth=depth + 1)
        try:
            return base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise _Bad("bytesValue is not base64") from None
    return None


def _json_attributes(
    items: list[Any], *, keep_all: bool = False, lenient: bool = False, depth: int = 0
) -> dict[str, Any]:
    """The kept attributes, or all of them with ``keep_all`` (the members of a kvlist value).

    A kept key that appears twice raises :class:`_Twice` (which one a reader takes is ambiguous), unless
    ``lenient`` or ``keep_all``: then the last one holds.
    """
    if not keep_all and not lenient:
        try:
            return _json_plain_attributes(items)
        except (KeyError, TypeError, AttributeError):
            pass  # an item that is not a plain {"key": ..., "value": ...} object: the loop below words it
    out: dict[str, Any] = {}
    for kv in items:
        key = kv.get("key") if type(kv) is dict else None
        if type(key) is not str:
            raise _Bad("an attribute has no string key")
        if keep_all or key.startswith(_KEPT_PREFIXES) or key == _EVENT_NAME_ATTRIBUTE:
            if key in out and not (lenient or keep_all):
                raise _Twice(_twice(key))
            out[key] = _json_value(kv.get("value", _EMPTY), depth)
    return out


def _twice(key: str) -> str:
    return f"attribute {key[:80]!r} appears more than once (which one holds is ambiguous)"


def _json_plain_attributes(items: list[Any]) -> dict[str, Any]:
    """The kept attributes when every item has a ``key`` and a ``value``: what :func:`_json_attributes` finds,
    fewer steps; raises KeyError, TypeError or AttributeError (a non-string key) otherwise."""
    out: dict[str, Any] = {}
    for kv in items:
        key = kv["key"]
        if key.startswith(_KEPT_PREFIXES) or key == _EVENT_NAME_ATTRIBUTE:
            if key in out:
                raise _Twice(_twice(key))
            value = kv["value"]
            if type(value) is dict and len(value) == 1:  # the common shapes without a call
                text = value.get("stringValue")
                if type(text) is str:
                    out[key] = text
                    continue
                number = value.get("doubleValue")
                if type(number) is float:
                    out[key] = number
                    continue
                integer = value.get("intValue")
                if type(integer) is str and len(integer) < _INT64_DIGITS and integer.isdecimal() and integer.isascii():
                    out[key] = int(integer)
                    continue
            out[key] = _json_value(value)
    return out


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
                    except _Bad as exc:
                        found = BadRecord(position, index, f"span: {exc}")
                    if found is not None:
                        yield found
    except _Bad as exc:
        yield BadRecord(position, index + 1, f"traces request: {exc}")


def _json_span(span: object, position: int, index: int, tally: Tally) -> SpanRecord | BadRecord | None:
    if type(span) is not dict:
        raise _Bad("expected an object")
    trace_id = _json_id(_member(span, "traceId", "trace_id"), 16, "traceId")
    span_id = _json_id(_member(span, "spanId", "span_id"), 8, "spanId")
    if not trace_id or not span_id:
        raise _Bad("no traceId or spanId")
    try:
        attributes = _json_attributes(_json_list(span, "attributes", "attributes"))
    except _Bad as exc:  # the run is known: the finding goes to it
        return BadRecord(position, index, f"span: {exc}", trace_id, span_id)
    if not attributes:
        tally.ignored_spans += 1
        return None
    name = span.get("name", "")
    return SpanRecord(trace_id, span_id, name if type(name) is str else "", attributes, position, index)


def _json_logs(
    doc: dict[str, Any], position: int, tally: Tally
) -> Iterator[ManifestRecord | ReceiptRecord | BadRecord]:
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
    except _Bad as exc:
        yield BadRecord(position, index + 1, f"logs request: {exc}")


def _json_log(
    log: object, position: int, index: int, tally: Tally
) -> ManifestRecord | ReceiptRecord | BadRecord | None:
    if type(log) is not dict:
        return BadRecord(position, index, "log record: expected an object")
    trace_id = span_id = ""
    event = _member(log, "eventName", "event_name")
    try:
        items = _json_list(log, "attributes", "attributes")
        twice: _Twice | None = None
        try:
            attributes = _json_attributes(items)
        except _Twice as exc:  # an error only in a record of ours: read on to learn whose it is
            attributes, twice = _json_attributes(items, lenient=True), exc
        if event != MANIFEST_EVENT_NAME and event != RECEIPT_EVENT_NAME:
            event = attributes.get(_EVENT_NAME_ATTRIBUTE)
        if event != MANIFEST_EVENT_NAME and event != RECEIPT_EVENT_NAME:
            tally.ignored_log_records += 1
            return None
        trace_id = _json_id(_member(log, "traceId", "trace_id"), 16, "traceId")
        span_id = _json_id(_member(log, "spanId", "span_id"), 8, "spanId")
        if twice is not None:
            raise twice
        body = _json_value(log["body"]) if "body" in log else None
    except _Bad as exc:
        if not trace_id and event in (MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME):
            with contextlib.suppress(_Bad):  # a record of ours whose attributes failed: find its run
                trace_id = _json_id(_member(log, "traceId", "trace_id"), 16, "traceId")
                span_id = _json_id(_member(log, "spanId", "span_id"), 8, "spanId")
        return BadRecord(position, index, f"manifest record: {exc}", trace_id, span_id)
    kind = ReceiptRecord if event == RECEIPT_EVENT_NAME else ManifestRecord
    return kind(trace_id, span_id, attributes, body, position, index)


# --- OTLP protobuf --------------------------------------------------------------------------------------


def _proto_value(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_VALUE_DEPTH:
        raise _Bad(f"an attribute value is nested more than {_MAX_VALUE_DEPTH} levels deep")
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [_proto_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _proto_attributes(value.kvlist_value.values, keep_all=True, depth=depth + 1)
    if kind == "bytes_value":
        return bytes(value.bytes_value)
    return None


def _proto_attributes(items: Any, *, keep_all: bool = False, lenient: bool = False, depth: int = 0) -> dict[str, Any]:
    """As :func:`_json_attributes`, for protobuf messages."""
    out: dict[str, Any] = {}
    for kv in items:
        key = kv.key  # each read of a protobuf field makes a new object: once
        if keep_all or key.startswith(_KEPT_PREFIXES) or key == _EVENT_NAME_ATTRIBUTE:
            if key in out and not (lenient or keep_all):
                raise _Twice(_twice(key))
            out[key] = _proto_value(kv.value, depth)
    return out


def _proto_id(raw: bytes, size: int, what: str) -> str:
    if not raw:
        return ""
    if len(raw) != size:
        raise _Bad(f"{what} has {len(raw)} bytes, not {size}")
    return raw.hex()


def _proto_spans(msg: Any, position: int, tally: Tally) -> Iterator[SpanRecord | BadRecord]:
    index = 0
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                index += 1
                tally.spans += 1
                trace_id = span_id = ""
                try:
                    trace_id = _proto_id(span.trace_id, 16, "trace_id")
                    span_id = _proto_id(span.span_id, 8, "span_id")
                    if not trace_id or not span_id:
                        raise _Bad("no trace_id or span_id")
                    attributes = _proto_attributes(span.attributes)
                except _Bad as exc:
                    yield BadRecord(position, index, f"span: {exc}", trace_id, span_id)
                    continue
                if not attributes:
                    tally.ignored_spans += 1
                    continue
                yield SpanRecord(trace_id, span_id, span.name, attributes, position, index)


def _proto_logs(msg: Any, position: int, tally: Tally) -> Iterator[ManifestRecord | ReceiptRecord | BadRecord]:
    index = 0
    for rl in msg.resource_logs:
        for sl in rl.scope_logs:
            for log in sl.log_records:
                index += 1
                tally.log_records += 1
                twice: _Twice | None = None
                try:
                    try:
                        attributes = _proto_attributes(log.attributes)
                    except _Twice as exc:  # an error only in a record of ours: read on to learn whose it is
                        attributes, twice = _proto_attributes(log.attributes, lenient=True), exc
                except _Bad as exc:
                    ids = ("", "")
                    if log.event_name in (MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME):
                        with contextlib.suppress(_Bad):  # a record of ours whose attributes failed: its run
                            ids = (_proto_id(log.trace_id, 16, "trace_id"), _proto_id(log.span_id, 8, "span_id"))
                    yield BadRecord(position, index, f"manifest record: {exc}", *ids)
                    continue
                event = log.event_name
                if event != MANIFEST_EVENT_NAME and event != RECEIPT_EVENT_NAME:
                    event = attributes.get(_EVENT_NAME_ATTRIBUTE)
                if event != MANIFEST_EVENT_NAME and event != RECEIPT_EVENT_NAME:
                    tally.ignored_log_records += 1
                    continue
                trace_id = span_id = ""
                try:
                    trace_id = _proto_id(log.trace_id, 16, "trace_id")
                    span_id = _proto_id(log.span_id, 8, "span_id")
                    if twice is not None:
                        raise twice
                    body = _proto_value(log.body) if log.HasField("body") else None
                except _Bad as exc:
                    yield BadRecord(position, index, f"manifest record: {exc}", trace_id, span_id)
                    continue
                kind = ReceiptRecord if event == RECEIPT_EVENT_NAME else ManifestRecord
                yield kind(trace_id, span_id, attributes, body, position, index)
