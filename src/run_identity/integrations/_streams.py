"""Observing streamed responses: every item passes through to the application and into the run's accumulator.

A streamed response is returned as the object the client (or the instrumentation) returned, of its own
class: its items are observed by replacing the stream's item iterator (its private ``_iterator``) with one
that passes every item through; a stream without one is logged once and returned untouched, without a
receipt. ``responses.stream(...)``'s manager is proxied: the capture starts when it is entered.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from run_identity.integrations._capture import Run
from run_identity.integrations._receipts import Accumulator, Endpoint

__all__ = ["MAX_CHAIN", "ManagerProxy", "innermost", "log_once", "observe_stream"]

_LOG = logging.getLogger("run_identity")
#: How many wrappers deep an instrumentation's proxies are followed.
MAX_CHAIN = 32
_logged: set[str] = set()
_logged_lock = threading.Lock()


def log_once(key: str, message: str, *args: object) -> None:
    """A warning logged once per ``key`` in this process."""
    with _logged_lock:
        if key in _logged or len(_logged) >= 256:
            return
        _logged.add(key)
    _LOG.warning(message, *args)


def _owns_items(obj: Any) -> bool:
    """Whether ``obj`` itself holds an item iterator (the client's stream), not a wrapper passing it through."""
    if "_iterator" in getattr(obj, "__dict__", {}):
        return True
    return any("_iterator" in vars(klass) for klass in type(obj).__mro__)


def innermost(obj: Any) -> Any:
    """The client's own stream under the wrappers an instrumentation put around it: wrapt proxies
    (``__wrapped__``), or wrappers that keep it as ``stream`` and pass attributes through (openai-v2)."""
    for _ in range(MAX_CHAIN):
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
    base = innermost(stream)
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
