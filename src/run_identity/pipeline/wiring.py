"""One call that wires a TracerProvider, a manifests LoggerProvider, the identity processor and export.

``setup(signer, directory="out")`` is the embedded default: no collector, spans in ``out/traces.jsonl``,
manifests in ``out/manifests.jsonl`` (OTLP-JSON lines, see :mod:`run_identity.otel.export_file`). Extra span or
manifest exporters (OTLP, console...) can be added. The manifests get a LoggerProvider of their own, so
they are routed separately from application logs.

Manifests leave through one :class:`~run_identity.otel.manifest_export.ManifestExportQueue`, not the SDK's
``BatchLogRecordProcessor`` (which drops the oldest records when its queue is full, silently): when the
queue is full the emitting thread waits (bounded), and any manifest lost anyway is counted in the
processor's ``coverage`` (``manifest_failures``, ``manifests_lost``) and logged. With ``spool_dir`` every
manifest exporter is wrapped in a :class:`~run_identity.pipeline.spool.SpoolingLogExporter`, so a batch the
destination does not take is kept on disk (durable hand-off) and sent again later.

Spans leave the same way, through one :class:`~run_identity.otel.span_export.SpanExportQueue` instead of the
SDK's ``BatchSpanProcessor`` (which drops spans silently when its queue is full, and verify then reports
``span_missing``): the thread ending a span waits (bounded) when the queue is full, and a run span lost
anyway is counted in ``coverage.spans_lost`` and logged. With ``spool_dir`` every span exporter is wrapped
in a :class:`~run_identity.pipeline.spool.SpoolingSpanExporter` too.
``IdentitySetup.queue_sizes`` reports both queues; ``shutdown`` delivers (or spools) what is pending.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from run_identity.core.keys import Signer, load_signer
from run_identity.otel.export_file import file_exporters
from run_identity.otel.manifest_export import ManifestExportQueue
from run_identity.otel.processor import IdentitySpanProcessor
from run_identity.otel.sampling import IdentitySampler
from run_identity.otel.span_export import SpanExportQueue

__all__ = ["IdentitySetup", "manifest_logger_provider", "setup", "span_export_queue"]


@dataclass(frozen=True)
class IdentitySetup:
    """What :func:`setup` built. ``shutdown`` flushes and closes both providers."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    processor: IdentitySpanProcessor
    manifest_queue: ManifestExportQueue | None = field(default=None, compare=False)
    spooling_exporters: tuple[Any, ...] = field(default=(), compare=False)
    span_queue: SpanExportQueue | None = field(default=None, compare=False)
    span_spooling_exporters: tuple[Any, ...] = field(default=(), compare=False)

    @property
    def queue_sizes(self) -> dict[str, int]:
        """The export queues now: the manifest queue's capacity, batch size, records waiting, exported,
        dropped, lost, waits and spooled batches pending, then the same for the span queue under ``spans_*``
        names (with ``spans_run_dropped`` and ``spans_run_lost``, the run spans among them)."""
        sizes: dict[str, int] = {}
        if self.manifest_queue is not None:
            sizes.update(self._manifest_sizes(self.manifest_queue))
        if self.span_queue is not None:
            spans = self.span_queue.stats
            sizes.update(
                spans_max_queue_size=spans.max_queue_size,
                spans_max_batch_size=spans.max_batch_size,
                spans_queued=spans.queued,
                spans_exported=spans.exported,
                spans_dropped=spans.dropped,
                spans_lost=spans.lost,
                spans_waits=spans.waits,
                spans_run_dropped=spans.run_spans_dropped,
                spans_run_lost=spans.run_spans_lost,
                spans_spooled_pending=sum(e.stats.pending for e in self.span_spooling_exporters),
            )
        return sizes

    def _manifest_sizes(self, queue: ManifestExportQueue) -> dict[str, int]:
        stats = queue.stats
        return {
            "max_queue_size": stats.max_queue_size,
            "max_batch_size": stats.max_batch_size,
            "queued": stats.queued,
            "exported": stats.exported,
            "dropped": stats.dropped,
            "lost": stats.lost,
            "waits": stats.waits,
            "spooled_pending": sum(e.stats.pending for e in self.spooling_exporters),
        }

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything recorded so far (spans and manifests)."""
        spans = self.tracer_provider.force_flush(timeout_millis)
        return bool(self.logger_provider.force_flush(timeout_millis)) and spans

    def shutdown(self) -> None:
        """Flush and stop both providers (spans first, then the manifests)."""
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


def setup(
    signer: Signer | str | os.PathLike[str],
    *,
    directory: str | os.PathLike[str] | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    manifest_exporters: Sequence[LogRecordExporter] = (),
    resource: Resource | None = None,
    sampler: Sampler | None = None,
    strict: bool = False,
    salt: bytes = b"",
    set_global: bool = True,
    spool_dir: str | os.PathLike[str] | None = None,
    manifest_queue_size: int = 2048,
    manifest_batch_size: int = 512,
    manifest_max_wait: float = 30.0,
    span_queue_size: int = 2048,
    span_batch_size: int = 512,
    span_max_wait: float = 30.0,
) -> IdentitySetup:
    """Build the providers, install the processor, and export to ``directory`` and/or the given exporters.

    ``signer`` is a Signer or the path of a PEM signing key. ``sampler`` is wrapped in
    :class:`IdentitySampler` so declared runs keep their manifests when their spans are not sampled.
    With ``set_global`` the TracerProvider becomes the global one (the manifests' LoggerProvider never
    does). Manifests are exported through a queue of ``manifest_queue_size`` records in batches of
    ``manifest_batch_size``; an emitting thread waits at most ``manifest_max_wait`` seconds for room.
    Spans likewise go through a queue of ``span_queue_size`` spans in batches of ``span_batch_size``; a
    thread ending a span waits at most ``span_max_wait`` seconds for room.
    ``spool_dir`` keeps the batches an exporter does not deliver (see the module docstring).
    Raises KeyringError for an unreadable key, ValueError for bad arguments.
    """
    if not isinstance(signer, Signer):
        signer = load_signer(signer)
    spans: list[SpanExporter] = list(span_exporters)
    manifests: list[LogRecordExporter] = list(manifest_exporters)
    if directory is not None:
        span_file, manifest_file = file_exporters(directory)
        spans.append(span_file)
        manifests.append(manifest_file)
    logger_provider, queue, spooling = manifest_logger_provider(
        manifests,
        resource=resource,
        spool_dir=spool_dir,
        queue_size=manifest_queue_size,
        batch_size=manifest_batch_size,
        max_wait=manifest_max_wait,
    )
    tracer_provider = TracerProvider(resource=resource, sampler=IdentitySampler(sampler))
    processor = IdentitySpanProcessor(signer, logger_provider=logger_provider, strict=strict, salt=salt)
    if queue is not None:
        processor.count_manifest_losses(queue.lost)
    tracer_provider.add_span_processor(processor)
    span_queue, span_spooling = span_export_queue(
        spans, spool_dir=spool_dir, queue_size=span_queue_size, batch_size=span_batch_size, max_wait=span_max_wait
    )
    if span_queue is not None:
        processor.count_span_losses(span_queue.run_spans_lost)
        tracer_provider.add_span_processor(span_queue)
    if set_global:
        trace_api.set_tracer_provider(tracer_provider)
    return IdentitySetup(tracer_provider, logger_provider, processor, queue, spooling, span_queue, span_spooling)


def span_export_queue(
    exporters: Sequence[SpanExporter],
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    queue_size: int = 2048,
    batch_size: int = 512,
    max_wait: float = 30.0,
) -> tuple[SpanExportQueue | None, tuple[Any, ...]]:
    """One :class:`~run_identity.otel.span_export.SpanExportQueue` exporting to ``exporters`` (none when there is
    no exporter); with ``spool_dir`` each exporter is wrapped in a
    :class:`~run_identity.pipeline.spool.SpoolingSpanExporter` (the first spools into ``traces.spool.binpb``, the next
    ones into ``traces-<i>.spool.binpb``). Returns the queue and the spooling wrappers.
    """
    wrapped: list[SpanExporter] = list(exporters)
    spooling: list[Any] = []
    if spool_dir is not None:
        from run_identity.pipeline.spool import TRACES_SPOOL, SpoolingSpanExporter

        for i, exporter in enumerate(wrapped):
            name = TRACES_SPOOL if i == 0 else f"traces-{i}.spool.binpb"
            spooling.append(SpoolingSpanExporter(exporter, Path(spool_dir) / name))
        wrapped = spooling
    if not wrapped:
        return None, ()
    queue = SpanExportQueue(wrapped, max_queue_size=queue_size, max_batch_size=batch_size, max_wait=max_wait)
    return queue, tuple(spooling)


def manifest_logger_provider(
    exporters: Sequence[LogRecordExporter],
    *,
    resource: Resource | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    queue_size: int = 2048,
    batch_size: int = 512,
    max_wait: float = 30.0,
    shutdown_on_exit: bool = True,
) -> tuple[LoggerProvider, ManifestExportQueue | None, tuple[Any, ...]]:
    """The manifests' own LoggerProvider, exporting to ``exporters`` through one
    :class:`~run_identity.otel.manifest_export.ManifestExportQueue` (none when there is no exporter); with
    ``spool_dir`` each exporter is wrapped in a :class:`~run_identity.pipeline.spool.SpoolingLogExporter` (the first
    spools into ``logs.spool.binpb``, the next ones into ``logs-<i>.spool.binpb``). Returns the provider, the
    queue and the spooling wrappers. Shared by :func:`setup` and the zero-code installation.
    """
    manifests: list[LogRecordExporter] = list(exporters)
    spooling: list[Any] = []
    if spool_dir is not None:
        from run_identity.pipeline.spool import LOGS_SPOOL, SpoolingLogExporter

        for i, exporter in enumerate(manifests):
            name = LOGS_SPOOL if i == 0 else f"logs-{i}.spool.binpb"
            spooling.append(SpoolingLogExporter(exporter, Path(spool_dir) / name))
        manifests = spooling
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=shutdown_on_exit)
    queue = None
    if manifests:
        queue = ManifestExportQueue(manifests, max_queue_size=queue_size, max_batch_size=batch_size, max_wait=max_wait)
        logger_provider.add_log_record_processor(queue)
    return logger_provider, queue, tuple(spooling)
