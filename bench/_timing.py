"""Timing helpers shared by the benchmarks: best-of-N per-call cost, and the bare-span baseline."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider


def per_call(fn: Callable[[], object], *, repeat: int = 7, min_seconds: float = 0.2) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` rounds, each at least ``min_seconds`` long.

    The minimum is the figure least disturbed by other work on a shared machine.
    """
    fn()
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / 4:
            break
        loops *= 4
    loops = max(1, int(loops * (min_seconds / max(elapsed, 1e-9))))
    best = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            best = min(best, (time.perf_counter() - start) / loops)
    finally:
        if gc_was:
            gc.enable()
    return best


def bare_span_call() -> Callable[[], None]:
    """Start and end one span with 12 attributes on a plain SDK TracerProvider (the baseline)."""
    tracer = TracerProvider().get_tracer("bench.baseline")
    attributes = {f"bench.attr.{i}": (f"value-{i}" if i % 2 else i) for i in range(12)}

    def call() -> None:
        tracer.start_span("chat gpt-4o", attributes=attributes).end()

    return call


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:9.2f} µs"
