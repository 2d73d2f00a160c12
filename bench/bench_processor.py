"""Issue 3 benchmark: cost of a declared GenAI span with IdentitySpanProcessor, as ratios to a bare span.

Everything is measured in this run, interleaved, best of 9 rounds; the baseline is a bare OpenTelemetry
SDK span (start + end, 12 attributes, no processor) on the same clock. Each case starts and ends a GenAI
span with 12 attributes inside ``declare()`` on a TracerProvider with the identity processor; ``+``
figures are what the processor adds (the declared span minus the same span undeclared).

* ``on_start +``: the default for a key file, signing inline, manifests off, in CPU time of the
  application's thread (``time.thread_time``). The goals are typical <= 3x the bare span and typical
  (prepared) <= 2x.
* ``manifest +``: what emitting the manifest adds (building its JSON and handing it to the Logs SDK, whose
  no-op log processor leaves exporting out: that runs on the exporter's thread).
* ``background``: the same span with ``background_signing=True`` (the default for HSM/KMS signers), in
  CPU time of the application's thread and of all threads (``time.process_time``, the signing worker
  included), manifests off. An LLM call outlasts its signature, so in an application ``end()`` finds it
  made; the benchmark models that without sleeping (a thread that sleeps comes back to cold caches): it
  starts 32 declared spans, waits for the worker (``force_flush``), ends them, and divides by 32, and the
  undeclared spans it subtracts do the same.

A breakdown of ``on_start +`` follows for typical and typical (prepared), by ablation in the real path.
Compositions: bench/compositions.py (small, typical, rag-large), and typical with instructions and tools
prepared once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import bare_span_call, fmt_us, interleaved
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


class _NullSigner:
    """Signs nothing (a fixed 64 bytes): the same span path without the Ed25519 signature."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id

    def sign(self, data: bytes) -> bytes:
        return bytes(64)


def _null_provider(signer: Ed25519Signer) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    null = _NullSigner(signer.key_id)
    provider.add_span_processor(IdentitySpanProcessor(null, emit_manifests=False, background_signing=False))
    return provider


def _provider(signer: Ed25519Signer, *, manifests: bool = True, background: bool = False) -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    if manifests:
        logs = LoggerProvider(shutdown_on_exit=False)
        logs.add_log_record_processor(_NoOpLogProcessor())
        processor = IdentitySpanProcessor(signer, logger_provider=logs, strict=True, background_signing=background)
    else:
        processor = IdentitySpanProcessor(signer, emit_manifests=False, strict=True, background_signing=background)
    provider.add_span_processor(processor)
    return provider


def _cell(seconds: float, bare: float, width: int = 18) -> str:
    return f"{seconds * 1e6:.1f} µs {seconds / bare:.2f}x".rjust(width)


def main() -> int:
    signer = Ed25519Signer.generate()
    inline, with_manifests = _provider(signer, manifests=False), _provider(signer)
    background = _provider(signer, manifests=False, background=True)
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
        "undeclared": _span_call(inline, None, 1),
        "undeclared, batch": _span_call(background, None),
    }
    for name, composition in cases:
        calls[name] = _span_call(inline, composition, 1)
        calls[name + " +manifest"] = _span_call(with_manifests, composition, 1)
        calls[name + " background"] = _span_call(background, composition)
    for name, composition in cases[1:2] + cases[3:]:
        built = Composition.from_dict(composition)
        calls[f"{name}: prebuilt"] = _span_call(inline, built, 1)
        calls[f"{name}: prebuilt, no signature"] = _span_call(_null_provider(signer), built, 1)
        calls[f"{name}: identity alone"] = lambda built=built: _discard(compute_identity(built))
    t = interleaved(calls, clocks=(time.thread_time, time.process_time, time.perf_counter))
    for name in calls:  # batches of IN_FLIGHT spans -> per span
        if "background" in name or "batch" in name:
            t[name] = (t[name][0] / IN_FLIGHT, t[name][1] / IN_FLIGHT, t[name][2] / IN_FLIGHT)
    bare, undeclared, batch = t["bare"], t["undeclared"], t["undeclared, batch"]
    print("CPU time per call, best of 9 interleaved rounds; ratios to the bare span of this run (same clock)")
    print(f"bare OTel span (start+end, 12 attributes):        {fmt_us(bare[0])}  = 1.00x")
    ratio = undeclared[0] / bare[0]
    print(f"GenAI span, processor, no declaration (counted):  {fmt_us(undeclared[0])}  = {ratio:.2f}x")
    print()
    print(f"{'':<27}{'signing inline (default)':^36}{'background signing':^36}")
    print(f"{'composition':<20}{'KB':>7}{'on_start +':>18}{'manifest +':>18}{'app thread +':>18}{'all threads +':>18}")
    for name, composition in cases:
        size = len(canonicalize({k: getattr(v, "value", v) for k, v in composition.items()})) / 1024
        row = f"{name:<20}{size:7.1f}" + _cell(t[name][0] - undeclared[0], bare[0])
        row += _cell(t[name + " +manifest"][0] - t[name][0], bare[0])
        row += "".join(_cell(t[name + " background"][i] - batch[i], bare[i]) for i in (0, 1))
        print(row)
    print()
    print("+: what the processor adds to the GenAI span (declared minus undeclared)")
    print("on_start +: signing inline, manifests off, CPU of the application's thread")
    print("manifest +: building the manifest JSON and emitting it through the Logs SDK (no-op log processor)")
    print("background: signing on the worker, manifests off; CPU of the app thread, and of all threads")
    print("goals (issue 3): typical on_start + <= 3x the bare span; typical (prepared) <= 2x")
    for name, _ in cases[1:2] + cases[3:]:
        validation = t[name][0] - t[f"{name}: prebuilt"][0]
        signature = t[f"{name}: prebuilt"][0] - t[f"{name}: prebuilt, no signature"][0]
        identity = t[f"{name}: identity alone"][0]
        rest = t[f"{name}: prebuilt, no signature"][0] - undeclared[0] - identity
        print()
        print(f"where on_start + goes, {name} (ablations in the real path):")
        for label, value in (
            ("validation (dict -> Composition)", validation),
            ("Ed25519 signature", signature),
            ("canonical bytes, digests, identity (timed alone)", identity),
            ("statement, attributes, declaration look-up", rest),
        ):
            print(f"  {label:<52}{fmt_us(value)} {value / bare[0]:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
