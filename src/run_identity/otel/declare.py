"""Declaring a composition for the next GenAI span started in the current context.

``declare(composition)`` puts a :class:`Declaration` in the OpenTelemetry context (a context variable, so it
follows sync code, ``asyncio`` tasks, and threads that carry the context, e.g. through
``contextvars.copy_context`` or the OTel threading instrumentation). The :class:`IdentitySpanProcessor`
looks it up in ``on_start`` and binds it to the first GenAI span it *applies to*: a span whose
``gen_ai.operation.name`` equals the composition's ``operation`` (and whose ``gen_ai.request.model``, when
the span has one, equals the composition's model name), or the span that
:func:`run_identity.start_genai_span` started for it. A declaration is claimed at most once, atomically, even
when several threads share the context; later GenAI spans in the same context are not covered.

Only the innermost active declaration is considered; an outer one is visible again once the inner block
ends. The composition is not validated here (that happens in ``on_start``, where failures are counted and
marked instead of raised), so declaring never raises into the application for bad content.

A declaration that no span claimed by the time its ``declare`` block exits (without an exception) is
reported to the identity processor(s) concerned: those that saw GenAI spans in the block that it did not
apply to (another operation or model: a typo such as ``"caht"``) or whose client integration captured a
call in the block, else the one on the global TracerProvider. Each counts it in
``coverage.declarations_unclaimed`` and logs it once per reason; a strict one raises
:class:`~run_identity.core.errors.UnclaimedDeclarationError` from the block's exit. The span must start inside
the block: a task that starts it after the block exited finds the declaration but it was reported already.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api

from run_identity.core.composition import Composition, PreparedComponent
from run_identity.core.errors import UnclaimedDeclarationError

__all__ = [
    "Declaration",
    "UnclaimedSink",
    "component_value",
    "context_with",
    "current_declaration",
    "declare",
    "report_unclaimed",
    "unclaimed_reason",
]

_KEY = context_api.create_key("run_identity.declaration")
_MAX_MISSES = 8
#: How many closed declarations current_declaration() looks through for an open one.
_MAX_OUTER = 64
_F = TypeVar("_F", bound=Callable[..., Any])


def component_value(composition: Composition | Mapping[str, Any], name: str) -> Any:
    """The JSON value of component ``name`` (prepared or not), None when absent or unreadable."""
    source = composition.components if isinstance(composition, Composition) else composition
    try:
        value = source.get(name)
    except Exception:  # a Mapping with a broken get: left for on_start to report
        return None
    return value.value if type(value) is PreparedComponent else value


class Declaration:
    """A composition waiting for the GenAI span it applies to; after the span started, its outcome.

    ``identity`` is the run's identity once bound, ``error`` the reason when it could not be identified,
    ``trace_id``/``span_id`` (hex) the span it was bound to.
    """

    __slots__ = (
        "_slot",
        "captured_by",
        "closed",
        "composition",
        "declared_ns",
        "error",
        "identity",
        "misses",
        "model",
        "operation",
        "outer",
        "provider",
        "seen_by",
        "span_id",
        "targeted",
        "trace_id",
    )

    def __init__(self, composition: Composition | Mapping[str, Any], *, targeted: bool = False) -> None:
        self.composition = composition
        self.declared_ns = time.time_ns()
        #: True when the span was started for this declaration by :func:`run_identity.start_genai_span`.
        self.targeted = targeted
        self._slot = [True]
        operation = component_value(composition, "operation")
        self.operation: str | None = operation if type(operation) is str else None
        model = component_value(composition, "model")
        name = model.get("name") if type(model) is dict else None
        provider = model.get("provider") if type(model) is dict else None
        self.model: str | None = name if type(name) is str else None
        self.provider: str | None = provider if type(provider) is str else None
        self.identity: str | None = None
        self.error: str | None = None
        self.trace_id: str | None = None
        self.span_id: str | None = None
        #: GenAI spans seen in the declaration's context that it did not apply to, as (operation, model) (at
        #: most _MAX_MISSES), and the identity processors that saw them: why it was not claimed, whom to tell.
        self.misses: list[tuple[object, object]] = []
        self.seen_by: list[object] = []
        #: The client integration that captured a call in this declaration's block (its own declaration,
        #: innermost, went to the call's span), if any.
        self.captured_by: str | None = None
        #: Set when the client call a client integration captured is over: a context that still holds it
        #: (an instrumentation that detaches its own context after the call, at a stream's end, makes the
        #: call's context current again) shows the declaration that was active around it instead (``outer``).
        #: A ``declare`` block's declaration is never closed: a context copied in the block keeps it.
        self.closed = False
        self.outer: Declaration | None = None

    def missed(self, processor: object, operation: object, model: object) -> None:
        """Note a GenAI span (with this operation and requested model) that this declaration did not apply to,
        seen by ``processor`` (None: a sampler dropped it)."""
        if len(self.misses) < _MAX_MISSES:
            self.misses.append((operation, model))
        self.seen(processor)

    def seen(self, processor: object) -> None:
        """Note an identity processor to tell when this declaration ends unclaimed."""
        if processor is not None and processor not in self.seen_by:
            self.seen_by.append(processor)

    def applies_to(self, operation: object, model: object) -> bool:
        """Whether a GenAI span with this operation name and requested model is the declared run."""
        if self.operation is not None and operation != self.operation:
            return False
        return model is None or self.model is None or model == self.model

    def claim(self) -> bool:
        """Take the declaration for one span; True for exactly one caller, across threads."""
        try:
            self._slot.pop()  # list.pop is atomic: only one caller gets the element
        except IndexError:
            return False
        return True

    @property
    def claimed(self) -> bool:
        """Whether a span has taken this declaration."""
        return not self._slot

    def __repr__(self) -> str:
        state = "claimed" if self.claimed else "pending"
        return f"Declaration({self.operation!r}, {self.model!r}, {state}, identity={self.identity!r})"


def current_declaration(context: context_api.Context | None = None) -> Declaration | None:
    """The innermost declaration active in ``context`` (default: the current context), claimed or not; a
    declaration whose block is over (``closed``) stands for the one that was active around it."""
    found = context_api.get_value(_KEY, context)
    for _ in range(_MAX_OUTER):
        if type(found) is not Declaration:
            return None
        if not found.closed:
            return found
        found = found.outer
    return None


def context_with(declaration: Declaration, context: context_api.Context | None = None) -> context_api.Context:
    """``context`` (default: current) with ``declaration`` as the active declaration (the one active in
    ``context`` before is its ``outer``)."""
    if declaration.outer is None:
        outer = current_declaration(context)
        if outer is not declaration:
            declaration.outer = outer
    return context_api.set_value(_KEY, declaration, context)


class declare:  # lower case: used like a function, ``with declare(c):`` and ``@declare(c)``
    """Declare ``composition`` (a :class:`Composition` or a plain dict) for the next GenAI span.

    As a context manager it yields the :class:`Declaration`, so the caller can read the identity it got.
    As a decorator it makes a fresh declaration for each call of the function (sync or ``async``). When the
    block exits normally and no span claimed the declaration, it is reported (see the module docstring);
    a strict processor raises :class:`~run_identity.core.errors.UnclaimedDeclarationError` there.
    """

    __slots__ = ("_composition", "_tokens")

    def __init__(self, composition: Composition | Mapping[str, Any]) -> None:
        self._composition = composition
        self._tokens: list[tuple[Declaration, object]] = []

    def __enter__(self) -> Declaration:
        declaration = Declaration(self._composition)
        token = context_api.attach(context_with(declaration))
        self._tokens.append((declaration, token))
        return declaration

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        declaration, token = self._tokens.pop()
        context_api.detach(token)  # type: ignore[arg-type]
        if exc_type is None and not declaration.claimed:
            report_unclaimed(declaration)

    def __call__(self, func: _F) -> _F:
        composition = self._composition
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with declare(composition):
                    return await func(*args, **kwargs)

            return cast(_F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with declare(composition):
                return func(*args, **kwargs)

        return cast(_F, wrapper)


class UnclaimedSink:
    """What is told of a declaration its ``declare`` block left unclaimed:
    :class:`~run_identity.otel.processor.IdentitySpanProcessor` is one (it counts and logs it, and raises
    :class:`~run_identity.core.errors.UnclaimedDeclarationError` when strict)."""

    def unclaimed(self, declaration: Declaration, reason: str) -> None:
        raise NotImplementedError


def _declared(declaration: Declaration) -> str:
    return f"operation {declaration.operation!r}, model {declaration.model!r}"


def unclaimed_reason(declaration: Declaration) -> str:
    """Why ``declaration`` was not claimed: a client integration captured the call (its own declaration went
    to the span), no GenAI span started, or those that did had another operation or model (named, so that a
    typo shows)."""
    if declaration.captured_by is not None:
        return (
            f"the {declaration.captured_by} client integration captured the call in the block, and its span took "
            f"the composition of the request as sent (declared {_declared(declaration)}; a hand declaration "
            "equal to the capture is integrations.<client>.composition_of(request, client))"
        )
    if not declaration.misses:
        return f"no GenAI span started in the block (declared {_declared(declaration)})"
    seen = []
    for operation, model in declaration.misses:
        text = f"operation {operation!r}, model {model!r}"
        if text not in seen:
            seen.append(text)
    return (
        "the GenAI spans started in the block had another operation or model than declared "
        f"(declared {_declared(declaration)}; started: {'; '.join(seen)})"
    )


def report_unclaimed(declaration: Declaration) -> None:
    """Report a declaration its ``declare`` block left unclaimed to the processors concerned: those that saw
    GenAI spans in the block that it did not apply to (or whose client integration captured a call in it),
    else the one on the global TracerProvider (if any).
    A strict processor raises :class:`UnclaimedDeclarationError`."""
    processors = [p for p in declaration.seen_by if isinstance(p, UnclaimedSink)]
    if not processors:
        active = getattr(trace_api.get_tracer_provider(), "_active_span_processor", None)
        processors = [p for p in getattr(active, "_span_processors", ()) if isinstance(p, UnclaimedSink)]
    reason = unclaimed_reason(declaration)
    error: UnclaimedDeclarationError | None = None
    for processor in processors:
        try:
            processor.unclaimed(declaration, reason)
        except UnclaimedDeclarationError as exc:  # every processor counts it before one raises
            error = error or exc
    if error is not None:
        raise error
