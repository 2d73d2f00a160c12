"""Step 1 for OTLP protobuf export requests: the protobuf twin of :mod:`run_identity.verify._records`.

The same records, kept attributes, limits and errors as the OTLP/JSON decoder there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

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
    read_attributes,
    repeated_member,
    too_deep,
)

__all__ = ["proto_logs", "proto_spans"]


def _proto_value(value: Any, depth: int = 0) -> Any:
    if depth > MAX_VALUE_DEPTH:
        raise too_deep()
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
        if keep_all or key.startswith(KEPT_PREFIXES) or key == EVENT_NAME_ATTRIBUTE:
            if key in out and keep_all:
                raise repeated_member(key)
            if key in out and not lenient:
                raise RepeatedKey(key)
            out[key] = _proto_value(kv.value, depth)
    return out


def _proto_content(items: Any) -> dict[str, Any]:
    """As :func:`run_identity.verify._records._json_content`, for protobuf messages."""
    out: dict[str, Any] = {}
    for kv in items:
        key = kv.key
        if key in CONTENT_ATTRIBUTES:
            if key in out:
                raise RepeatedKey(key)
            out[key] = _proto_value(kv.value)
    return out


def _proto_events(span: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    found = []
    for event in span.events:
        content = _proto_content(event.attributes)
        if content:
            found.append((event.name, content))
    return tuple(found)


def _proto_id(raw: bytes, size: int, what: str) -> str:
    if not raw:
        return ""
    if len(raw) != size:
        raise BadShape(f"{what} has {len(raw)} bytes, not {size}")
    return raw.hex()


def proto_spans(msg: Any, position: int, tally: Tally) -> Iterator[SpanRecord | BadRecord]:
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
                        raise BadShape("no trace_id or span_id")
                    attributes = _proto_attributes(span.attributes)
                    events = _proto_events(span) if RUN_IDENTITY_ID in attributes else ()
                except BadShape as exc:
                    yield BadRecord(position, index, f"span: {exc}", trace_id, span_id)
                    continue
                if not attributes:
                    tally.ignored_spans += 1
                    continue
                yield SpanRecord(trace_id, span_id, span.name, attributes, position, index, events)


def proto_logs(
    msg: Any, position: int, tally: Tally
) -> Iterator[ManifestRecord | ReceiptRecord | ContentRecord | BadRecord]:
    index = 0
    for rl in msg.resource_logs:
        for sl in rl.scope_logs:
            for log in sl.log_records:
                index += 1
                tally.log_records += 1
                try:
                    attributes, twice = read_attributes(_proto_attributes, log.attributes)
                except BadShape as exc:
                    ids = ("", "")
                    with contextlib.suppress(BadShape):  # a record whose attributes failed: its run
                        ids = (_proto_id(log.trace_id, 16, "trace_id"), _proto_id(log.span_id, 8, "span_id"))
                    yield BadRecord(position, index, f"manifest record: {exc}", *ids)
                    continue
                try:
                    event = event_of(log.event_name, attributes)
                except BadShape as exc:
                    ids = ("", "")
                    with contextlib.suppress(BadShape):
                        ids = (_proto_id(log.trace_id, 16, "trace_id"), _proto_id(log.span_id, 8, "span_id"))
                    yield BadRecord(position, index, f"log record: {exc}", *ids)
                    continue
                if event not in OUR_EVENTS:
                    found = _proto_content_record(log, event, attributes, position, index)
                    if found is None:
                        tally.ignored_log_records += 1
                    else:
                        yield found
                    continue
                trace_id = span_id = ""
                try:
                    trace_id = _proto_id(log.trace_id, 16, "trace_id")
                    span_id = _proto_id(log.span_id, 8, "span_id")
                    if twice is not None:
                        raise twice
                    body = _proto_value(log.body) if log.HasField("body") else None
                except BadShape as exc:
                    yield BadRecord(position, index, f"manifest record: {exc}", trace_id, span_id)
                    continue
                kind = ReceiptRecord if event == RECEIPT_EVENT_NAME else ManifestRecord
                yield kind(trace_id, span_id, attributes, body, position, index)


def _proto_content_record(
    log: Any, event: object, attributes: dict[str, Any], position: int, index: int
) -> ContentRecord | BadRecord | None:
    """A log record that is not ours, kept when it carries captured content and names a run."""
    if not any(a in attributes for a in CONTENT_ATTRIBUTES):
        return None
    try:
        trace_id = _proto_id(log.trace_id, 16, "trace_id")
        span_id = _proto_id(log.span_id, 8, "span_id")
    except BadShape as exc:  # as in OTLP/JSON: a record read for its content whose ids cannot be read
        return BadRecord(position, index, f"log record: {exc}")
    if not (trace_id and span_id):
        return None
    try:
        content = _proto_content(log.attributes)
    except BadShape as exc:
        return BadRecord(position, index, f"log record: {exc}", trace_id, span_id)
    return ContentRecord(trace_id, span_id, event if type(event) is str else "", content, position, index)
