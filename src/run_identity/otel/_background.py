"""Signing off the application's thread: a worker that signs runs while their LLM calls are in flight.

The identity is computed on the application's thread in ``on_start`` (it must be derived from the
declaration before inference); the Ed25519 signature over the binding statement only binds that identity
to the span, so it can be made while the call runs. pyca/cryptography releases the GIL while it signs, so
on a machine with a second core the signature costs the application's thread nothing. The worker then
builds and emits the run's manifest (which needs the signature).

The signature reaches the span in the processor's ``_on_ending`` hook, which the SDK calls when the span
ends and before any ``on_end`` (so exporters see it). An LLM call lasts far longer than a signature, so the
hook normally finds the job done; when a span ends sooner, the hook waits for it. The SDK makes a span's
attributes read-only just before ``_on_ending`` (the specification says the span is still mutable then),
so :func:`attach` writes through the SDK's own locked setter; :func:`ending_attach_works` checks
once, on a throwaway provider, that this works with the installed SDK, and the processor signs inline when
it does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from _thread import allocate_lock as _allocate_lock
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider

__all__ = ["Job", "SigningWorker", "attach", "ending_attach_works", "replace_attributes"]

_LOG = logging.getLogger("run_identity")
_PROBE_KEY = "run_identity.probe"


def attach(span: Span, items: dict[str, str]) -> bool:
    """Set string attributes through the SDK's own locked setter (which works in ``_on_ending`` too, where
    the public setter refuses); False if it cannot.

    This skips the public setter's per-value cleaning (about 9k instructions an attribute), which strings
    do not need beyond what is done here: truncation to the configured attribute length limit. The
    attribute count limit applies as with the public setter.
    """
    try:
        attributes: Any = span._attributes  # private: see the module docstring
        limit = attributes.max_value_len
        with attributes._lock:
            for key, value in items.items():
                attributes._setitem_locked(key, value if limit is None else value[:limit])
    except Exception:
        return False
    return True


def replace_attributes(span: Span, remove: tuple[str, ...], items: dict[str, str]) -> bool:
    """Like :func:`attach`, first removing the attributes ``remove`` names (docs/spec.md §9.1: a span whose
    declaration lost its identity carries ``run_identity.error`` *instead of* the identity); False if it
    cannot."""
    try:
        attributes: Any = span._attributes  # private: see the module docstring
        limit = attributes.max_value_len
        with attributes._lock:
            for key in remove:
                attributes._dict.pop(key, None)
            for key, value in items.items():
                attributes._setitem_locked(key, value if limit is None else value[:limit])
    except Exception:
        return False
    return True


class _Probe(SpanProcessor):
    def __init__(self) -> None:
        self.attached = False

    def _on_ending(self, span: Span) -> None:
        self.attached = attach(span, {_PROBE_KEY: "1"})


_ENDING_ATTACH: bool | None = None


def ending_attach_works() -> bool:
    """Whether this SDK calls ``_on_ending`` and keeps an attribute :func:`attach` sets there."""
    global _ENDING_ATTACH
    if _ENDING_ATTACH is None:
        try:
            probe = _Probe()
            provider = TracerProvider(shutdown_on_exit=False)
            provider.add_span_processor(probe)
            span = provider.get_tracer("run_identity.probe").start_span("probe")
            span.end()
            attributes = getattr(span, "attributes", None) or {}
            _ENDING_ATTACH = probe.attached and attributes.get(_PROBE_KEY) == "1"
        except Exception:
            _ENDING_ATTACH = False
    return _ENDING_ATTACH


class Job:
    """One run to sign on the worker: ``run(job)`` does the work there; :meth:`wait` until it is over.

    Light on purpose (C locks, no Event or Condition): one is made for every declared span. A job run
    on the caller's thread (``run(job)`` directly) never gets a lock and is over when ``run`` returns.
    """

    __slots__ = ("_after", "_claim", "_done", "data", "error", "exception", "run", "signature")

    def __init__(self, run: Callable[[Job], None], data: Any = None) -> None:
        self.run = run
        self.data = data  # what ``run`` works on
        self._done: Any = None  # a held lock once queued; the worker releases it when the job is over
        self._claim: Any = None  # once queued: taken by whoever runs the ``when_done`` action
        self._after: Callable[[Job], None] | None = None
        self.signature: bytes | None = None  # set by ``run`` on success
        self.error: str | None = None  # the reason, set by ``run`` on failure
        self.exception: Exception | None = None  # what failed (signing or emitting), raised in strict mode

    def queued(self) -> Job:
        """Mark the job as handed to the worker (``wait`` now waits for it); returns the job."""
        self._claim = _allocate_lock()
        done = _allocate_lock()
        done.acquire()
        self._done = done
        return self

    def when_done(self, action: Callable[[Job], None]) -> None:
        """Run ``action(job)`` once, when the job is over: now if it is, else on the worker right after it.

        However often it is called, from whichever threads, the action runs at most once (the first one
        given wins): what the span processor uses to emit a manifest exactly once.
        """
        if self._after is None:
            self._after = action
        if self.wait(0):
            self._run_after()

    def _run_after(self) -> None:
        action = self._after
        claim = self._claim
        if action is None:
            return
        if claim is None or claim.acquire(False):
            action(self)

    def finish(self) -> None:
        if self._done is not None:
            self._done.release()
            if self._after is not None:
                try:
                    self._run_after()
                except Exception as exc:  # the action handles its own failures; this is a last guard
                    with contextlib.suppress(Exception):
                        _LOG.warning("run_identity: an action after a signing job failed: %s", exc)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the job is over, waiting at most ``timeout`` seconds (None: as long as it takes)."""
        done = self._done
        if done is None:
            return True
        if not done.acquire(timeout=-1 if timeout is None else timeout):
            return False
        done.release()
        return True


_TICK: Any = object()


class SigningWorker:
    """A daemon thread that runs :class:`Job` s in order; about ``capacity`` wait at most.

    ``submit`` returns False when the queue is full (the caller then signs inline, so nothing is dropped
    and memory stays bounded) or after ``shutdown``. Started on first use and again in a forked child.
    ``housekeeping``, when given, is called on the worker every ``interval`` seconds while it runs (busy
    or idle): the processor's timer for the manifests of spans that never end.
    """

    def __init__(
        self,
        capacity: int = 4096,
        *,
        housekeeping: Callable[[], None] | None = None,
        interval: float = 1.0,
    ) -> None:
        self._capacity = capacity
        self._housekeeping = housekeeping
        self._interval = interval
        self._lock = threading.Lock()
        self._reset()
        weak = weakref.WeakMethod(self._reset)
        os.register_at_fork(after_in_child=lambda: (method := weak()) is not None and method())

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job) -> bool:
        if self._closed or self._queue.qsize() >= self._capacity:
            return False
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._work, name="run_identity-signer", daemon=True)
                    thread.start()
                    self._thread = thread
        self._queue.put(job.queued())
        return True

    def _work(self) -> None:
        get = self._queue.get
        housekeeping, interval = self._housekeeping, self._interval
        next_tick = time.monotonic() + interval
        while True:
            if housekeeping is None:
                job = get()
            else:
                try:
                    job = get(timeout=max(next_tick - time.monotonic(), 0.001))
                except queue.Empty:
                    job = _TICK
                if time.monotonic() >= next_tick:
                    try:
                        housekeeping()
                    except Exception as exc:  # a last guard: the worker must go on signing
                        with contextlib.suppress(Exception):
                            _LOG.warning("run_identity: signing worker housekeeping failed: %s", exc)
                    next_tick = time.monotonic() + interval
                if job is _TICK:
                    continue
            if job is None:
                return
            try:
                job.run(job)
            except Exception as exc:  # run() handles its own failures; this is a last guard
                job.error = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception):
                    _LOG.warning("run_identity: signing job failed: %s", job.error)
            finally:
                job.finish()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every job submitted so far is over; False on timeout."""
        if self._thread is None:
            return True
        marker = Job(lambda job: None).queued()
        self._queue.put(marker)
        return marker.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Finish the queued jobs and stop the thread; later submits return False."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
