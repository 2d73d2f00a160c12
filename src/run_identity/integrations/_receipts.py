"""Outputs and receipts of the client integrations: what an endpoint makes of a response, one receipt per run,
and its ``run_identity.receipt`` log record.

The :data:`BOARD` is shared by the client integrations and :mod:`run_identity.integrations.completion_hook`,
so that a run gets one receipt whichever of them signs it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace as trace_api
from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, TraceFlags

from run_identity.core.attributes import RECEIPT_EVENT_NAME, RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID
from run_identity.core.receipt import Receipt, attach_receipt
from run_identity.core.version import __version__

__all__ = [
    "ACTIVE",
    "BOARD",
    "SCOPE",
    "Accumulator",
    "Endpoint",
    "Output",
    "ReceiptBoard",
    "SpanKey",
    "emit_receipt",
    "set_response_attributes",
]

#: The instrumentation scope of the receipts the client integrations emit.
SCOPE = "run_identity.integrations"
#: Set while a captured call runs, so a patched method called by another one is not captured twice.
ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("run_identity_capture_active", default=False)

@dataclass
class Output:
    """A finished call's output in its canonical form (spec §10.4) and the response facts a receipt names."""

    messages: list[dict[str, Any]]
    response_model: str | None = None
    response_id: str | None = None
    system_fingerprint: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def finish_reasons(self) -> list[str]:
        return [m["finish_reason"] for m in self.messages if type(m.get("finish_reason")) is str]


class Accumulator(Protocol):
    """Builds the output of a stream from its events, in order."""

    def add(self, event: Any) -> None: ...

    def output(self) -> Output | None: ...


class Endpoint(Protocol):
    """One client method: how its request becomes a composition and its response an output."""

    operation: str

    def composition(self, instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]: ...

    def output(self, response: Any) -> Output | None: ...

    def accumulator(self) -> Accumulator: ...

    def streams(self, kwargs: dict[str, Any]) -> bool: ...


SpanKey = tuple[str, str]


class ReceiptBoard:
    """One receipt per run, whether a completion hook or a client integration makes it.

    Keyed by the run's span (trace id, span id in hex). Whoever is about to sign first claims the span;
    the other then only attaches the receipt made (``take``/``wait``). A receipt put for a span nobody waits
    for is kept for a while (bounded), for the integration that returns the response right after the hook ran.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._claimed: OrderedDict[SpanKey, None] = OrderedDict()
        self._receipts: OrderedDict[SpanKey, Receipt] = OrderedDict()
        self._waiting: OrderedDict[SpanKey, tuple[list[object], Callable[[Receipt], None] | None]] = OrderedDict()

    def _bound(self, table: OrderedDict[SpanKey, Any], size: int) -> None:
        while len(table) > size:
            table.popitem(last=False)

    def claim(self, key: SpanKey) -> bool:
        """True for the first caller only: that caller signs the run's receipt."""
        with self._lock:
            if key in self._claimed:
                return False
            self._claimed[key] = None
            self._bound(self._claimed, self._size * 4)
            return True

    def release(self, key: SpanKey) -> None:
        """Give up a claim (the receipt could not be made): another may sign the run."""
        with self._lock:
            self._claimed.pop(key, None)

    def put(self, key: SpanKey, receipt: Receipt) -> None:
        """The run's receipt is made: attach it to the objects waiting for it, or keep it for ``take`` when a
        captured call is under way in this context (its integration takes it when the call returns)."""
        with self._lock:
            waiting = self._waiting.pop(key, None)
            if waiting is None:
                if ACTIVE.get():
                    self._receipts[key] = receipt
                    self._bound(self._receipts, self._size)
                return
        carriers, then = waiting
        for obj in carriers:
            attach_receipt(obj, receipt)
        if then is not None:
            then(receipt)

    def take(self, key: SpanKey) -> Receipt | None:
        """The receipt made for the span, if any (taken off the board)."""
        with self._lock:
            return self._receipts.pop(key, None)

    def wait(
        self, key: SpanKey, carriers: Iterable[object], then: Callable[[Receipt], None] | None = None
    ) -> Receipt | None:
        """Attach the span's receipt to ``carriers`` (and call ``then``) now if it is made, else when it is."""
        objects = list(carriers)
        with self._lock:
            receipt = self._receipts.pop(key, None)
            if receipt is None:
                self._waiting[key] = (objects, then)
                self._bound(self._waiting, self._size)
                return None
        for obj in objects:
            attach_receipt(obj, receipt)
        if then is not None:
            then(receipt)
        return receipt


#: The board shared by the client integrations and :mod:`run_identity.integrations.completion_hook`.
BOARD = ReceiptBoard()


def emit_receipt(
    receipt: Receipt, provider: LoggerProvider, span: Span | None, with_output: bool, scope: str = SCOPE
) -> None:
    s = receipt.statement
    flags = TraceFlags(TraceFlags.DEFAULT)
    if span is not None and span.get_span_context().trace_flags.sampled:
        flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(int(s.trace_id, 16), int(s.span_id, 16), is_remote=False, trace_flags=flags)
    attributes = {RUN_IDENTITY_ID: s.identity, RUN_IDENTITY_KEY_ID: s.key_id}
    if s.request_model is not None:
        attributes["gen_ai.request.model"] = s.request_model
    if s.response_model is not None:
        attributes["gen_ai.response.model"] = s.response_model
    now = time.time_ns()
    provider.get_logger(scope, __version__).emit(
        timestamp=now,
        observed_timestamp=now,
        context=trace_api.set_span_in_context(NonRecordingSpan(context)),
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body=receipt.to_json_bytes(with_output=with_output).decode("utf-8"),
        attributes=attributes,
        event_name=RECEIPT_EVENT_NAME,
    )


def set_response_attributes(span: Span, output: Output) -> None:
    if output.response_model is not None:
        span.set_attribute("gen_ai.response.model", output.response_model)
    if output.response_id is not None:
        span.set_attribute("gen_ai.response.id", output.response_id)
    reasons = output.finish_reasons
    if reasons:
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
    if output.input_tokens is not None:
        span.set_attribute("gen_ai.usage.input_tokens", output.input_tokens)
    if output.output_tokens is not None:
        span.set_attribute("gen_ai.usage.output_tokens", output.output_tokens)
