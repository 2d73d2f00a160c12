"""Timing helpers shared by the benchmarks: interleaved best-of-N per-call cost, and the bare-span baseline."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider


def interleaved(
    calls: dict[str, Callable[[], object]],
    *,
    clocks: tuple[Callable[[], float], ...] = (time.thread_time,),
    rounds: int = 9,
    seconds: float = 0.04,
) -> dict[str, tuple[float, ...]]:
    """Seconds per call of each callable on each clock: the best of ``rounds`` rounds, interleaved.

    Interleaving makes the drifts of a shared machine hit every case alike, and CPU clocks (the default is
    the calling thread's) do not count waiting for a core, so ratios between cases measured together hold.
    """
    loops: dict[str, int] = {}
    for name, fn in calls.items():
        fn()
        n = 1
        while True:
            start = time.thread_time()
            for _ in range(n):
                fn()
            elapsed = time.thread_time() - start
            if elapsed >= seconds / 4:
                break
            n *= 2
        loops[name] = max(1, int(n * seconds / max(elapsed, 1e-9)))
    best = {name: [float("inf")] * len(clocks) for name in calls}
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in calls.items():
                n = loops[name]
                before = [clock() for clock in clocks]
                for _ in range(n):
                    fn()
                after = [clock() for clock in clocks]
                for i in range(len(clocks)):
                    best[name][i] = min(best[name][i], (after[i] - before[i]) / n)
    finally:
        if gc_was:
            gc.enable()
    return {name: tuple(b) for name, b in best.items()}


def bare_span_call() -> Callable[[], None]:
    """Start and end one span with 12 attributes on a plain SDK TracerProvider (the baseline)."""
    tracer = TracerProvider().get_tracer("bench.baseline")
    attributes = {f"bench.attr.{i}": (f"value-{i}" if i % 2 else i) for i in range(12)}

    def call() -> None:
        tracer.start_span("chat gpt-4o", attributes=attributes).end()

    return call


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:9.2f} µs"
