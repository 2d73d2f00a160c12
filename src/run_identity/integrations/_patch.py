"""Patching client methods: the wrappers around ``create``/``stream``, and the observation of streams.

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
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from run_identity.integrations._capture import Accumulator, Capture, CaptureStats, Endpoint, Run
from run_identity.integrations._values import reusable

__all__ = ["Integration", "Target", "observe_stream", "patch", "unpatch"]

_LOG = logging.getLogger("run_identity")
_ORIGINAL = "_run_identity_original"
_MAX_CHAIN = 32
_logged: set[str] = set()
_logged_lock = threading.Lock()


def log_once(key: str, message: str, *args: object) -> None:
    """A warning logged once per ``key`` in this process."""
    with _logged_lock:
        if key in _logged or len(_logged) >= 256:
            return
        _logged.add(key)
    _LOG.warning(message, *args)


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
    for _ in range(_MAX_CHAIN):
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
        run.settle(response, (_innermost(response),) if run.stream else ())
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


def _owns_items(obj: Any) -> bool:
    """Whether ``obj`` itself holds an item iterator (the client's stream), not a wrapper passing it through."""
    if "_iterator" in getattr(obj, "__dict__", {}):
        return True
    return any("_iterator" in vars(klass) for klass in type(obj).__mro__)


def _innermost(obj: Any) -> Any:
    """The client's own stream under the wrappers an instrumentation put around it: wrapt proxies
    (``__wrapped__``), or wrappers that keep it as ``stream`` and pass attributes through (openai-v2)."""
    for _ in range(_MAX_CHAIN):
        inner = getattr(obj, "__wrapped__", None)
        if inner is None and not _owns_items(obj):
            inner = getattr(obj, "__dict__", {}).get("stream")
        if inner is None:
            return obj
        obj = inner
    return obj


class _Observer:
    """Adds a stream's items to the run's accumulator; a failure loses the receipt, never the stream."""

    __slots__ = ("_acc", "_carriers", "_run")

    def __init__(self, run: Run, accumulator: Accumulator, carriers: tuple[object, ...]) -> None:
        self._run = run
        self._acc: Accumulator | None = accumulator
        # Weakly: the stream holds this observer (through its iterator); a dropped stream must not be kept
        # alive by a reference cycle (anthropic's streams avoid cycles so that refcounting closes them).
        self._carriers = tuple(_weak(c) for c in carriers)

    def add(self, item: Any) -> None:
        acc = self._acc
        if acc is None:
            return
        try:
            acc.add(item)
        except Exception as exc:  # the stream goes on; only its receipt is lost
            self._acc = None
            capture = self._run._capture
            capture.count("receipt_failures")
            if capture.strict:
                raise
            capture.log_once(f"{type(exc).__name__}: {exc}", "a stream event could not be read")

    def end(self) -> None:
        acc = self._acc
        output = self._run._safe(acc.output) if acc is not None else None
        carriers = [obj for obj in (ref() for ref in self._carriers) if obj is not None]
        self._run.carriers.extend(carriers[1:])
        self._run.finish(output, carriers[0] if carriers else None)


def _weak(obj: object) -> Callable[[], object]:
    try:
        return weakref.ref(obj)
    except TypeError:  # not weak-referenceable: held strongly
        return lambda: obj


def _items(items: Iterator[Any], observer: _Observer, run: Run) -> Iterator[Any]:
    try:
        for item in items:
            observer.add(item)
            yield item
    except GeneratorExit:
        run.abandon()
        raise
    except BaseException as exc:
        run.fail(exc)
        raise
    observer.end()


async def _aitems(items: AsyncIterator[Any], observer: _Observer, run: Run) -> AsyncIterator[Any]:
    try:
        async for item in items:
            observer.add(item)
            yield item
    except GeneratorExit:
        run.abandon()
        raise
    except BaseException as exc:
        run.fail(exc)
        raise
    observer.end()


def _closing(base: Any, run: Run, *, is_async: bool) -> Callable[..., Any]:
    """``base.close`` that also ends the run (its span) when the stream is closed before its end. It reaches
    ``base`` through a weak reference: it is kept in ``base.__dict__`` and must not form a cycle with it."""
    close = base.close
    func = getattr(close, "__func__", None)
    if func is not None and getattr(close, "__self__", None) is base:
        ref = _weak(base)

        def call(*args: Any, **kwargs: Any) -> Any:
            obj = ref()
            return func(obj, *args, **kwargs) if obj is not None else None

    else:
        call = close
    if is_async:

        async def aclose(*args: Any, **kwargs: Any) -> Any:
            try:
                return await call(*args, **kwargs)
            finally:
                run.abandon()

        return aclose

    def close_(*args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        finally:
            run.abandon()

    return close_


def observe_stream(
    stream: Any, run: Run, accumulator: Accumulator, *, is_async: bool, carriers: tuple[object, ...] = ()
) -> Any:
    """Observe ``stream`` in place (see the module docstring) and return it: the run's receipt is made when
    it has been read to its end, and its span ends when it is closed before."""
    base = _innermost(stream)
    try:
        items = base._iterator  # the client's item iterator (made on first use by some versions)
        if not hasattr(items, "__anext__" if is_async else "__next__") or not callable(base.close):
            raise TypeError(f"{type(base).__name__}._iterator is not an iterator")
        closing = _closing(base, run, is_async=is_async)
        observer = _Observer(run, accumulator, (stream, *(() if base is stream else (base,)), *carriers))
        base._iterator = _aitems(items, observer, run) if is_async else _items(items, observer, run)
        base.close = closing
    except Exception as exc:
        capture = run._capture
        log_once(
            f"{capture.name}:stream:{type(base).__qualname__}",
            "run_identity %s: cannot observe a %s (%s): streams run unobserved, without receipts",
            capture.name,
            type(base).__qualname__,
            f"{type(exc).__name__}: {exc}",
        )
        capture.count("receipt_failures")
        run.abandon()
    return stream


class ManagerProxy:
    """A ``messages.stream(...)`` manager: captures when entered (the request is sent then).

    ``isinstance`` sees the client's manager class (``__class__`` answers for it); the stream it enters is the
    client's own, observed in place.
    """

    __slots__ = ("_endpoint", "_inner", "_run", "_start")

    def __init__(self, inner: Any, start: Callable[[], Run | None], endpoint: Endpoint) -> None:
        self._inner = inner
        self._start = start
        self._endpoint = endpoint
        self._run: Run | None = None

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _wrap(self, stream: Any, *, is_async: bool) -> Any:
        run = self._run
        if run is None:
            return stream
        if run.deferred:
            run.settle(stream)
            return stream
        # The helper stream reads its events from the raw stream; observing it builds the output whichever
        # way the application consumes the helper.
        raw = getattr(stream, "_raw_stream", None)
        if raw is None:
            capture = run._capture
            log_once(
                f"{capture.name}:raw:{type(stream).__qualname__}",
                "run_identity %s: a %s has no _raw_stream: streams run unobserved, without receipts",
                capture.name,
                type(stream).__qualname__,
            )
            capture.count("receipt_failures")
            run.abandon()
            return stream
        observe_stream(raw, run, self._endpoint.accumulator(), is_async=is_async, carriers=(stream,))
        return stream

    def __enter__(self) -> Any:
        run = self._run = self._start()
        if run is None:
            return self._inner.__enter__()
        run.enter()
        try:
            stream = self._inner.__enter__()
        except BaseException as exc:
            run.fail(exc)
            raise
        finally:
            run.exit()
        return self._wrap(stream, is_async=False)

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._inner.__exit__(*exc)
        finally:
            if self._run is not None:
                self._run.abandon()

    async def __aenter__(self) -> Any:
        run = self._run = self._start()
        if run is None:
            return await self._inner.__aenter__()
        run.enter()
        try:
            stream = await self._inner.__aenter__()
        except BaseException as exc:
            run.fail(exc)
            raise
        finally:
            run.exit()
        return self._wrap(stream, is_async=True)

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._inner.__aexit__(*exc)
        finally:
            if self._run is not None:
                self._run.abandon()
