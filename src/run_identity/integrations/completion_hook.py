"""Run receipts through opentelemetry-util-genai's completion hook, without patching any client.

Every instrumentation built on ``opentelemetry-util-genai`` 1.x (the official
``opentelemetry-instrumentation-genai-openai``, ``-genai-anthropic``...) calls the completion hook that
``OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK`` names, from the ``opentelemetry_genai_completion_hook``
entry points, when a call finishes (a streamed one when its stream ends), with the output messages and the
call's span. ``pyproject.toml`` registers this module's :func:`completion_hook` there as ``run_identity``::

    OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK=run_identity opentelemetry-instrument python app.py

or, in code, ``OpenAIInstrumentor().instrument(completion_hook=RunIdentityCompletionHook())``.

For each call whose span carries a run identity (the processor bound a declaration to it: ``declare(...)``
or a client integration capturing the request), the hook signs the run's receipt over the output messages
the instrumentation gives it (in their semantic-convention JSON form), exports it as a
``run_identity.receipt`` log record and hands it to the client integration, if one is active, which
attaches it to the returned response (:func:`run_identity.receipt_of`). A span without an identity is
counted and left alone. The hook never raises (util-genai also swallows what a hook raises).

Where the hook is active, the client integrations only capture the request (identity before the call) and
leave the receipt to the hook; for a client without such an instrumentation they sign it themselves.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import LoggerProvider, get_logger_provider
from opentelemetry.trace import Span, TracerProvider

from run_identity.core.attributes import RUN_IDENTITY_ID
from run_identity.core.keys import Signer
from run_identity.core.receipt import Receipt, sign_receipt
from run_identity.integrations._capture import CaptureStats
from run_identity.integrations._receipts import BOARD, emit_receipt
from run_identity.otel.installed import find_identity_processor

__all__ = ["RunIdentityCompletionHook", "completion_hook", "output_json"]

_LOG = logging.getLogger("run_identity")
#: The instrumentation scope of the receipts the hook exports.
SCOPE = "run_identity.completion_hook"


def output_json(value: Any) -> Any:
    """A util-genai message (dataclasses: ``OutputMessage``, ``TextPart``...) as semantic-convention JSON.

    Fields that are None are left out, enums become their value, ``bytes`` (a blob part's content) base64.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[f.name] = output_json(item)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [output_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): output_json(v) for k, v in value.items()}
    return value


def _str(value: object) -> str | None:
    return value if type(value) is str else None


def _finish_reasons(attributes: Mapping[str, Any], output: Sequence[Any]) -> list[str]:
    reasons = attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, (list, tuple)) and all(type(r) is str for r in reasons):
        return list(reasons)
    return [m["finish_reason"] for m in output if type(m) is dict and type(m.get("finish_reason")) is str]


class RunIdentityCompletionHook:
    """The ``run_identity`` completion hook (see the module docstring).

    ``signer``, ``salt`` and ``logger_provider`` default to those of the identity processor on the span's
    TracerProvider (else on ``tracer_provider``, else the global one). ``export_output=False`` leaves the
    output out of the exported receipt (its digest stays); ``strict`` raises failures (for tests).
    """

    #: How the client integrations recognize this hook inside an instrumentation (they then leave it the receipt).
    run_identity_hook = True

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        signer: Signer | None = None,
        logger_provider: LoggerProvider | None = None,
        salt: bytes | None = None,
        export_output: bool = True,
        strict: bool = False,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.signer = signer
        self.logger_provider = logger_provider
        self.salt = salt
        self.export_output = export_output
        self.strict = strict
        self._lock = threading.Lock()
        self._counts = {"captured": 0, "receipts": 0, "receipt_failures": 0, "unbound": 0}
        self._logged: set[str] = set()

    @property
    def stats(self) -> CaptureStats:
        """Calls seen (``captured``), receipts made, failures, and calls whose span had no identity (``unbound``)."""
        with self._lock:
            c = self._counts
            return CaptureStats(c["captured"], 0, c["receipts"], c["receipt_failures"], c["unbound"])

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _log_once(self, reason: str) -> None:
        with self._lock:
            if reason in self._logged or len(self._logged) >= 256:
                return
            self._logged.add(reason)
        _LOG.warning(
            "run_identity completion hook: a receipt could not be made: %s (further occurrences are counted, not "
            "logged)",
            reason,
        )

    def on_completion(
        self,
        *,
        inputs: Sequence[Any] = (),
        outputs: Sequence[Any] = (),
        system_instruction: Sequence[Any] = (),
        tool_definitions: Sequence[Any] | None = None,
        span: Span | None = None,
        log_record: Any = None,
        **_: Any,
    ) -> None:
        """Sign the receipt of the call that just completed on ``span`` (see the module docstring)."""
        try:
            self._on_completion(outputs, span)
        except Exception as exc:
            self._count("receipt_failures")
            if self.strict:
                raise
            self._log_once(f"{type(exc).__name__}: {exc}"[:500])

    def _on_completion(self, outputs: Sequence[Any], span: Span | None) -> Receipt | None:
        self._count("captured")
        attributes = getattr(span, "attributes", None) if span is not None else None
        identity = attributes.get(RUN_IDENTITY_ID) if attributes else None
        if span is None or type(identity) is not str:
            self._count("unbound")  # no declaration was bound to this span (or it is not recording)
            return None
        assert attributes is not None
        context = span.get_span_context()
        key = (format(context.trace_id, "032x"), format(context.span_id, "016x"))
        signer, logger_provider, salt = self._signing(span)
        if signer is None:
            self._count("unbound")
            self._log_once("no signer: no identity processor on the span's TracerProvider")
            return None
        if not BOARD.claim(key):  # a client integration signed this run already
            return None
        try:
            output = [output_json(m) for m in outputs]
            receipt = sign_receipt(
                signer,
                identity=identity,
                trace_id=key[0],
                span_id=key[1],
                output=output,
                finish_reasons=_finish_reasons(attributes, output),
                request_model=_str(attributes.get("gen_ai.request.model")),
                response_model=_str(attributes.get("gen_ai.response.model")),
                response_id=_str(attributes.get("gen_ai.response.id")),
                system_fingerprint=_str(attributes.get("openai.response.system_fingerprint")),
                salt=salt,
            )
        except Exception:
            BOARD.release(key)  # a client integration may still sign the run from the response it reads
            raise
        if logger_provider is not None:
            emit_receipt(receipt, logger_provider, span, self.export_output, SCOPE)
        BOARD.put(key, receipt)
        self._count("receipts")
        return receipt

    def _signing(self, span: Span) -> tuple[Signer | None, LoggerProvider | None, bytes]:
        """As given, else the identity processor's: on the span's own provider, ``tracer_provider``, global."""
        processor = None
        for provider in (
            _provider_of(span),
            self.tracer_provider,
            trace_api.get_tracer_provider(),
        ):
            if provider is not None:
                processor = find_identity_processor(provider)
                if processor is not None:
                    break
        if processor is None:
            from run_identity.otel.installed import installed_processor

            processor = installed_processor()
        signer = self.signer or (processor.signer if processor is not None else None)
        salt = self.salt if self.salt is not None else (processor.salt if processor is not None else b"")
        logger_provider = self.logger_provider
        if logger_provider is None and processor is not None:
            logger_provider = processor.logger_provider
        elif logger_provider is None and self.signer is not None:
            logger_provider = get_logger_provider()
        return signer, logger_provider, salt


class _SpanProcessors:
    """Looks like a TracerProvider to :func:`find_identity_processor` (its active span processor)."""

    def __init__(self, active: object) -> None:
        self._active_span_processor = active


def _provider_of(span: Span) -> object | None:
    """The span processors of the SDK TracerProvider that started ``span`` (its private ``_span_processor``)."""
    active = getattr(span, "_span_processor", None)
    return _SpanProcessors(active) if active is not None else None


def completion_hook() -> RunIdentityCompletionHook:
    """The ``opentelemetry_genai_completion_hook`` entry point: util-genai calls it to make the hook."""
    return RunIdentityCompletionHook()
