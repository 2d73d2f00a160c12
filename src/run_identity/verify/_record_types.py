"""The records that step 1 reads from export requests (:mod:`run_identity.verify._records`), its tally, and
what its two decoders (OTLP/JSON there, protobuf in :mod:`run_identity.verify._records_proto`) share."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME

__all__ = [
    "EVENT_NAME_ATTRIBUTE",
    "INT64_DIGITS",
    "KEPT_PREFIXES",
    "MAX_VALUE_DEPTH",
    "OUR_EVENTS",
    "BadRecord",
    "BadShape",
    "ContentRecord",
    "ManifestRecord",
    "ReceiptRecord",
    "RepeatedKey",
    "SpanRecord",
    "Tally",
    "event_of",
    "int64",
    "json_id",
    "read_attributes",
    "repeated_member",
    "too_deep",
]

#: Attributes verification reads; the rest of a record's attributes are skipped.
KEPT_PREFIXES = ("run_identity.", "gen_ai.")
EVENT_NAME_ATTRIBUTE = "event.name"
#: The event names of the log records verification reads.
OUR_EVENTS = (MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME)
#: AnyValues nested deeper than this are malformed (OTLP's protobuf decoders stop at 100 levels of messages).
MAX_VALUE_DEPTH = 32
_HEX = "0123456789abcdef"


class BadShape(Exception):
    """A record that breaks the OTLP shape."""


class RepeatedKey(BadShape):
    """A kept attribute key that appears more than once in one record: which value holds is ambiguous."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"attribute {key[:80]!r} appears more than once (which one holds is ambiguous)")


def event_of(field: object, attributes: dict[str, Any]) -> object:
    """A log record's event name: its ``event_name`` field, or the ``event.name`` attribute (the older
    spelling). Raises BadShape when both are given and differ while either names an event of ours."""
    attribute = attributes.get(EVENT_NAME_ATTRIBUTE)
    if field and attribute is not None and field != attribute and (field in OUR_EVENTS or attribute in OUR_EVENTS):
        raise BadShape(f"event_name {str(field)[:80]!r} and attribute event.name {str(attribute)[:80]!r} differ")
    return field if field else attribute


def repeated_member(key: str) -> BadShape:
    """A kvlistValue naming ``key`` twice: which member holds is ambiguous (docs/spec.md §12 step 1)."""
    return BadShape(f"a kvlistValue names key {key[:80]!r} twice (which one holds is ambiguous)")


def too_deep() -> BadShape:
    return BadShape(f"an attribute value is nested more than {MAX_VALUE_DEPTH} levels deep")


def read_attributes(read: Callable[..., dict[str, Any]], items: Any) -> tuple[dict[str, Any], RepeatedKey | None]:
    """A log record's kept attributes by ``read``, and a repeated key held back: the repeat is an error only in
    a record of ours, which the attributes (``event.name``) may be needed to tell; then the last value holds."""
    try:
        return read(items), None
    except RepeatedKey as exc:
        if exc.key == EVENT_NAME_ATTRIBUTE:
            raise  # whether the record is ours at all is ambiguous: malformed, whoever reads it
        return read(items, lenient=True), exc


@dataclass(slots=True)
class SpanRecord:
    """A span: hex ids, name, and its ``run_identity.*`` / ``gen_ai.*`` attributes as Python values; for a
    run span, the captured-content attributes of its events, as (event name, attributes)."""

    trace_id: str
    span_id: str
    name: str
    attributes: dict[str, Any]
    position: int
    index: int
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(slots=True)
class ContentRecord:
    """A log record that is not ours but carries captured content (docs/spec.md §12 step 6): its ids, its
    event name, and its captured-content attributes."""

    trace_id: str
    span_id: str
    name: str
    attributes: dict[str, Any]
    position: int
    index: int


@dataclass(slots=True)
class EventRecord:
    """A log record of ours: its own hex ids (empty when absent), attributes and body. The two kinds below
    differ only in type, which says what checks them."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    body: object
    position: int
    index: int


@dataclass(slots=True)
class ManifestRecord(EventRecord):
    """A ``run_identity.manifest`` log record."""


@dataclass(slots=True)
class ReceiptRecord(EventRecord):
    """A ``run_identity.receipt`` log record (checked by ``._receipts``)."""


@dataclass(slots=True)
class BadRecord:
    """A line, frame or record that cannot be read; ids are set when the record's own ids were readable."""

    position: int
    index: int
    message: str
    trace_id: str = ""
    span_id: str = ""


@dataclass(slots=True)
class Tally:
    """What was read: requests, spans and log records seen, and how many of them verification ignores."""

    requests: int = 0
    spans: int = 0
    log_records: int = 0
    ignored_spans: int = 0
    ignored_log_records: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        """Add another tally to this one."""
        self.requests += other.requests
        self.spans += other.spans
        self.log_records += other.log_records
        self.ignored_spans += other.ignored_spans
        self.ignored_log_records += other.ignored_log_records


def json_id(value: object, size: int, what: str) -> str:
    """A hex id (OTLP/JSON) or, leniently, the base64 id of protobuf's JSON mapping; '' when absent."""
    if value is None or value == "":
        return ""
    if type(value) is not str:
        raise BadShape(f"{what} is not a string")
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
    raise BadShape(f"{what} {value[:40]!r} is not {2 * size} hex digits")


#: Decimal digits of the largest int64 (9223372036854775807).
INT64_DIGITS = 19


def int64(text: str) -> int:
    """An OTLP int64 from its decimal text (``-`` then ASCII digits); raises BadShape outside int64."""
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdecimal()):  # not "--5", not "²"
        raise BadShape("intValue is not an integer")
    value = int(text) if len(digits) <= INT64_DIGITS else 1 << 64
    if not -(1 << 63) <= value < 1 << 63:
        raise BadShape("intValue is outside the 64-bit range")
    return value
