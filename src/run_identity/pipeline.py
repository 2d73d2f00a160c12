"""One call that wires a TracerProvider, a manifests LoggerProvider, the identity processor and export.

``setup(signer, directory="out")`` is the embedded default: no collector, spans in ``out/traces.jsonl``,
manifests in ``out/manifests.jsonl`` (OTLP-JSON lines, see :mod:`run_identity.export_file`). Extra span or
manifest exporters (OTLP, console...) can be added. The manifests get a LoggerProvider of their own, so
they are routed separately from application logs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace as trace_api
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from run_identity.export_file import file_exporters
from run_identity.keys import Signer, load_signer
from run_identity.processor import IdentitySpanProcessor
from run_identity.sampling import IdentitySampler

__all__ = ["IdentitySetup", "setup"]


@dataclass(frozen=True)
class IdentitySetup:
    """What :func:`setup` built. ``shutdown`` flushes and closes both providers."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    processor: IdentitySpanProcessor

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
) -> IdentitySetup:
    """Build the providers, install the processor, and export to ``directory`` and/or the given exporters.

    ``signer`` is a Signer or the path of a PEM signing key. ``sampler`` is wrapped in
    :class:`IdentitySampler` so declared runs keep their manifests when their spans are not sampled.
    With ``set_global`` the TracerProvider becomes the global one (the manifests' LoggerProvider never
    does). Raises KeyringError for an unreadable key, ValueError for bad arguments.
    """
    if not isinstance(signer, Signer):
        signer = load_signer(signer)
    spans: list[SpanExporter] = list(span_exporters)
    manifests: list[LogRecordExporter] = list(manifest_exporters)
    if directory is not None:
        span_file, manifest_file = file_exporters(directory)
        spans.append(span_file)
        manifests.append(manifest_file)
    logger_provider = LoggerProvider(resource=resource)
    for log_exporter in manifests:
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    tracer_provider = TracerProvider(resource=resource, sampler=IdentitySampler(sampler))
    processor = IdentitySpanProcessor(signer, logger_provider=logger_provider, strict=strict, salt=salt)
    tracer_provider.add_span_processor(processor)
    for span_exporter in spans:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if set_global:
        trace_api.set_tracer_provider(tracer_provider)
    return IdentitySetup(tracer_provider, logger_provider, processor)
