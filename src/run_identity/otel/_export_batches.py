"""The batching that manifests and spans share: a bounded queue with back-pressure, and counted losses.

:class:`ExportBatcher` is the engine of :class:`~run_identity.otel.manifest_export.ManifestExportQueue` and
:class:`~run_identity.otel.span_export.SpanExportQueue`. Items go into a bounded queue (``max_queue_size``)
that a worker thread exports in batches of up to ``max_batch_size`` every ``schedule_delay`` seconds (sooner
when a batch is full), to every exporter in turn. When the queue is full, :meth:`ExportBatcher.put` *waits*
(back-pressure on the producing thread) for at most ``max_wait`` seconds; only then does it give up on that
item and count it ``dropped``. A batch an exporter refuses is tried ``export_attempts`` times with a doubling
pause from ``retry_pause``; after that it is counted ``lost`` and logged. :meth:`ExportBatcher.shutdown`
exports what is queued (waiting at most ``shutdown_timeout`` seconds) before it shuts the exporters down;
what is left then is counted lost and logged. ``marked`` picks the items counted apart as well (the run
spans among spans).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opentelemetry import context as context_api

__all__ = ["BatchCounts", "ExportBatcher"]

_LOG = logging.getLogger("run_identity")

T = TypeVar("T")


@dataclass(frozen=True)
class BatchCounts:
    """The counters of an :class:`ExportBatcher`, read at one instant."""

    queued: int
    exported: int
    dropped: int
    lost: int
    waits: int
    #: Of ``dropped`` and ``lost``: the items ``marked`` picks.
    marked_dropped: int
    marked_lost: int


class ExportBatcher(Generic[T]):
    """A bounded export queue with a worker thread (see the module docstring). Raises ValueError for bad sizes.

    ``export(exporter, batch)`` sends one batch and says whether the exporter accepted it (it may raise: that
    counts as a refusal). ``noun`` names the items in log lines (``manifests``, ``spans``).
    """

    def __init__(
        self,
        exporters: Sequence[Any],
        export: Callable[[Any, list[T]], bool],
        *,
        noun: str,
        max_queue_size: int,
        max_batch_size: int,
        schedule_delay: float,
        max_wait: float,
        export_attempts: int,
        retry_pause: float,
        shutdown_timeout: float,
        marked: Callable[[T], bool] | None = None,
    ) -> None:
        if max_queue_size <= 0 or not 0 < max_batch_size <= max_queue_size or export_attempts <= 0:
            raise ValueError("need 0 < max_batch_size <= max_queue_size and export_attempts > 0")
        if min(schedule_delay, max_wait, retry_pause, shutdown_timeout) < 0:
            raise ValueError("delays and timeouts must not be negative")
        self.exporters = tuple(exporters)
        self._export_one = export
        self._noun = noun
        self._marked = marked or (lambda item: False)
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self._delay = schedule_delay
        self.max_wait = max_wait
        self._attempts = export_attempts
        self._pause = retry_pause
        self.shutdown_timeout = shutdown_timeout
        self._queue: collections.deque[T] = collections.deque()
        self._closing = False
        self._closed = False
        self._exported = self._dropped = self._lost = self._waits = 0
        self._marked_dropped = self._marked_lost = 0
        self._start()
        weak = weakref.WeakMethod(self._start)
        os.register_at_fork(after_in_child=lambda: (method := weak()) is not None and method())

    def _start(self) -> None:
        """New locks and a new worker thread (at construction, and in a forked child: the parent's thread
        does not exist there, and its locks may be held)."""
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # the queue has room / a batch finished
        self._work = threading.Condition(self._lock)  # the worker has something to do
        self._in_flight = 0
        self._flush_requested = 0
        self._thread = threading.Thread(target=self._run, name=f"run_identity-{self._noun}", daemon=True)
        if not self._closing:
            self._thread.start()

    def counts(self) -> BatchCounts:
        with self._lock:
            return BatchCounts(
                len(self._queue),
                self._exported,
                self._dropped,
                self._lost,
                self._waits,
                self._marked_dropped,
                self._marked_lost,
            )

    def put(self, item: T) -> str | None:
        """Queue ``item``, waiting at most ``max_wait`` seconds for room; None when it was queued, else why it
        was dropped (it is counted)."""
        with self._lock:
            if not self._closed and len(self._queue) >= self.max_queue_size:
                self._waits += 1
                deadline = time.monotonic() + self.max_wait
                self._work.notify()
                while len(self._queue) >= self.max_queue_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._room.wait(remaining)
            if self._closed or len(self._queue) >= self.max_queue_size:
                self._dropped += 1
                self._marked_dropped += self._marked(item)
                if self._closed:
                    return "is shut down"
                return f"stayed full ({self.max_queue_size}) for {self.max_wait} s"
            self._queue.append(item)
            if len(self._queue) >= self.max_batch_size:
                self._work.notify()
            return None

    def _run(self) -> None:
        # The exporters' own HTTP calls must not be traced or logged back into this pipeline.
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
                    self._marked_lost += sum(map(self._marked, batch))
                if not self._queue:
                    self._flush_requested = 0
                self._room.notify_all()

    def _export(self, batch: list[T]) -> bool:
        ok = True
        for exporter in self.exporters:
            pause = self._pause
            for attempt in range(1, self._attempts + 1):
                try:
                    if self._export_one(exporter, batch):
                        break
                    reason = "refused"
                except Exception as exc:  # an exporter should not raise; count it like a refusal
                    reason = f"{type(exc).__name__}: {exc}"
                if attempt == self._attempts or self._closed:
                    ok = False
                    _LOG.error(
                        "run_identity: %d %s lost: %s %s them %d times",
                        len(batch),
                        self._noun,
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
            for exporter in self.exporters
        )

    def shutdown(self) -> None:
        """Export what is queued (at most ``shutdown_timeout`` seconds), then shut the exporters down."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._work.notify()
        self._thread.join(self.shutdown_timeout)
        with self._lock:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            # A batch still in the exporter's hands is counted lost too: its outcome will not be waited for.
            left_count = len(left) + self._in_flight
            self._lost += left_count
            self._marked_lost += sum(map(self._marked, left))
            self._room.notify_all()
        if left_count:
            _LOG.error(
                "run_identity: %d %s lost: not exported within %s s of shutdown",
                left_count,
                self._noun,
                self.shutdown_timeout,
            )
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception as exc:
                _LOG.error("run_identity: a %s exporter failed to shut down: %s", self._noun.rstrip("s"), exc)
