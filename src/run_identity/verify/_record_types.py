"""The records that step 1 reads from export requests (:mod:`run_identity.verify._records`), and its tally."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadRecord", "ManifestRecord", "ReceiptRecord", "SpanRecord", "Tally"]


@dataclass(slots=True)
class SpanRecord:
    """A span: hex ids, name, and its ``run_identity.*`` / ``gen_ai.*`` attributes as Python values."""

    trace_id: str
    span_id: str
    name: str
    attributes: dict[str, Any]
    position: int
    index: int


@dataclass(slots=True)
class ManifestRecord:
    """A ``run_identity.manifest`` log record: its own hex ids (empty when absent), attributes and body."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    body: object
    position: int
    index: int


@dataclass(slots=True)
class ReceiptRecord:
    """A ``run_identity.receipt`` log record (checked by ``._receipts``), fields as in ManifestRecord."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    body: object
    position: int
    index: int


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
