"""The span processor: a signed identity on every declared GenAI span, and its manifest as a log event.

``on_start`` runs synchronously on the thread that starts the span. For a GenAI span (one with
``gen_ai.operation.name`` at start, or one :func:`run_identity.start_genai_span` started) it looks up the
active :class:`~run_identity.declare.Declaration` in the span's parent context (then in the current
context), claims it, computes the identity of the declared composition, signs the binding statement for
this span, sets the ``run_identity.*`` attributes and emits the manifest. It never reads the composition
back from span attributes. Other spans are not touched; GenAI spans without an applicable declaration are
counted and left as they are.

It never raises into the application: a composition that cannot be identified (or a signer or logs
pipeline that fails) is logged once per distinct reason, counted, and the span gets ``run_identity.error``
with the reason. ``strict=True`` raises instead, for tests and CI.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

from opentelemetry import context as context_api
from opentelemetry._logs import LoggerProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from run_identity.attributes import RUN_IDENTITY_ERROR
from run_identity.composition import Composition
from run_identity.declare import Declaration, current_declaration
from run_identity.keys import Signer
from run_identity.manifest_export import GEN_AI_REQUEST_MODEL, ManifestEmitter
from run_identity.signing import sign_run
from run_identity.statement import format_timestamp

__all__ = ["GEN_AI_OPERATION_NAME", "Coverage", "IdentitySpanProcessor"]

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
_LOG = logging.getLogger("run_identity")
_MAX_REASON = 500
_MAX_LOGGED_REASONS = 256
# Indexes of the counters, in the order of the fields of Coverage.
_GENAI_SPANS, _IDENTIFIED, _UNDECLARED, _FAILED, _EMITTED, _EMIT_FAILED = range(6)


@dataclass(frozen=True)
class Coverage:
    """Counters of an :class:`IdentitySpanProcessor`, read at one instant.

    ``genai_spans`` = ``identified`` + ``undeclared`` + ``failed``. ``manifest_failures`` counts identified
    runs whose manifest could not be handed to the Logs SDK.
    """

    genai_spans: int = 0
    identified: int = 0
    undeclared: int = 0
    failed: int = 0
    manifests_emitted: int = 0
    manifest_failures: int = 0

    @property
    def ratio(self) -> float:
        """Share of GenAI spans that carry an identity (1.0 when there were none)."""
        return self.identified / self.genai_spans if self.genai_spans else 1.0


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


class IdentitySpanProcessor(SpanProcessor):
    """Binds declared compositions to GenAI spans in ``on_start`` (see the module docstring).

    ``signer`` signs every binding statement (load it once, e.g. with :func:`run_identity.load_signer`).
    ``logger_provider`` receives the manifests (default: the global one); ``emit_manifests=False`` turns
    them off. ``salt`` is the deployment's blinding salt (empty by default). Raises ValueError for a
    ``signer`` without ``key_id``/``sign`` or a non-bytes ``salt``.
    """

    def __init__(
        self,
        signer: Signer,
        *,
        logger_provider: LoggerProvider | None = None,
        strict: bool = False,
        salt: bytes = b"",
        emit_manifests: bool = True,
    ) -> None:
        if not (isinstance(getattr(signer, "key_id", None), str) and callable(getattr(signer, "sign", None))):
            raise ValueError("signer must have a 'key_id' string and a 'sign(data) -> bytes' method")
        if type(salt) is not bytes:
            raise ValueError("salt must be bytes")
        self._signer = signer
        self._strict = strict
        self._salt = salt
        self._emitter = ManifestEmitter(logger_provider) if emit_manifests else None
        self._lock = threading.Lock()
        self._counts = [0, 0, 0, 0, 0, 0]  # the fields of Coverage, in order
        self._logged: set[str] = set()

    @property
    def strict(self) -> bool:
        return self._strict

    @property
    def signer(self) -> Signer:
        """The signer of binding statements (client integrations sign run receipts with it too)."""
        return self._signer

    @property
    def salt(self) -> bytes:
        """The deployment's blinding salt (empty by default)."""
        return self._salt

    @property
    def logger_provider(self) -> LoggerProvider | None:
        """Where manifests (and receipts) go; None when manifests are off."""
        return self._emitter.logger_provider if self._emitter is not None else None

    @property
    def coverage(self) -> Coverage:
        """The counters now."""
        with self._lock:
            return Coverage(*self._counts)

    def _count(self, outcome: int, *, genai_span: bool = True) -> None:
        with self._lock:
            if genai_span:
                self._counts[_GENAI_SPANS] += 1
            self._counts[outcome] += 1

    def _log_once(self, reason: str, message: str) -> None:
        with self._lock:
            if reason in self._logged or len(self._logged) >= _MAX_LOGGED_REASONS:
                return
            self._logged.add(reason)
        _LOG.warning("%s: %s (further occurrences are counted, not logged)", message, reason)

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        try:
            self._on_start(span, parent_context)
        except Exception as exc:
            if self._strict:
                raise
            # Only a defect could get here (expected failures are handled in _bind); still never raise.
            self._log_once(_reason(exc), "run_identity: on_start failed")

    def _on_start(self, span: Span, parent_context: context_api.Context | None) -> None:
        attributes = span.attributes
        operation = attributes.get(GEN_AI_OPERATION_NAME) if attributes else None
        if operation is None:
            # Not a GenAI span, unless start_genai_span started it (its declaration is in the parent context).
            if parent_context is None:
                return
            declaration = current_declaration(parent_context)
            if declaration is None or not declaration.targeted:
                return
        else:
            declaration = current_declaration(parent_context)
            if declaration is None and parent_context is not None:
                declaration = current_declaration()
            if declaration is None or not (
                declaration.targeted
                or declaration.applies_to(operation, attributes.get(GEN_AI_REQUEST_MODEL))  # type: ignore[union-attr]
            ):
                self._count(_UNDECLARED)
                return
        if not declaration.claim():
            self._count(_UNDECLARED)
            return
        self._bind(span, declaration)

    def _bind(self, span: Span, declaration: Declaration) -> None:
        context = span.get_span_context()
        trace_id = format(context.trace_id, "032x")
        span_id = format(context.span_id, "016x")
        try:
            declared = declaration.composition
            composition = declared if type(declared) is Composition else Composition.from_dict(declared)  # type: ignore[arg-type]
            run = sign_run(
                composition,
                self._signer,
                trace_id=trace_id,
                span_id=span_id,
                salt=self._salt,
                declared_at=format_timestamp(declaration.declared_ns),
            )
        except Exception as exc:
            reason = _reason(exc)
            declaration.error = reason
            self._count(_FAILED)
            if self._strict:
                raise
            with contextlib.suppress(Exception):  # a span refusing attributes must not break the app
                span.set_attribute(RUN_IDENTITY_ERROR, reason)
            self._log_once(reason, "run_identity: a declared composition could not be identified")
            return
        span.set_attributes(run.span_attributes())
        declaration.identity = run.identity.id
        declaration.trace_id = trace_id
        declaration.span_id = span_id
        self._count(_IDENTIFIED)
        if self._emitter is None:
            return
        try:
            self._emitter.emit(run, context, model=declaration.model, provider=declaration.provider)
        except Exception as exc:
            self._count(_EMIT_FAILED, genai_span=False)
            if self._strict:
                raise
            self._log_once(_reason(exc), "run_identity: a manifest could not be emitted")
            return
        self._count(_EMITTED, genai_span=False)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the manifests' LoggerProvider too, so a TracerProvider flush also delivers manifests."""
        if self._emitter is None:
            return True
        flush = getattr(self._emitter.logger_provider, "force_flush", None)
        if flush is None:
            return True
        try:
            return bool(flush(timeout_millis))
        except Exception:
            return False
