"""Zero-code installation under ``opentelemetry-instrument``.

``pyproject.toml`` registers :func:`install` in the ``opentelemetry_pre_instrument`` entry-point group.
``opentelemetry-instrument`` (``opentelemetry.instrumentation.auto_instrumentation``) calls it after the
configurator has set the global TracerProvider and LoggerProvider from ``OTEL_*`` variables and before any
instrumentor runs, so the sampler is wrapped before instrumentations create their tracers. It reads the
``RUN_IDENTITY_*`` variables (:mod:`run_identity.environment`) and never raises: whatever goes wrong is
logged and the application runs without identities.

:func:`install_integrations` is registered in ``opentelemetry_post_instrument``: it runs after the
instrumentors, so the client integrations named by ``RUN_IDENTITY_CAPTURE`` wrap the instrumented methods
and an instrumentation's span takes the captured declaration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import _logs as logs_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from run_identity.environment import (
    RUN_IDENTITY_CAPTURE,
    RUN_IDENTITY_ENABLED,
    RUN_IDENTITY_EXPORT_DIR,
    RUN_IDENTITY_MANIFESTS,
    RUN_IDENTITY_SIGNING_KEY,
    RUN_IDENTITY_STRICT,
    env_bool,
    env_str,
)
from run_identity.errors import KeyringError
from run_identity.export_file import file_exporters
from run_identity.keys import load_signer
from run_identity.processor import IdentitySpanProcessor
from run_identity.sampling import IdentitySampler

__all__ = ["install", "install_integrations"]

_LOG = logging.getLogger("run_identity")
_installed: list[IdentitySpanProcessor] = []


def install(environ: Mapping[str, str] | None = None) -> IdentitySpanProcessor | None:
    """Install the processor on the global SDK providers as the environment says; None when not installed."""
    try:
        return _install(environ)
    except Exception:  # the application must start whatever happens here
        _LOG.exception("run_identity: zero-code installation failed; running without run identities")
        return None


def installed_processor() -> IdentitySpanProcessor | None:
    """The processor :func:`install` put in place in this process, if any."""
    return _installed[0] if _installed else None


def _install(environ: Mapping[str, str] | None) -> IdentitySpanProcessor | None:
    if not env_bool(RUN_IDENTITY_ENABLED, False, environ):
        return None
    if _installed:
        return _installed[0]
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
    logger_provider = logs_api.get_logger_provider()
    # Tracers copy the sampler when they are created; this runs before instrumentors create theirs.
    if not isinstance(tracer_provider.sampler, IdentitySampler):
        tracer_provider.sampler = IdentitySampler(tracer_provider.sampler)
    processor = IdentitySpanProcessor(
        signer,
        logger_provider=logger_provider,
        strict=env_bool(RUN_IDENTITY_STRICT, False, environ),
        emit_manifests=env_bool(RUN_IDENTITY_MANIFESTS, True, environ),
    )
    tracer_provider.add_span_processor(processor)
    directory = env_str(RUN_IDENTITY_EXPORT_DIR, environ)
    if directory is not None:
        span_file, manifest_file = file_exporters(directory)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_file))
        if isinstance(logger_provider, LoggerProvider):
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(manifest_file))
        else:
            _LOG.error("run_identity: the global LoggerProvider is not the SDK's; manifests are not written")
    _installed.append(processor)
    _LOG.debug("run_identity: installed with key %s", signer.key_id)
    return processor


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
