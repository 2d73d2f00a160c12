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

import copy
import logging
import time
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
from run_identity.otel._export_batches import ExportBatcher

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
        self._batches: ExportBatcher[ReadableLogRecord] = ExportBatcher(
            exporters,
            lambda exporter, batch: exporter.export(batch) == LogRecordExportResult.SUCCESS,
            noun="manifests",
            max_queue_size=max_queue_size,
            max_batch_size=max_batch_size,
            schedule_delay=schedule_delay,
            max_wait=max_wait,
            export_attempts=export_attempts,
            retry_pause=retry_pause,
            shutdown_timeout=shutdown_timeout,
        )
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size

    @property
    def stats(self) -> ManifestQueueStats:
        counts = self._batches.counts()
        return ManifestQueueStats(
            self.max_queue_size,
            self.max_batch_size,
            counts.queued,
            counts.exported,
            counts.dropped,
            counts.lost,
            counts.waits,
        )

    def lost(self) -> int:
        """Records taken but never exported (the span processor adds them to its coverage)."""
        return self._batches.counts().lost

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
        dropped = self._batches.put(readable)
        if dropped is not None:
            raise ManifestDropped(f"the manifest export queue {dropped}")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False when ``timeout_millis`` passed first."""
        return self._batches.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is queued (at most ``shutdown_timeout`` seconds), then shut the exporters down."""
        self._batches.shutdown()
