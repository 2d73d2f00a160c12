"""The manifest signal: one ``run_identity.manifest`` OTLP log record per run, through the OTel Logs SDK.

Each record has ``event_name = "run_identity.manifest"``, the run's trace id, span id and trace flags, the
canonical manifest JSON as its body (an OTLP string value, byte for byte the output of
:meth:`SignedRun.manifest_json`), severity INFO, and the attributes ``run_identity.id``,
``run_identity.key_id``, ``gen_ai.request.model`` and ``gen_ai.provider.name`` for routing and search.
Records go to the given ``LoggerProvider`` or, by default, the global one (looked up when the first
manifest is emitted, so a provider set after the processor was built is used), so manifests can have
their own processors, exporters and endpoint.

Unsampled spans: the manifest is emitted all the same. An audit needs every declared run's manifest even
when traces are sampled; the record carries the span's ids with its trace flags as they are (the sampled
bit clear), so a reader can tell that the span itself was not exported. The manifest verifies on its own
(its binding statement is signed), and :class:`run_identity.IdentitySampler` makes sure ``on_start`` runs
for declared GenAI spans that the wrapped sampler drops.
"""

from __future__ import annotations

import collections
import copy
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry._logs import Logger, LoggerProvider, NoOpLoggerProvider, SeverityNumber, get_logger_provider
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext

from run_identity.core.attributes import MANIFEST_EVENT_NAME, RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID
from run_identity.core.errors import RunIdentityError
from run_identity.core.signing import SignedRun
from run_identity.core.version import __version__

__all__ = [
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "ManifestDropped",
    "ManifestEmitter",
    "ManifestExportQueue",
    "ManifestQueueStats",
    "NoLoggerProvider",
]

_LOG = logging.getLogger("run_identity")

GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
_SCOPE = "run_identity"


class NoLoggerProvider(RunIdentityError):
    """No LoggerProvider is configured: a manifest emitted now would be dropped by the API's stand-in."""


def _stand_in(provider: LoggerProvider) -> bool:
    """Whether ``provider`` is one of the API's stand-ins that deliver nothing: the no-op provider, or the
    proxy ``get_logger_provider()`` returns until ``set_logger_provider`` is called."""
    return isinstance(provider, NoOpLoggerProvider) or type(provider).__name__ == "ProxyLoggerProvider"


class ManifestEmitter:
    """Emits manifests as ``run_identity.manifest`` log records (see the module docstring for the shape).

    ``emit`` may raise what the Logs SDK or a synchronous log processor raises; the span processor catches
    and counts it.
    """

    __slots__ = ("_logger", "_provider")

    def __init__(self, logger_provider: LoggerProvider | None = None) -> None:
        self._provider = logger_provider
        self._logger: Logger | None = None

    @property
    def logger_provider(self) -> LoggerProvider:
        """The provider manifests go to (the global one unless one was given)."""
        return self._provider if self._provider is not None else get_logger_provider()

    def _get_logger(self) -> Logger:
        """The manifests' logger. Raises :class:`NoLoggerProvider` while the provider is a stand-in (no global
        provider set yet, or a no-op one): the span processor logs that once and counts the manifest as not
        delivered, instead of handing it to a provider that drops it."""
        logger = self._logger
        if logger is None:
            provider = self.logger_provider
            if _stand_in(provider):
                raise NoLoggerProvider(
                    "no LoggerProvider is configured, so manifests are not delivered: pass logger_provider= "
                    "to IdentitySpanProcessor, call opentelemetry._logs.set_logger_provider(), or use "
                    "run_identity.setup()"
                )
            logger = self._logger = provider.get_logger(_SCOPE, __version__)
        return logger

    def emit(
        self,
        run: SignedRun,
        span_context: SpanContext,
        *,
        model: str | None = None,
        provider: str | None = None,
        manifest_json: bytes | None = None,
    ) -> None:
        """Emit ``run``'s manifest for the span ``span_context`` (sampled or not)."""
        body = (manifest_json if manifest_json is not None else run.manifest_json()).decode("utf-8")
        attributes: dict[str, str] = {
            RUN_IDENTITY_ID: run.identity.id,
            RUN_IDENTITY_KEY_ID: run.statement.key_id,
        }
        if model is not None:
            attributes[GEN_AI_REQUEST_MODEL] = model
        if provider is not None:
            attributes[GEN_AI_PROVIDER_NAME] = provider
        now = time.time_ns()
        self._get_logger().emit(
            timestamp=now,
            observed_timestamp=now,
            context=trace_api.set_span_in_context(NonRecordingSpan(span_context)),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=body,
            attributes=attributes,
            event_name=MANIFEST_EVENT_NAME,
        )


class ManifestDropped(RunIdentityError):
    """The manifest export queue stayed full for its whole bounded wait: this manifest was not taken.

    Raised from ``on_emit`` into :meth:`ManifestEmitter.emit`, so the span processor counts it in
    ``Coverage.manifest_failures`` and logs it.
    """


@dataclass(frozen=True)
class ManifestQueueStats:
    """Counters of a :class:`ManifestExportQueue`, read at one instant."""

    max_queue_size: int
    max_batch_size: int
    #: Records waiting in the queue now.
    queued: int
    #: Records every exporter accepted.
    exported: int
    #: Records not taken because the queue stayed full (also in Coverage.manifest_failures).
    dropped: int
    #: Records taken but never accepted by an exporter (retries exhausted, or shutdown timed out).
    lost: int
    #: Times an emitting thread had to wait for room (back-pressure).
    waits: int


class ManifestExportQueue(LogRecordProcessor):
    """A batching log processor for manifests that never drops one silently.

    Records go into a bounded queue (``max_queue_size``) that a worker thread exports in batches of up to
    ``max_batch_size`` every ``schedule_delay`` seconds (sooner when a batch is full), to every exporter in
    turn. When the queue is full, ``on_emit`` *waits* (back-pressure on the emitting thread) for at most
    ``max_wait`` seconds; only then it gives up on that record, counts it (``dropped``) and raises
    :class:`ManifestDropped` so the span processor counts it in its coverage. A batch an exporter refuses is
    tried ``export_attempts`` times with a doubling pause; after that it is counted in ``lost`` and logged
    (wrap the exporter in :class:`run_identity.pipeline.spool.SpoolingLogExporter` to keep such batches on disk).
    ``shutdown`` exports what is queued (waiting at most ``shutdown_timeout`` seconds) before it shuts the
    exporters down; what is left then is counted lost and logged. Raises ValueError for bad sizes.
    """

    def __init__(
        self,
        exporters: Sequence[LogRecordExporter],
        *,
        max_queue_size: int = 2048,
        max_batch_size: int = 512,
        schedule_delay: float = 0.5,
        max_wait: float = 30.0,
        export_attempts: int = 3,
        retry_pause: float = 0.5,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if max_queue_size <= 0 or not 0 < max_batch_size <= max_queue_size or export_attempts <= 0:
            raise ValueError("need 0 < max_batch_size <= max_queue_size and export_attempts > 0")
        if min(schedule_delay, max_wait, retry_pause, shutdown_timeout) < 0:
            raise ValueError("delays and timeouts must not be negative")
        self._exporters = tuple(exporters)
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self._delay = schedule_delay
        self._max_wait = max_wait
        self._attempts = export_attempts
        self._pause = retry_pause
        self._shutdown_timeout = shutdown_timeout
        self._queue: collections.deque[ReadableLogRecord] = collections.deque()
        self._closing = False
        self._closed = False
        self._exported = self._dropped = self._lost = self._waits = 0
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
        self._thread = threading.Thread(target=self._run, name="run_identity-manifests", daemon=True)
        if not self._closing:
            self._thread.start()

    @property
    def stats(self) -> ManifestQueueStats:
        with self._lock:
            return ManifestQueueStats(
                self.max_queue_size,
                self.max_batch_size,
                len(self._queue),
                self._exported,
                self._dropped,
                self._lost,
                self._waits,
            )

    def lost(self) -> int:
        """Records taken but never exported (the span processor adds them to its coverage)."""
        with self._lock:
            return self._lost

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        # As the SDK's batch processor does: a readable copy without the (possibly large) context.
        record = copy.copy(log_record.log_record)
        record.context = context_api.Context()
        readable = ReadableLogRecord(
            log_record=record,
            resource=log_record.resource if log_record.resource is not None else Resource.create({}),
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        with self._lock:
            if self._closed:
                self._dropped += 1
                raise ManifestDropped("the manifest export queue is shut down")
            if len(self._queue) >= self.max_queue_size:
                self._waits += 1
                deadline = time.monotonic() + self._max_wait
                self._work.notify()
                while len(self._queue) >= self.max_queue_size and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._dropped += 1
                        raise ManifestDropped(
                            f"the manifest export queue stayed full ({self.max_queue_size}) for {self._max_wait} s"
                        )
                    self._room.wait(remaining)
            self._queue.append(readable)
            if len(self._queue) >= self.max_batch_size:
                self._work.notify()

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
                if not self._queue:
                    self._flush_requested = 0
                self._room.notify_all()

    def _export(self, batch: list[ReadableLogRecord]) -> bool:
        ok = True
        for exporter in self._exporters:
            pause = self._pause
            for attempt in range(1, self._attempts + 1):
                try:
                    if exporter.export(batch) == LogRecordExportResult.SUCCESS:
                        break
                    reason = "refused"
                except Exception as exc:  # an exporter should not raise; count it like a refusal
                    reason = f"{type(exc).__name__}: {exc}"
                if attempt == self._attempts or self._closed:
                    ok = False
                    _LOG.error(
                        "run_identity: %d manifests lost: %s %s them %d times",
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
            left = len(self._queue) + self._in_flight
            self._queue.clear()
            self._lost += left
            self._room.notify_all()
        if left:
            _LOG.error(
                "run_identity: %d manifests lost: not exported within %s s of shutdown", left, self._shutdown_timeout
            )
        for exporter in self._exporters:
            try:
                exporter.shutdown()  # type: ignore[no-untyped-call]
            except Exception as exc:
                _LOG.error("run_identity: a manifest exporter failed to shut down: %s", exc)
