"""Patching client methods: the wrappers around ``create``/``stream``, and proxies for streamed responses.

Each patched class attribute is replaced by a plain function that keeps the attribute it replaced (an
instrumentation's wrapper or the library's method) and calls it through the descriptor protocol, so an
instrumentation that wrapped the method *before* ``instrument()`` runs inside the capture, and its span
takes the declaration. Patching is idempotent; unpatching restores the attribute when it is still ours.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from run_identity.integrations._capture import Accumulator, Capture, CaptureStats, Endpoint, Run
from run_identity.integrations._values import reusable

__all__ = ["Integration", "Target", "patch", "unpatch"]

_ORIGINAL = "_run_identity_original"
_MAX_CHAIN = 32


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


def _instrumented_below(original: object) -> bool:
    """Whether an OpenTelemetry instrumentation wraps ``original`` (and so starts the GenAI span itself)."""
    current: object = original
    for _ in range(_MAX_CHAIN):
        wrapper = getattr(current, "_self_wrapper", None)  # a wrapt FunctionWrapper
        if wrapper is not None and str(getattr(wrapper, "__module__", "")).startswith("opentelemetry.instrumentation"):
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False


def patch(target: Target, capture: Capture, own_span: bool | None) -> bool:
    """Patch one method; False when the module is not importable. Idempotent."""
    try:
        module = importlib.import_module(target.module)
    except ImportError:
        return False
    owner = getattr(module, target.owner)
    original = owner.__dict__[target.attribute]
    if getattr(original, _ORIGINAL, None) is not None:
        return True
    start_span = (not _instrumented_below(original)) if own_span is None else own_span
    make = _MAKERS[target.kind]
    replacement = make(original, capture, target.endpoint, start_span)
    functools.update_wrapper(replacement, getattr(original, "__wrapped__", original))
    setattr(replacement, _ORIGINAL, original)
    setattr(owner, target.attribute, replacement)
    return True


def unpatch(target: Target) -> None:
    """Restore the method when our wrapper is still the class attribute (otherwise it passes through)."""
    try:
        module = importlib.import_module(target.module)
    except ImportError:
        return
    owner = getattr(module, target.owner)
    current = owner.__dict__.get(target.attribute)
    original = getattr(current, _ORIGINAL, None)
    if original is not None:
        setattr(owner, target.attribute, original)


class Integration:
    """The life cycle shared by the client integrations: one active :class:`Capture` over their targets."""

    def __init__(self, name: str, targets: tuple[Target, ...]) -> None:
        self.name = name
        self.targets = targets
        self._capture: Capture | None = None

    def instrument(self, *, own_span: bool | None, **options: Any) -> bool:
        """Patch every target with a new Capture; False when the client library is missing. Idempotent."""
        if self._capture is not None and self._capture.enabled:
            return True
        capture = Capture(self.name, **options)
        if not any([patch(t, capture, own_span) for t in self.targets]):
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
    """What the wrapped call returns: a proxy that finishes the run when a stream is read to its end."""
    if run.stream and hasattr(response, "__aiter__" if is_async else "__iter__"):
        proxy = AsyncStreamProxy if is_async else StreamProxy
        return proxy(response, run, endpoint.accumulator())
    if run.stream:  # a raw-response wrapper of a stream: the application reads it, no receipt
        run.finish(None, response)
        return response
    run.returned(response)
    return response


def _sync(original: Any, capture: Capture, endpoint: Endpoint, own_span: bool) -> Callable[..., Any]:
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = capture.start(endpoint, self, kwargs, own_span=own_span)
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


def _async(original: Any, capture: Capture, endpoint: Endpoint, own_span: bool) -> Callable[..., Any]:
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = capture.start(endpoint, self, kwargs, own_span=own_span)
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


def _manager(original: Any, capture: Capture, endpoint: Endpoint, own_span: bool) -> Callable[..., Any]:
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        reusable(kwargs, ("messages", "tools", "input"))  # read at enter time, after the library has
        manager = _bind(original, self)(*args, **kwargs)
        return ManagerProxy(manager, lambda: capture.start(endpoint, self, kwargs, own_span=own_span), endpoint)

    return stream


_MAKERS: dict[str, Callable[..., Callable[..., Any]]] = {
    "sync": _sync,
    "async": _async,
    "manager": _manager,
    "async_manager": _manager,
}


class _Proxy:
    """Attribute access falls through to the wrapped object."""

    __slots__ = ("__weakref__", "_acc", "_inner", "_it", "_run")

    def __init__(self, inner: Any, run: Run, accumulator: Accumulator) -> None:
        self._inner = inner
        self._run = run
        self._acc: Accumulator | None = accumulator
        self._it: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _add(self, event: Any) -> None:
        acc = self._acc
        if acc is None:
            return
        try:
            acc.add(event)
        except Exception as exc:  # the stream goes on; only its receipt is lost
            self._acc = None
            self._run._capture.count("receipt_failures")
            if self._run._capture.strict:
                raise
            self._run._capture.log_once(f"{type(exc).__name__}: {exc}", "a stream event could not be read")

    def _end(self) -> None:
        acc = self._acc
        output = self._run._safe(acc.output) if acc is not None else None
        self._run.finish(output, self)


class StreamProxy(_Proxy):
    """A streamed response that builds the run's output as it is read, and its receipt at the end."""

    __slots__ = ()

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = iter(self._inner)
        try:
            event = next(self._it)
        except StopIteration:
            self._end()
            raise
        except BaseException as exc:
            self._run.fail(exc)
            raise
        self._add(event)
        return event

    def __enter__(self) -> StreamProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._run.abandon()


class AsyncStreamProxy(_Proxy):
    """The asynchronous :class:`StreamProxy`."""

    __slots__ = ()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = self._inner.__aiter__()
        try:
            event = await self._it.__anext__()
        except StopAsyncIteration:
            self._end()
            raise
        except BaseException as exc:
            self._run.fail(exc)
            raise
        self._add(event)
        return event

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._inner.close()
        finally:
            self._run.abandon()


class ManagerProxy:
    """A ``messages.stream(...)`` manager: captures when entered (the request is sent then)."""

    __slots__ = ("_endpoint", "_inner", "_run", "_start")

    def __init__(self, inner: Any, start: Callable[[], Run | None], endpoint: Endpoint) -> None:
        self._inner = inner
        self._start = start
        self._endpoint = endpoint
        self._run: Run | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _wrap(self, stream: Any, proxy: type[_Proxy]) -> Any:
        run = self._run
        if run is not None:
            # The helper stream reads its events from ``_raw_stream``; reading them through the proxy
            # builds the output whichever way the application consumes the helper.
            stream._raw_stream = proxy(stream._raw_stream, run, self._endpoint.accumulator())
            run.carriers.append(stream)
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
        return self._wrap(stream, StreamProxy)

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
        return self._wrap(stream, AsyncStreamProxy)

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._inner.__aexit__(*exc)
        finally:
            if self._run is not None:
                self._run.abandon()
