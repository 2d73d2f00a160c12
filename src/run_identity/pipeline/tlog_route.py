"""The transparency-log route through rotel: manifests forwarded to a log service (``run-identity tlog serve``).

The pinned rotel has one exporter per signal in an instance ("Only one exporter supported for
ROTEL_EXPORTERS_LOGS"; rotel-dev/rotel#211 adds several, in no PyPI release yet), so the log route is a
rotel instance of its own: the shipped rotel.env with the manifest router, its traces receiver off, its
logs exporter pointed at the log. The application's manifests reach it through a second manifest exporter
(:class:`FanOutLogExporter` sends each batch to both routes), the way rotel.env tells a second instance to
carry ordinary logs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from run_identity.pipeline.collector import RotelCollector, start_rotel

__all__ = ["FanOutLogExporter", "start_tlog_route", "tlog_route_settings"]


def tlog_route_settings() -> dict[str, str]:
    """What a log-route instance changes in rotel.env: no traces receiver (its logs exporter, ``manifests``,
    is pointed at the log by :func:`start_tlog_route`)."""
    return {"ROTEL_OTLP_RECEIVER_TRACES_DISABLED": "true"}


def start_tlog_route(log_url: str, workdir: str | os.PathLike[str]) -> RotelCollector:
    """Start a rotel instance that forwards the manifest records it receives to the log at ``log_url``."""
    return start_rotel(
        traces_endpoint=log_url, manifests_endpoint=log_url, workdir=workdir, extra_env=tlog_route_settings()
    )


class FanOutLogExporter(LogRecordExporter):
    """Exports every batch to each of ``exporters`` in turn; fails when any of them fails."""

    def __init__(self, exporters: Sequence[LogRecordExporter]) -> None:
        self._exporters = list(exporters)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        results = [e.export(batch) for e in self._exporters]
        ok = all(r == LogRecordExportResult.SUCCESS for r in results)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all([e.force_flush(timeout_millis) for e in self._exporters])

    def shutdown(self) -> None:
        for e in self._exporters:
            e.shutdown()  # type: ignore[no-untyped-call]
