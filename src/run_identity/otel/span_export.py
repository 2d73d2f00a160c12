"""Spans leave through a queue that never drops one silently: :class:`SpanExportQueue`.

The SDK's ``BatchSpanProcessor`` drops a span when its queue is full and says nothing (a run whose span is
dropped verifies as ``span_missing``). :class:`SpanExportQueue` gives spans the treatment manifests get from
:class:`run_identity.otel.manifest_export.ManifestExportQueue`:

* **back-pressure**: when the queue is full, ``on_end`` (the application's thread ending a span) waits for
  room, at most ``max_wait`` seconds; only then is that span dropped;
* **counted losses**: a span dropped that way, or taken and never accepted by the exporters (refused
  ``export_attempts`` times, or still queued when ``shutdown_timeout`` ran out), is counted (``dropped``,
  ``lost``, and for run spans, the spans carrying ``run_identity.id``, ``run_spans_dropped`` /
  ``run_spans_lost``, which :func:`run_identity.setup` adds to ``coverage.spans_lost``) and logged (the first
  loss at once, then at most one summary line every ``log_interval`` seconds);
* **delivery at shutdown**: ``shutdown`` exports what is queued before it shuts the exporters down; with a
  :class:`run_identity.pipeline.spool.SpoolingSpanExporter` (``setup(spool_dir=...)``) a batch the destination does
  not take is kept on disk instead (durable hand-off).

Nothing here raises into the application: ``on_end`` returns (after its bounded wait) whatever happens.
Unsampled spans are skipped, as the SDK's processors do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from run_identity.core.attributes import RUN_IDENTITY_ID
from run_identity.otel._export_batches import ExportBatcher

__all__ = ["SpanExportQueue", "SpanQueueStats"]

_LOG = logging.getLogger("run_identity")


@dataclass(frozen=True)
class SpanQueueStats:
    """Counters of a :class:`SpanExportQueue`, read at one instant."""

    max_queue_size: int
    max_batch_size: int
    #: Spans waiting in the queue now.
    queued: int
    #: Spans every exporter accepted.
    exported: int
    #: Spans not taken because the queue stayed full for ``max_wait`` (or it was shut down).
    dropped: int
    #: Spans taken but never accepted by an exporter (refused every attempt, or shutdown timed out).
    lost: int
    #: Times an application thread had to wait for room (back-pressure).
    waits: int
    #: Of ``dropped`` and ``lost``: the run spans (those carrying ``run_identity.id``).
    run_spans_dropped: int
    run_spans_lost: int


def _is_run(span: ReadableSpan) -> bool:
    attributes = span.attributes
    return attributes is not None and attributes.get(RUN_IDENTITY_ID) is not None


class SpanExportQueue(SpanProcessor):
    """A batching span processor with back-pressure and counted losses (see the module docstring).

    Spans go into a bounded queue (``max_queue_size``) that a worker thread exports in batches of up to
    ``max_batch_size`` every ``schedule_delay`` seconds (sooner when a batch is full), to every exporter in
    turn. A batch an exporter refuses is tried ``export_attempts`` times with a doubling pause from
    ``retry_pause``. Raises ValueError for bad sizes.
    """

    def __init__(
        self,
        exporters: Sequence[SpanExporter],
        *,
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float = 0.5,
        max_wait: float = 30.0,
        export_attempts: int = 3,
        retry_pause: float = 0.5,
        shutdown_timeout: float = 30.0,
        log_interval: float = 10.0,
    ) -> None:
        if log_interval < 0:
            raise ValueError("delays and timeouts must not be negative")
        self._batches: ExportBatcher[ReadableSpan] = ExportBatcher(
            exporters,
            lambda exporter, batch: exporter.export(batch) == SpanExportResult.SUCCESS,
            noun="spans",
            max_queue_size=max_queue_size,
            max_batch_size=max_batch_size,
            schedule_delay=schedule_delay,
            max_wait=max_wait,
            export_attempts=export_attempts,
            retry_pause=retry_pause,
            shutdown_timeout=shutdown_timeout,
            marked=_is_run,
        )
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self._log_interval = log_interval
        self._log_lock = threading.Lock()
        self._unlogged = 0  # drops not yet reported in the log
        self._last_log = float("-inf")

    @property
    def stats(self) -> SpanQueueStats:
        counts = self._batches.counts()
        return SpanQueueStats(
            self.max_queue_size,
            self.max_batch_size,
            counts.queued,
            counts.exported,
            counts.dropped,
            counts.lost,
            counts.waits,
            counts.marked_dropped,
            counts.marked_lost,
        )

    def run_spans_lost(self) -> int:
        """Run spans dropped or lost (the span processor adds them to ``coverage.spans_lost``)."""
        counts = self._batches.counts()
        return counts.marked_dropped + counts.marked_lost

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        why = self._batches.put(span)
        if why is None:
            return
        with self._log_lock:  # the first drop at once, then at most one line per log_interval
            self._unlogged += 1
            now = time.monotonic()
            if now - self._last_log < self._log_interval:
                return
            self._last_log, report, self._unlogged = now, self._unlogged, 0
        _LOG.error("run_identity: %d span(s) dropped: the span export queue %s", report, why)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False when ``timeout_millis`` passed first."""
        return self._batches.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is queued (at most ``shutdown_timeout`` seconds), then shut the exporters down."""
        self._batches.shutdown()
        with self._log_lock:
            unlogged, self._unlogged = self._unlogged, 0
        if unlogged:
            _LOG.error("run_identity: %d span(s) dropped: the span export queue stayed full", unlogged)
