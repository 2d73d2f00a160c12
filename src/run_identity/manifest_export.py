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

import time

from opentelemetry import trace as trace_api
from opentelemetry._logs import Logger, LoggerProvider, NoOpLoggerProvider, SeverityNumber, get_logger_provider
from opentelemetry.trace import NonRecordingSpan, SpanContext

from run_identity.attributes import MANIFEST_EVENT_NAME, RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID
from run_identity.errors import RunIdentityError
from run_identity.signing import SignedRun

__all__ = ["GEN_AI_PROVIDER_NAME", "GEN_AI_REQUEST_MODEL", "ManifestEmitter", "NoLoggerProvider"]

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
            from run_identity import __version__  # late: the package imports this module

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
