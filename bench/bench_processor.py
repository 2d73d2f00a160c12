"""Issue 3 benchmark: cost of a declared GenAI span with IdentitySpanProcessor, as ratios to a bare span.

Everything is measured in this run, interleaved, best of 9 rounds. The baseline is a bare OpenTelemetry
SDK span (start + end, 12 attributes, no processor). Each case starts and ends a GenAI span with 12
attributes inside ``declare()`` on a TracerProvider with the identity processor. Three clocks are read
around the same loops:

* **app thread** (``time.thread_time``): the CPU the application's own thread spends. This is what the
  processor costs the application: on_start runs on its thread. The goals are typical <= 3x the bare span
  and typical (prepared) <= 2x. With background signing (the default), the Ed25519 signature and the
  manifest are made on the processor's signing worker, so they are not in this column;
* **all threads** (``time.process_time``): the CPU of the whole process, worker included; the price of
  the run identity in total, wherever it is paid;
* **wall** (``time.perf_counter``).

An LLM call (100 ms and more) outlasts its signature, so in an application ``end()`` finds it made. The
benchmark models that without sleeping (a thread that sleeps comes back to cold caches, which would be
measured instead): it starts 32 declared spans, waits for the worker (``force_flush``), then ends them,
and divides by 32; the undeclared spans the ``+`` figures subtract do the same. A span that ends right
after it starts makes ``end()`` wait for the worker every time, a thread hand-off (tens of µs here) that
applications do not pay; the last line of the table shows that case.

``+`` figures are what the processor adds: the declared span minus the same span undeclared. Manifests
are on (emitted through the Logs SDK to a no-op log processor, so exporting is not counted: it runs on
the exporter's thread). The same cases with ``background_signing=False`` (signature and manifest inline
in on_start) follow, and a breakdown of the app thread's part for typical and typical (prepared), by
ablation in the real path. Compositions: bench/compositions.py (small, typical, rag-large), and typical
with instructions and tools prepared once.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import bare_span_call, fmt_us
from compositions import rag_large, small, typical
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import TracerProvider

from run_identity import (
    Composition,
    Ed25519Signer,
    IdentitySpanProcessor,
    canonicalize,
    compute_identity,
    declare,
    prepare,
)

ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-2024-08-06",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.temperature": 0.7,
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.request.top_p": 0.9,
    "server.address": "api.openai.com",
    "server.port": 443,
    "bench.attr.8": "value-8",
    "bench.attr.9": 9,
    "bench.attr.10": "value-10",
    "bench.attr.11": 11,
}


class _NoOpLogProcessor(LogRecordProcessor):
    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _discard(_: object) -> None:
    return None


# Spans started before the first of them ends: the calls in flight at once. Each batch then waits for the
# signing worker (force_flush) and ends its spans, as LLM calls that outlast their signatures would.
IN_FLIGHT = 32


def _span_call(
    provider: TracerProvider, composition: Composition | dict[str, Any] | None, in_flight: int = IN_FLIGHT
) -> Callable[[], None]:
    """One call of the result starts and ends ``in_flight`` spans (declared when ``composition`` is given)."""
    tracer = provider.get_tracer("bench.processor")
    name = "chat gpt-4o-2024-08-06"
    flush = provider.force_flush

    def start() -> Any:
        if composition is None:
            return tracer.start_span(name, attributes=ATTRIBUTES)
        with declare(composition):
            return tracer.start_span(name, attributes=ATTRIBUTES)

    if in_flight == 1:
        return lambda: start().end()

    def batch() -> None:
        spans = [start() for _ in range(in_flight)]
        flush()
        for span in spans:
            span.end()

    return batch


def _provider(signer: Ed25519Signer, *, manifests: bool = True, background: bool = True) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    if manifests:
        logs = LoggerProvider(shutdown_on_exit=False)
        logs.add_log_record_processor(_NoOpLogProcessor())
        processor = IdentitySpanProcessor(signer, logger_provider=logs, strict=True, background_signing=background)
    else:
        processor = IdentitySpanProcessor(signer, emit_manifests=False, strict=True, background_signing=background)
    provider.add_span_processor(processor)
    return provider


_CLOCKS = (time.thread_time, time.process_time, time.perf_counter)


def _measure(
    calls: dict[str, Callable[[], None]], *, rounds: int = 9, seconds: float = 0.04
) -> dict[str, tuple[float, float, float]]:
    """Seconds per call of each callable on each of ``_CLOCKS``: the best of ``rounds`` interleaved rounds.

    Interleaving makes drifts of a shared machine hit every case alike; CPU clocks do not count waiting
    for a core.
    """
    loops: dict[str, int] = {}
    for name, fn in calls.items():
        fn()
        n = 1
        while True:
            start = time.thread_time()
            for _ in range(n):
                fn()
            if time.thread_time() - start >= seconds / 4:
                break
            n *= 2
        loops[name] = max(1, int(n * seconds / max(time.thread_time() - start, 1e-9)))
    best = {name: [float("inf")] * len(_CLOCKS) for name in calls}
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in calls.items():
                n = loops[name]
                before = [clock() for clock in _CLOCKS]
                for _ in range(n):
                    fn()
                after = [clock() for clock in _CLOCKS]
                for i in range(len(_CLOCKS)):
                    best[name][i] = min(best[name][i], (after[i] - before[i]) / n)
    finally:
        gc.enable()
    return {name: (b[0], b[1], b[2]) for name, b in best.items()}


def _cell(seconds: float, bare: float, width: int = 16) -> str:
    return f"{seconds * 1e6:.1f} µs {seconds / bare:.2f}x".rjust(width)


def main() -> int:
    signer = Ed25519Signer.generate()
    background, inline = _provider(signer), _provider(signer, background=False)
    prepared = typical()
    prepared["instructions"] = prepare("instructions", prepared["instructions"])
    prepared["tools"] = prepare("tools", prepared["tools"])
    cases = [
        ("small", small()),
        ("typical", typical()),
        ("rag-large", rag_large()),
        ("typical (prepared)", prepared),
    ]
    calls: dict[str, Callable[[], None]] = {
        "bare": bare_span_call(),
        "undeclared": _span_call(background, None),
        "undeclared, at once": _span_call(background, None, 1),
    }
    for name, composition in cases:
        calls[name] = _span_call(background, composition)
        calls[name + " inline"] = _span_call(inline, composition)
    calls["typical, at once"] = _span_call(background, cases[1][1], 1)
    for name, composition in cases[1:2] + cases[3:]:
        built = Composition.from_dict(composition)
        calls[f"{name}: prebuilt"] = _span_call(background, built)
        calls[f"{name}: identity alone"] = lambda built=built: _discard(compute_identity(built))
    t = _measure(calls)
    for name in calls:  # per span
        if name != "bare" and "at once" not in name and "alone" not in name:
            t[name] = (t[name][0] / IN_FLIGHT, t[name][1] / IN_FLIGHT, t[name][2] / IN_FLIGHT)
    bare, undeclared = t["bare"], t["undeclared"]
    print("CPU of the app thread, of all threads, and wall time per call; best of 9 interleaved rounds;")
    print("ratios to the bare span of this run (same clock)")
    print(f"bare OTel span (start+end, 12 attributes):        {fmt_us(bare[0])}  = 1.00x")
    ratio = undeclared[0] / bare[0]
    print(f"GenAI span, processor, no declaration (counted):  {fmt_us(undeclared[0])}  = {ratio:.2f}x")
    print()
    print(f"{'':<27}{'background signing (default)':^48}{'inline signing':^16}")
    print(f"{'composition':<20}{'KB':>7}{'app thread +':>16}{'all threads +':>16}{'wall +':>16}{'app thread +':>16}")
    for name, composition in cases:
        size = len(canonicalize({k: getattr(v, "value", v) for k, v in composition.items()})) / 1024
        row = f"{name:<20}{size:7.1f}"
        row += "".join(_cell(t[name][i] - undeclared[i], bare[i]) for i in range(3))
        row += _cell(t[name + " inline"][0] - undeclared[0], bare[0])
        print(row)
    at_once = t["typical, at once"]
    row = f"{'typical, at once':<27}"
    row += "".join(_cell(at_once[i] - t["undeclared, at once"][i], bare[i]) for i in range(3))
    print(row)
    print()
    print(f"+: what the processor adds to a GenAI span (declared minus undeclared; {IN_FLIGHT} spans in flight)")
    print("app thread: what the application's thread pays (on_start, and end() taking the signature)")
    print("all threads: the same plus the signing worker (Ed25519 signature, manifest JSON, Logs SDK)")
    print("at once: spans that end right after they start, so end() waits for the worker every time")
    print("goals (issue 3): typical app thread + <= 3x the bare span; typical (prepared) <= 2x")
    for name, _ in cases[1:2] + cases[3:]:
        validation = t[name][0] - t[f"{name}: prebuilt"][0]
        identity = t[f"{name}: identity alone"][0]
        rest = t[f"{name}: prebuilt"][0] - undeclared[0] - identity
        print()
        print(f"where the app thread's part goes, {name} (ablations in the real path):")
        print(f"  {'validation (dict -> Composition)':<52}{fmt_us(validation)} {validation / bare[0]:6.2f}x")
        label = "canonical bytes, digests, identity (timed alone)"
        print(f"  {label:<52}{fmt_us(identity)} {identity / bare[0]:6.2f}x")
        label = "statement, attributes, hand-off to the worker, end()"
        print(f"  {label:<52}{fmt_us(rest)} {rest / bare[0]:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
