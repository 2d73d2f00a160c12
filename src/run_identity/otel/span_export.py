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

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import context as context_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from run_identity.core.attributes import RUN_IDENTITY_ID

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
        if max_queue_size <= 0 or not 0 < max_batch_size <= max_queue_size or export_attempts <= 0:
            raise ValueError("need 0 < max_batch_size <= max_queue_size and export_attempts > 0")
        if min(schedule_delay, max_wait, retry_pause, shutdown_timeout, log_interval) < 0:
            raise ValueError("delays and timeouts must not be negative")
        self._exporters = tuple(exporters)
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self._delay = schedule_delay
        self._max_wait = max_wait
        self._attempts = export_attempts
        self._pause = retry_pause
        self._shutdown_timeout = shutdown_timeout
        self._log_interval = log_interval
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._closing = False
        self._closed = False
        self._exported = self._dropped = self._lost = self._waits = 0
        self._run_dropped = self._run_lost = 0
        self._unlogged = 0  # drops not yet reported in the log
        self._last_log = float("-inf")
        self._start()
        weak = weakref.WeakMethod(self._start)
        os.register_at_fork(after_in_child=lambda: (method := weak()) is not None and method())

    def _start(self) -> None:
        """New locks and a new worker thread (at construction, and in a forked child)."""
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # the queue has room / a batch finished
        self._work = threading.Condition(self._lock)  # the worker has something to do
        self._in_flight = 0
        self._flush_requested = 0
        self._thread = threading.Thread(target=self._run, name="run_identity-spans", daemon=True)
        if not self._closing:
            self._thread.start()

    @property
    def stats(self) -> SpanQueueStats:
        with self._lock:
            return SpanQueueStats(
                self.max_queue_size,
                self.max_batch_size,
                len(self._queue),
                self._exported,
                self._dropped,
                self._lost,
                self._waits,
                self._run_dropped,
                self._run_lost,
            )

    def run_spans_lost(self) -> int:
        """Run spans dropped or lost (the span processor adds them to ``coverage.spans_lost``)."""
        with self._lock:
            return self._run_dropped + self._run_lost

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        with self._lock:
            if not self._closed and len(self._queue) >= self.max_queue_size:
                self._waits += 1
                deadline = time.monotonic() + self._max_wait
                self._work.notify()
                while len(self._queue) >= self.max_queue_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._room.wait(remaining)
            if self._closed or len(self._queue) >= self.max_queue_size:
                self._dropped += 1
                self._run_dropped += _is_run(span)
                self._unlogged += 1
                why = "is shut down" if self._closed else f"stayed full ({self.max_queue_size}) for {self._max_wait} s"
                report = self._report_due()
            else:
                self._queue.append(span)
                if len(self._queue) >= self.max_batch_size:
                    self._work.notify()
                return
        if report:
            _LOG.error("run_identity: %d span(s) dropped: the span export queue %s", report, why)

    def _report_due(self) -> int:
        """Under the lock: how many drops to log now (0: not yet, to keep the log to a line per interval)."""
        now = time.monotonic()
        if now - self._last_log < self._log_interval:
            return 0
        self._last_log, report, self._unlogged = now, self._unlogged, 0
        return report

    def _run(self) -> None:
        # The exporters' own HTTP calls must not be traced back into this pipeline.
        context_api.attach(context_api.set_value(context_api._SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            with self._lock:
                deadline = time.monotonic() + self._delay
                while (
                    len(self._queue) < self.max_batch_size
                    and not self._flush_requested
                    and not self._closing
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._work.wait(remaining)
                if not self._queue:
                    if self._closing:
                        return
                    self._flush_requested = 0
                    self._room.notify_all()
                    continue
                n = min(len(self._queue), self.max_batch_size)
                batch = [self._queue.popleft() for _ in range(n)]
                self._in_flight = n
                self._room.notify_all()
            delivered = self._export(batch)
            with self._lock:
                self._in_flight = 0
                if delivered:
                    self._exported += n
                else:
                    self._lost += n
                    self._run_lost += sum(map(_is_run, batch))
                if not self._queue:
                    self._flush_requested = 0
                self._room.notify_all()

    def _export(self, batch: list[ReadableSpan]) -> bool:
        ok = True
        for exporter in self._exporters:
            pause = self._pause
            for attempt in range(1, self._attempts + 1):
                try:
                    if exporter.export(batch) == SpanExportResult.SUCCESS:
                        break
                    reason = "refused"
                except Exception as exc:  # an exporter should not raise; count it like a refusal
                    reason = f"{type(exc).__name__}: {exc}"
                if attempt == self._attempts or self._closed:
                    ok = False
                    _LOG.error(
                        "run_identity: %d spans lost: %s %s them %d times",
                        len(batch),
                        type(exporter).__name__,
                        reason,
                        attempt,
                    )
                    break
                time.sleep(pause)
                pause *= 2
        return ok

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False when ``timeout_millis`` passed first."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            self._flush_requested += 1
            self._work.notify()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._room.wait(remaining)
        return all(
            bool(exporter.force_flush(max(int(1000 * (deadline - time.monotonic())), 0)))
            for exporter in self._exporters
        )

    def shutdown(self) -> None:
        """Export what is queued (at most ``shutdown_timeout`` seconds), then shut the exporters down."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._work.notify()
        self._thread.join(self._shutdown_timeout)
        with self._lock:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            # A batch still in the exporter's hands is counted lost too: its outcome will not be waited for.
            left_count = len(left) + self._in_flight
            self._lost += left_count
            self._run_lost += sum(map(_is_run, left))
            unlogged, self._unlogged = self._unlogged, 0
            self._room.notify_all()
        if left_count:
            _LOG.error(
                "run_identity: %d spans lost: not exported within %s s of shutdown", left_count, self._shutdown_timeout
            )
        if unlogged:
            _LOG.error("run_identity: %d span(s) dropped: the span export queue stayed full", unlogged)
        for exporter in self._exporters:
            try:
                exporter.shutdown()
            except Exception as exc:
                _LOG.error("run_identity: a span exporter failed to shut down: %s", exc)
