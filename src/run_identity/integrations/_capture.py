"""What every client integration shares: one captured run from request to receipt.

A :class:`Capture` is the state of one integration (its options and counters). For each call of a patched
method it builds the composition from the request arguments (the endpoint's :class:`Endpoint` knows how),
declares it for the GenAI span (the instrumentation's, or one started here when no instrumentation wraps
the method), calls the client, and when the output is complete (the response returned, or a stream read to
its end) signs a receipt, exports it as a ``run_identity.receipt`` log record and attaches it to the
returned object (:func:`run_identity.receipt_of`).

Nothing here raises into the application: a request that cannot be captured is logged once per reason,
counted, and sent as it is; a receipt that cannot be made is logged and counted. ``strict=True`` raises.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry._logs import LoggerProvider, get_logger_provider
from opentelemetry.trace import Span, SpanKind, TracerProvider

from run_identity.core.keys import Signer
from run_identity.core.receipt import Receipt, attach_receipt, sign_receipt
from run_identity.core.version import __version__
from run_identity.integrations._receipts import (
    ACTIVE,
    BOARD,
    SCOPE,
    Endpoint,
    Output,
    SpanKey,
    emit_receipt,
    set_response_attributes,
)
from run_identity.otel.declare import Declaration, context_with, current_declaration
from run_identity.otel.genai import genai_span_attributes
from run_identity.otel.installed import find_identity_processor

__all__ = ["Capture", "CaptureStats", "Run"]

_LOG = logging.getLogger("run_identity")


@dataclass(frozen=True)
class CaptureStats:
    """Counters of one integration: calls captured, requests that could not be, receipts made and not."""

    captured: int = 0
    capture_failures: int = 0
    receipts: int = 0
    receipt_failures: int = 0
    unbound: int = 0


@dataclass
class _Counters:
    captured: int = 0
    capture_failures: int = 0
    receipts: int = 0
    receipt_failures: int = 0
    unbound: int = 0
    logged: set[str] = field(default_factory=set)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _client_spans(endpoint: Endpoint, instance: Any, provider: object) -> bool:
    """Whether the client itself starts the call's GenAI span in a provider with the identity processor."""
    check = getattr(endpoint, "client_spans", None)
    if check is None:
        return False
    try:
        return bool(check(instance, provider))
    except Exception:  # unknown client internals: start our span as usual
        return False


class Capture:
    """Options and counters of one client integration (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        tracer_provider: TracerProvider | None = None,
        signer: Signer | None = None,
        logger_provider: LoggerProvider | None = None,
        salt: bytes | None = None,
        strict: bool = False,
        export_output: bool = True,
    ) -> None:
        self.name = name
        self.tracer_provider = tracer_provider
        self.signer = signer
        self.logger_provider = logger_provider
        self.salt = salt
        self.strict = strict
        self.export_output = export_output
        self.enabled = True
        #: Whether the span is started only where nobody else starts one (``own_span=None``).
        self.auto_span = True
        self._lock = threading.Lock()
        self._counts = _Counters()

    @property
    def stats(self) -> CaptureStats:
        with self._lock:
            c = self._counts
            return CaptureStats(c.captured, c.capture_failures, c.receipts, c.receipt_failures, c.unbound)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self._counts, name, getattr(self._counts, name) + 1)

    def log_once(self, reason: str, message: str) -> None:
        with self._lock:
            if reason in self._counts.logged or len(self._counts.logged) >= 256:
                return
            self._counts.logged.add(reason)
        _LOG.warning(
            "run_identity %s: %s: %s (further occurrences are counted, not logged)", self.name, message, reason
        )

    def provider(self) -> TracerProvider:
        return self.tracer_provider if self.tracer_provider is not None else trace_api.get_tracer_provider()

    def start(
        self, endpoint: Endpoint, instance: Any, kwargs: dict[str, Any], *, own_span: bool, hooked: bool = False
    ) -> Run | None:
        """Capture the request; None (request sent as it is) when disabled, nested or not capturable."""
        if not self.enabled or ACTIVE.get():
            return None
        applies = getattr(endpoint, "applies", None)  # a method call that sends no model request
        if applies is not None and not applies(kwargs):
            return None
        try:
            composition = endpoint.composition(instance, kwargs)
        except Exception as exc:
            self.count("capture_failures")
            if self.strict:
                raise
            self.log_once(_reason(exc), "a request could not be captured; it is sent without an identity")
            return None
        self.count("captured")
        outer = current_declaration()
        if outer is not None and not outer.claimed and not outer.targeted:
            outer.captured_by = self.name  # the call's span takes the capture's declaration, not this one
            outer.seen(find_identity_processor(self.provider()))
        if own_span and self.auto_span and _client_spans(endpoint, instance, self.provider()):
            own_span = False  # the client starts a GenAI span of its own in this provider: that one is the run's
        run = Run(self, endpoint, composition, own_span=own_span, stream=endpoint.streams(kwargs))
        run.deferred = hooked and not own_span
        return run


class Run:
    """One captured call: its declaration, the span started for it (if any), and its receipt at the end."""

    __slots__ = (
        "_capture",
        "_done",
        "_endpoint",
        "_guard",
        "_token",
        "carriers",
        "declaration",
        "deferred",
        "receipt",
        "span",
        "stream",
    )

    def __init__(
        self, capture: Capture, endpoint: Endpoint, composition: dict[str, Any], *, own_span: bool, stream: bool
    ) -> None:
        self._capture = capture
        self._endpoint = endpoint
        self._done = False
        self._token: object = None
        self._guard: contextvars.Token[bool] | None = None
        self.stream = stream
        self.receipt: Receipt | None = None
        #: Objects besides the returned one that :func:`run_identity.receipt_of` answers for (stream helpers).
        self.carriers: list[object] = []
        #: True when the instrumentation's completion hook signs the receipt (this run only attaches it).
        self.deferred = False
        self.declaration = Declaration(composition, targeted=own_span)
        self.span: Span | None = None
        if own_span:
            name, attributes = genai_span_attributes(self.declaration)
            tracer = trace_api.get_tracer(SCOPE, __version__, capture.provider())
            self.span = tracer.start_span(
                name, context=context_with(self.declaration), kind=SpanKind.CLIENT, attributes=attributes
            )

    def enter(self) -> None:
        """Make the declaration (and the span started for it) current, for the client call."""
        ctx = context_with(self.declaration)
        if self.span is not None:
            ctx = trace_api.set_span_in_context(self.span, ctx)
        self._token = context_api.attach(ctx)
        self._guard = ACTIVE.set(True)

    def exit(self) -> None:
        """Undo :meth:`enter`."""
        if self._guard is not None:
            ACTIVE.reset(self._guard)
            self._guard = None
        if self._token is not None:
            context_api.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        # The call is over; an instrumentation that detaches its own context later (at a stream's end, a
        # manager's exit) makes the call's context current again, but its declaration no longer shows.
        self.declaration.closed = True

    def fail(self, exc: BaseException) -> None:
        """The call raised: the span records it; no receipt."""
        if self._done:
            return
        self._done = True
        span = self.span
        if span is not None:
            span.record_exception(exc)
            span.set_status(trace_api.Status(trace_api.StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__qualname__)
            span.end()

    def abandon(self) -> None:
        """A stream closed before its end: the span ends; a partial output gets no receipt."""
        if self._done:
            return
        self._done = True
        if self.span is not None:
            self.span.end()

    def returned(self, response: Any) -> None:
        """A non-streamed response arrived (``with_raw_response``'s wrapper is read through its ``parse()``)."""
        kind = type(response).__name__
        if kind == "LegacyAPIResponse":
            self.finish(self._safe(lambda: self._endpoint.output(response.parse())), response)
        elif hasattr(response, "http_response"):
            self.finish(None, response)  # a streaming-response wrapper: reading it is the application's
        else:
            self.finish(self._safe(lambda: self._endpoint.output(response)), response)

    def key(self) -> SpanKey | None:
        """The span the declaration was bound to, once it was."""
        d = self.declaration
        return None if d.trace_id is None or d.span_id is None else (d.trace_id, d.span_id)

    def settle(self, response: Any, carriers: Iterable[object] = ()) -> None:
        """A deferred run returned: attach the completion hook's receipt (now, or when a stream ends).

        A non-streamed call whose hook made no receipt (an instrumentation that did not call it) is signed here.
        """
        key = self.key()
        if key is None:
            self.finish(None, response)
            if self.declaration.identity is None:
                self._capture.count("unbound")
            return
        if self.stream:
            self._done = True
            self.wait_for_hook(key, (response, *carriers))
            return
        receipt = BOARD.take(key)
        if receipt is None:
            self._capture.log_once(
                "no completion hook receipt",
                "the completion hook made no receipt for a call; the integration signs it unless the hook tried",
            )
            self.returned(response)
            return
        self._done = True
        self.receipt = receipt
        for obj in (response, *carriers, *self.carriers):
            attach_receipt(obj, receipt)
        self._capture.count("receipts")

    def wait_for_hook(self, key: SpanKey, carriers: Iterable[object]) -> None:
        BOARD.wait(key, [*carriers, *self.carriers], self._hook_receipt)

    def _hook_receipt(self, receipt: Receipt) -> None:
        self.receipt = receipt
        self._capture.count("receipts")

    def _safe(self, make: Callable[[], Output | None]) -> Output | None:
        try:
            return make()
        except Exception as exc:
            self._capture.count("receipt_failures")
            if self._capture.strict:
                raise
            self._capture.log_once(_reason(exc), "the output could not be read; no receipt")
            return None

    def finish(self, output: Output | None, carrier: object) -> None:
        """The output is complete: set the span's response attributes, end it, sign and export the receipt."""
        if self._done:
            return
        self._done = True
        try:
            if output is not None:
                self._receipt(output, carrier)
        finally:
            if self.span is not None:
                if output is not None:
                    set_response_attributes(self.span, output)
                self.span.end()

    def _receipt(self, output: Output, carrier: object) -> None:
        capture = self._capture
        declaration = self.declaration
        if declaration.identity is None or declaration.trace_id is None or declaration.span_id is None:
            capture.count("unbound")  # no identity processor, or the composition could not be identified
            return
        key = (declaration.trace_id, declaration.span_id)
        if not BOARD.claim(key):  # the completion hook signed this run already
            made = BOARD.take(key)
            if made is not None:
                self.receipt = made
                for obj in (carrier, *self.carriers):
                    attach_receipt(obj, made)
            return
        try:
            signer, logger_provider, salt = self._signing()
            if signer is None:
                capture.count("unbound")
                return
            receipt = sign_receipt(
                signer,
                identity=declaration.identity,
                trace_id=declaration.trace_id,
                span_id=declaration.span_id,
                output=output.messages,
                finish_reasons=output.finish_reasons,
                request_model=declaration.model,
                response_model=output.response_model,
                response_id=output.response_id,
                system_fingerprint=output.system_fingerprint,
                salt=salt,
            )
            self.receipt = receipt
            for obj in (carrier, *self.carriers):
                attach_receipt(obj, receipt)
            if logger_provider is not None:
                emit_receipt(receipt, logger_provider, self.span, capture.export_output)
        except Exception as exc:
            capture.count("receipt_failures")
            if capture.strict:
                raise
            capture.log_once(_reason(exc), "a receipt could not be made")
            return
        capture.count("receipts")

    def _signing(self) -> tuple[Signer | None, LoggerProvider | None, bytes]:
        """The signer, the LoggerProvider and the salt: as given to ``instrument()``, else the processor's."""
        capture = self._capture
        processor = find_identity_processor(capture.provider())
        signer = capture.signer or (processor.signer if processor is not None else None)
        salt = capture.salt if capture.salt is not None else (processor.salt if processor is not None else b"")
        logger_provider = capture.logger_provider
        if logger_provider is None and processor is not None:
            logger_provider = processor.logger_provider
        elif logger_provider is None and capture.signer is not None:
            logger_provider = get_logger_provider()
        return signer, logger_provider, salt
