"""Zero-code installation under ``opentelemetry-instrument``.

``pyproject.toml`` registers :func:`install` in the ``opentelemetry_pre_instrument`` entry-point group.
``opentelemetry-instrument`` (``opentelemetry.instrumentation.auto_instrumentation``) calls it after the
configurator has set the global TracerProvider and LoggerProvider from ``OTEL_*`` variables and before any
instrumentor runs, so the sampler is wrapped before instrumentations create their tracers. It reads the
``RUN_IDENTITY_*`` variables (:mod:`run_identity.otel.environment`) and never raises: whatever goes wrong is
logged and the application runs without identities.

Manifests leave as with :func:`run_identity.setup`: through a LoggerProvider of their own (the global
resource) and one :class:`~run_identity.otel.manifest_export.ManifestExportQueue` (bounded wait when full, every
loss counted in the processor's ``coverage`` and logged), not the SDK's ``BatchLogRecordProcessor`` (which
drops the oldest records silently). Its exporters are those ``OTEL_LOGS_EXPORTER`` names, made as the
SDK's configurator makes them (so ``OTEL_EXPORTER_OTLP_*`` configures them), plus the file exporter of
``RUN_IDENTITY_EXPORT_DIR``; with ``RUN_IDENTITY_SPOOL_DIR`` each is wrapped in a spooling exporter. At exit
(:func:`shutdown`, registered with ``atexit``) the global TracerProvider is shut down first (its last
manifests are emitted), then the manifests' provider, which delivers or spools what is queued.

Spans leave the same way: the exporters the configurator made for ``OTEL_TRACES_EXPORTER`` are taken out of
the SDK's ``BatchSpanProcessor``s (which drop spans silently when their queue is full) and put behind one
:class:`~run_identity.otel.span_export.SpanExportQueue` (bounded wait, losses of run spans counted in
``coverage.spans_lost``), with the file exporter of ``RUN_IDENTITY_EXPORT_DIR``, and spooled with
``RUN_IDENTITY_SPOOL_DIR``.

:func:`install_integrations` is registered in ``opentelemetry_post_instrument``: it runs after the
instrumentors, so the client integrations named by ``RUN_IDENTITY_CAPTURE`` wrap the instrumented methods
and an instrumentation's span takes the captured declaration.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Mapping

from opentelemetry import trace as trace_api
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from run_identity.core.errors import KeyringError
from run_identity.core.keys import load_signer
from run_identity.otel.environment import (
    RUN_IDENTITY_CAPTURE,
    RUN_IDENTITY_ENABLED,
    RUN_IDENTITY_EXPORT_DIR,
    RUN_IDENTITY_MANIFESTS,
    RUN_IDENTITY_SIGNING_KEY,
    RUN_IDENTITY_SPOOL_DIR,
    RUN_IDENTITY_STRICT,
    env_bool,
    env_str,
)
from run_identity.otel.export_file import file_exporters
from run_identity.otel.installed import installed_processor, register_installed
from run_identity.otel.processor import IdentitySpanProcessor
from run_identity.otel.sampling import IdentitySampler
from run_identity.pipeline.wiring import IdentitySetup, manifest_logger_provider, span_export_queue

__all__ = ["install", "install_integrations", "installed_processor", "installed_setup", "shutdown"]

_LOG = logging.getLogger("run_identity")
_setups: list[IdentitySetup] = []


def install(environ: Mapping[str, str] | None = None) -> IdentitySpanProcessor | None:
    """Install the processor on the global SDK providers as the environment says; None when not installed."""
    try:
        return _install(environ)
    except Exception:  # the application must start whatever happens here
        _LOG.exception("run_identity: zero-code installation failed; running without run identities")
        return None


def installed_setup() -> IdentitySetup | None:
    """What :func:`install` built in this process (providers, processor, manifest queue), if anything;
    ``queue_sizes`` reports the manifest queue."""
    return _setups[0] if _setups else None


def shutdown() -> None:
    """Shut down the global TracerProvider (its last manifests are emitted), then the manifests' provider
    (it exports or spools what is queued). Registered with ``atexit`` by :func:`install`; idempotent."""
    if not _setups:
        return
    setup = _setups[0]
    atexit.unregister(shutdown)
    try:
        setup.tracer_provider.shutdown()
    except Exception:  # never raise at exit; the manifests still get their chance below
        _LOG.exception("run_identity: shutting the TracerProvider down failed")
    try:
        setup.logger_provider.shutdown()
    except Exception:
        _LOG.exception("run_identity: shutting the manifests' LoggerProvider down failed")
    coverage = setup.processor.coverage
    if coverage.manifest_failures or coverage.manifests_lost:
        _LOG.error(
            "run_identity: %d manifests not delivered (%d not taken by the export queue, %d lost after it)",
            coverage.manifest_failures + coverage.manifests_lost,
            coverage.manifest_failures,
            coverage.manifests_lost,
        )


def _install(environ: Mapping[str, str] | None) -> IdentitySpanProcessor | None:
    if not env_bool(RUN_IDENTITY_ENABLED, False, environ):
        return None
    if installed_processor() is not None:
        return installed_processor()
    key_path = env_str(RUN_IDENTITY_SIGNING_KEY, environ)
    if key_path is None:
        _LOG.error(
            "run_identity: %s is true but %s is not set; not installed",
            RUN_IDENTITY_ENABLED,
            RUN_IDENTITY_SIGNING_KEY,
        )
        return None
    try:
        signer = load_signer(key_path)
    except KeyringError as exc:
        _LOG.error("run_identity: %s; not installed", exc)
        return None
    tracer_provider = trace_api.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        _LOG.error("run_identity: the global TracerProvider is not the OpenTelemetry SDK's; not installed")
        return None
    emit_manifests = env_bool(RUN_IDENTITY_MANIFESTS, True, environ)
    directory = env_str(RUN_IDENTITY_EXPORT_DIR, environ)
    manifest_exporters: list[LogRecordExporter] = _otel_log_exporters() if emit_manifests else []
    span_file = None
    if directory is not None:
        span_file, manifest_file = file_exporters(directory)
        if emit_manifests:
            manifest_exporters.append(manifest_file)
    if emit_manifests and not manifest_exporters:
        _LOG.warning(
            "run_identity: no manifest exporter (OTEL_LOGS_EXPORTER names none and %s is not set); "
            "manifests are not emitted",
            RUN_IDENTITY_EXPORT_DIR,
        )
        emit_manifests = False
    # The manifests' own provider; its shutdown is ours (below), after the TracerProvider's.
    logger_provider, queue, spooling = manifest_logger_provider(
        manifest_exporters,
        resource=tracer_provider.resource,
        spool_dir=env_str(RUN_IDENTITY_SPOOL_DIR, environ),
        shutdown_on_exit=False,
    )
    # Tracers copy the sampler when they are created; this runs before instrumentors create theirs.
    if not isinstance(tracer_provider.sampler, IdentitySampler):
        tracer_provider.sampler = IdentitySampler(tracer_provider.sampler)
    processor = IdentitySpanProcessor(
        signer,
        logger_provider=logger_provider,
        strict=env_bool(RUN_IDENTITY_STRICT, False, environ),
        emit_manifests=emit_manifests,
    )
    if queue is not None:
        processor.count_manifest_losses(queue.lost)
    tracer_provider.add_span_processor(processor)
    # The configurator put each OTEL_TRACES_EXPORTER exporter behind the SDK's BatchSpanProcessor, which
    # drops spans silently when its queue is full: their exporters move to our span queue instead.
    span_exporters = _adopt_batch_span_exporters(tracer_provider)
    if span_file is not None:
        span_exporters.append(span_file)
    span_queue, span_spooling = span_export_queue(span_exporters, spool_dir=env_str(RUN_IDENTITY_SPOOL_DIR, environ))
    if span_queue is not None:
        processor.count_span_losses(span_queue.run_spans_lost)
        tracer_provider.add_span_processor(span_queue)
    register_installed(processor)
    _setups.append(
        IdentitySetup(tracer_provider, logger_provider, processor, queue, spooling, span_queue, span_spooling)
    )
    # Registered after the TracerProvider's own handler, so it runs first (atexit is last in, first out).
    atexit.register(shutdown)
    _LOG.debug("run_identity: installed with key %s", signer.key_id)
    return processor


def _adopt_batch_span_exporters(tracer_provider: TracerProvider) -> list[SpanExporter]:
    """Take the exporters of the SDK ``BatchSpanProcessor``s on ``tracer_provider`` (the configurator's, one per
    ``OTEL_TRACES_EXPORTER`` exporter) and remove those processors, so that spans go through a queue that
    never drops one silently. Nothing has been exported through them yet (this runs at start-up); they are
    not shut down, since that would shut their exporters down too. When the SDK keeps its processors in
    another shape than this was written for, they stay, and that is logged."""
    active = getattr(tracer_provider, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", None)
    lock = getattr(active, "_lock", None)
    if not isinstance(processors, tuple) or lock is None:
        _LOG.warning(
            "run_identity: the SDK's span processors could not be read; spans keep the SDK's batch processor, "
            "which drops spans silently when its queue is full"
        )
        return []
    with lock:
        processors = active._span_processors  # type: ignore[union-attr]
        batch = [p for p in processors if type(p) is BatchSpanProcessor]
        active._span_processors = tuple(p for p in processors if type(p) is not BatchSpanProcessor)  # type: ignore[union-attr]
    return [p.span_exporter for p in batch]


def _otel_log_exporters() -> list[LogRecordExporter]:
    """One new instance of each log exporter ``OTEL_LOGS_EXPORTER`` names, made as the SDK's configurator
    makes its own (entry points ``opentelemetry_logs_exporter``, configured by ``OTEL_EXPORTER_OTLP_*``).
    An exporter that cannot be made is logged and skipped."""
    # The SDK's configurator has no public way to build its exporters; these are the functions it uses.
    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters

    try:
        _, _, classes = _import_exporters([], [], _get_exporter_names("logs"))
    except Exception as exc:
        _LOG.error("run_identity: cannot load the log exporters OTEL_LOGS_EXPORTER names: %s", exc)
        return []
    exporters: list[LogRecordExporter] = []
    for name, exporter_class in classes.items():
        try:
            exporters.append(exporter_class())
        except Exception as exc:
            _LOG.error("run_identity: cannot make the log exporter %r for manifests: %s", name, exc)
    return exporters


def install_integrations(environ: Mapping[str, str] | None = None) -> list[str]:
    """Enable the client integrations ``RUN_IDENTITY_CAPTURE`` names, when the processor was installed."""
    try:
        names = [n.strip() for n in (env_str(RUN_IDENTITY_CAPTURE, environ) or "").split(",") if n.strip()]
        if not names or installed_processor() is None:
            return []
        from run_identity.integrations import instrument

        return instrument(names)
    except Exception:  # the application must start whatever happens here
        _LOG.exception("run_identity: enabling the client integrations failed; running without them")
        return []
