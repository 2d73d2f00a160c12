"""Patching client methods: the wrappers around ``create``/``stream`` (streams are observed by ``_streams``).

Each patched class attribute is replaced by a plain function that keeps the attribute it replaced (an
instrumentation's wrapper or the library's method) and calls it through the descriptor protocol, so an
instrumentation that wrapped the method *before* ``instrument()`` runs inside the capture, and its span
takes the declaration. Patching is idempotent; unpatching restores the attribute when it is still ours.

Patching never breaks the application: a method that cannot be found where it is expected (a class that
moved, a renamed attribute) is logged once and that method runs unpatched. A streamed response is returned
as the object the client (or the instrumentation) returned, of its own class: its items are observed by
replacing the stream's item iterator (its private ``_iterator``) with one that passes every item through;
a stream without one is logged once and returned untouched, without a receipt.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from run_identity.integrations._capture import Capture, CaptureStats, Run
from run_identity.integrations._receipts import Endpoint
from run_identity.integrations._streams import MAX_CHAIN, ManagerProxy, innermost, log_once, observe_stream
from run_identity.integrations._values import reusable

__all__ = ["Integration", "Target", "patch", "unpatch"]

_LOG = logging.getLogger("run_identity")
_ORIGINAL = "_run_identity_original"
@dataclass(frozen=True)
class Target:
    """A client method to patch: ``module``, ``owner`` class name, ``attribute``, its kind and endpoint.

    ``kind`` is ``sync`` or ``async`` (a ``create`` method), ``manager`` or ``async_manager`` (a ``stream``
    method returning a context manager whose ``__enter__`` sends the request).
    """

    module: str
    owner: str
    attribute: str
    kind: str
    endpoint: Endpoint

    @property
    def name(self) -> str:
        return f"{self.module}.{self.owner}.{self.attribute}"


def instrumented_below(original: object) -> Any:
    """The wrapper function of the OpenTelemetry instrumentation wrapping ``original`` (it starts the GenAI
    span), if any."""
    current: object = original
    for _ in range(MAX_CHAIN):
        wrapper = getattr(current, "_self_wrapper", None)  # a wrapt FunctionWrapper
        if wrapper is not None and str(getattr(wrapper, "__module__", "")).startswith("opentelemetry.instrumentation"):
            return wrapper
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return None
    return None


def calls_our_hook(wrapper: Any, depth: int = 0) -> bool:
    """Whether an instrumentation's wrapper calls the run_identity completion hook.

    An instrumentation built on opentelemetry-util-genai keeps its ``TelemetryHandler`` in the closure of the
    wrapper it installs; the handler holds the completion hook (wrapped in util-genai's ``_SafeCompletionHook``).
    """
    try:
        cells = getattr(wrapper, "__closure__", None) or ()
        for cell in cells:
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            hook = getattr(value, "_completion_hook", None)
            if hook is not None:
                hook = getattr(hook, "_wrapped", hook)
                if getattr(hook, "run_identity_hook", False) is True:
                    return True
            elif callable(value) and depth < 3 and calls_our_hook(value, depth + 1):
                return True
    except Exception:  # whatever the closure holds, the answer is then no
        return False
    return False


def _library_missing(module: str) -> bool:
    try:
        importlib.import_module(module.partition(".")[0])
    except ImportError:
        return True
    return False


def patch(target: Target, capture: Capture, own_span: bool | None) -> bool | None:
    """Patch one method: True when patched (or already), None when the client library is not installed,
    False when the method is not where it is expected (logged once; it runs unpatched). Idempotent."""
    try:
        module = importlib.import_module(target.module)
    except ImportError as exc:
        if _library_missing(target.module):
            return None
        log_once(
            target.name,
            "run_identity %s: cannot patch %s (%s): those calls run unpatched",
            capture.name,
            target.name,
            f"{type(exc).__name__}: {exc}",
        )
        return False
    try:
        owner = getattr(module, target.owner)
        original = vars(owner)[target.attribute]
        if getattr(original, _ORIGINAL, None) is not None:
            return True
        if not callable(original):
            raise TypeError(f"{target.attribute} is a {type(original).__name__}, not a method")
        below = instrumented_below(original)
        start_span = below is None if own_span is None else own_span
        make = _MAKERS[target.kind]
        replacement = make(original, capture, target.endpoint, start_span, below is not None and calls_our_hook(below))
        functools.update_wrapper(replacement, getattr(original, "__wrapped__", original))
        setattr(replacement, _ORIGINAL, original)
        setattr(owner, target.attribute, replacement)
    except Exception as exc:  # a moved class, a renamed method, a class that refuses attributes
        log_once(
            target.name,
            "run_identity %s: cannot patch %s (%s): those calls run unpatched",
            capture.name,
            target.name,
            f"{type(exc).__name__}: {exc}",
        )
        return False
    return True


def unpatch(target: Target) -> None:
    """Restore the method when our wrapper is still the class attribute (otherwise it passes through)."""
    try:
        owner = getattr(importlib.import_module(target.module), target.owner)
        current = vars(owner).get(target.attribute)
    except Exception:  # nothing of ours can be there
        return
    original = getattr(current, _ORIGINAL, None)
    if original is not None:
        setattr(owner, target.attribute, original)


class Integration:
    """The life cycle shared by the client integrations: one active :class:`Capture` over their targets."""

    def __init__(self, name: str, targets: tuple[Target, ...]) -> None:
        self.name = name
        self.targets = targets
        self._capture: Capture | None = None
        #: Set by a failed :meth:`instrument`: the library is missing, or none of its methods could be patched.
        self.missing = False

    def instrument(self, *, own_span: bool | None, **options: Any) -> bool:
        """Patch every target with a new Capture; False when the client library is missing. Idempotent."""
        if self._capture is not None and self._capture.enabled:
            return True
        capture = Capture(self.name, **options)
        capture.auto_span = own_span is None
        if not any([patch(t, capture, own_span) for t in self.targets]):
            self.missing = True
            return False
        if self._capture is not None:
            self._capture.enabled = False
        self._capture = capture
        return True

    def uninstrument(self) -> None:
        """Stop capturing and restore the methods (a wrapper another library put over ours passes through)."""
        if self._capture is not None:
            self._capture.enabled = False
        for target in self.targets:
            unpatch(target)
        self._capture = None

    def is_instrumented(self) -> bool:
        return self._capture is not None and self._capture.enabled

    def stats(self) -> CaptureStats:
        return self._capture.stats if self._capture is not None else CaptureStats()


def _bind(original: Any, instance: Any) -> Any:
    return original.__get__(instance, type(instance))


def _answer(run: Run, response: Any, endpoint: Endpoint, *, is_async: bool) -> Any:
    """What the wrapped call returns: the response itself; a stream is observed until its end."""
    if run.deferred:  # the instrumentation's completion hook makes the receipt
        run.settle(response, (innermost(response),) if run.stream else ())
        return response
    if run.stream and hasattr(response, "__aiter__" if is_async else "__iter__"):
        return observe_stream(response, run, endpoint.accumulator(), is_async=is_async)
    if run.stream:  # a raw-response wrapper of a stream: the application reads it, no receipt
        run.finish(None, response)
        return response
    run.returned(response)
    return response


def _sync(original: Any, capture: Capture, endpoint: Endpoint, own_span: bool, hooked: bool) -> Callable[..., Any]:
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = capture.start(endpoint, self, kwargs, own_span=own_span, hooked=hooked)
        if run is None:
            return _bind(original, self)(*args, **kwargs)
        run.enter()
        try:
            response = _bind(original, self)(*args, **kwargs)
        except BaseException as exc:
            run.fail(exc)
            raise
        finally:
            run.exit()
        return _answer(run, response, endpoint, is_async=False)

    return create


def _async(original: Any, capture: Capture, endpoint: Endpoint, own_span: bool, hooked: bool) -> Callable[..., Any]:
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = capture.start(endpoint, self, kwargs, own_span=own_span, hooked=hooked)
        if run is None:
            return await _bind(original, self)(*args, **kwargs)
        run.enter()
        try:
            response = await _bind(original, self)(*args, **kwargs)
        except BaseException as exc:
            run.fail(exc)
            raise
        finally:
            run.exit()
        return _answer(run, response, endpoint, is_async=True)

    return create


def _manager(original: Any, capture: Capture, endpoint: Endpoint, own_span: bool, hooked: bool) -> Callable[..., Any]:
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        reusable(kwargs, ("messages", "tools", "input"))  # read at enter time, after the library has
        manager = _bind(original, self)(*args, **kwargs)
        return ManagerProxy(
            manager, lambda: capture.start(endpoint, self, kwargs, own_span=own_span, hooked=hooked), endpoint
        )

    return stream


_MAKERS: dict[str, Callable[..., Callable[..., Any]]] = {
    "sync": _sync,
    "async": _async,
    "manager": _manager,
    "async_manager": _manager,
}
