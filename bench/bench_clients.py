"""Cost per LLM call of the whole client stack, counted by ``perf stat`` on the application's thread.

* A: a bare ``openai`` client whose transport answers in process (``httpx2.MockTransport``, a canned chat
  completion: no network, no server), one ``chat.completions.create`` per call;
* B: A + the official instrumentation (``opentelemetry-instrumentation-genai-openai``) with message content
  captured on the span, spans and logs exported through the SDK's batch processors (to exporters that drop
  them, on the batch worker threads);
* C: B + run identity with receipts: the identity processor (manifests to the batch log processor), the
  OpenAI client integration (the identity of the request, declared before the call) and the ``run_identity``
  completion hook (the signed receipt of each call, exported as a log record).

Reported per call (instructions and cycles of this process's main thread, as bench_instructions counts
them: (count of N calls - count of none) / N, the lower of two tries), and ``(C-B)/(B-A)``: what run
identity adds to a call, relative to what the observability it rides on already adds. For the small and
typical compositions of bench/compositions.py, sent as chat requests. Where ``perf`` cannot count (no
hardware counters, as in some VMs), it measures the CPU time of the main thread instead (best of 5 rounds),
and says so: those figures drift with the machine's load, the counts repeat to about 1%.

    python bench/bench_clients.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx2
import openai
from bench_instructions import _per_call
from compositions import small, typical
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from run_identity import Ed25519Signer, IdentitySpanProcessor
from run_identity.integrations import openai as ri_openai
from run_identity.integrations._openai_map import chat_body
from run_identity.integrations.completion_hook import RunIdentityCompletionHook

CANNED = {
    "id": "chatcmpl-bench-1",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_bench01",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Your refund of order 1234 was sent on May 2.",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 4200, "completion_tokens": 12, "total_tokens": 4212},
}


class _DropSpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _DropLogs(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _client() -> openai.OpenAI:
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=CANNED))
    return openai.OpenAI(
        api_key="sk-bench-not-a-key",
        base_url="http://llm.bench.invalid/v1",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def _request(doc: dict[str, Any]) -> dict[str, Any]:
    body = chat_body(doc)
    body.pop("top_k", None)  # not a Chat Completions argument
    return body


def _calls(client: openai.OpenAI, body: dict[str, Any]) -> Callable[[int], None]:
    create = client.chat.completions.create

    def run(n: int) -> None:
        for _ in range(n):
            create(**body)

    return run


def _cpu_per_call(run: Callable[[int], object], n: int) -> tuple[float, float]:
    """(nanoseconds of this thread's CPU time, the same) per call: the best of 5 rounds of ``n`` calls."""
    run(2)
    best = min(_thread_ns(run, n) for _ in range(5)) / n
    return best, best


def _thread_ns(run: Callable[[int], object], n: int) -> int:
    start = time.thread_time_ns()
    run(n)
    return time.thread_time_ns() - start


def _providers(identity: IdentitySpanProcessor | None) -> tuple[TracerProvider, LoggerProvider]:
    logs = LoggerProvider(shutdown_on_exit=False)
    logs.add_log_record_processor(BatchLogRecordProcessor(_DropLogs()))
    traces = TracerProvider(shutdown_on_exit=False)
    if identity is not None:
        identity_processor = IdentitySpanProcessor(identity.signer, logger_provider=logs)
        traces.add_span_processor(identity_processor)
    traces.add_span_processor(BatchSpanProcessor(_DropSpans()))
    return traces, logs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    n = parser.parse_args().calls
    measure: Callable[[Callable[[int], object], int], tuple[float, float] | None] = _per_call
    if shutil.which("perf") is None or _per_call(lambda k: None, 10) is None:
        print("perf cannot count instructions here: CPU time of the main thread instead (best of 5 rounds)")
        measure = _cpu_per_call
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    client = _client()
    signer = Ed25519Signer.generate()
    rows: list[tuple[str, tuple[float, float], tuple[float, float], tuple[float, float]]] = []
    for name, doc in (("small", small()), ("typical", typical())):
        body = _request(doc)
        bare = measure(_calls(client, body), n)
        if bare is None:
            return 0

        instrumentor = OpenAIInstrumentor()
        traces, logs = _providers(None)
        instrumentor.instrument(tracer_provider=traces, logger_provider=logs)
        observed = measure(_calls(client, body), n)
        instrumentor.uninstrument()

        hook = RunIdentityCompletionHook()
        traces, logs = _providers(IdentitySpanProcessor(signer))
        instrumentor.instrument(tracer_provider=traces, logger_provider=logs, completion_hook=hook)
        ri_openai.instrument(tracer_provider=traces)
        identified = measure(_calls(client, body), n)
        ri_openai.uninstrument()
        instrumentor.uninstrument()
        if hook.stats.receipts < n or ri_openai.stats().capture_failures:
            print(f"{name}: the receipts were not all made ({hook.stats}); the figures would not be the real path")
            return 1
        if observed is None or identified is None:
            return 0
        rows.append((name, bare, observed, identified))

    counted = measure is _per_call
    print("per call, this process's main thread (batch export runs on its worker threads)")
    if counted:
        print(f"{'composition':<12}{'case':<52}{'instructions':>14}{'cycles':>12}")
    else:
        print(f"{'composition':<12}{'case':<52}{'CPU time':>14}")
    for name, a, b, c in rows:
        for label, (i, cy) in (
            ("A bare openai client (in-process transport)", a),
            ("B + genai-openai, content on span, batch export", b),
            ("C = B + run identity (integration + hook receipts)", c),
        ):
            if counted:
                print(f"{name:<12}{label:<52}{i / 1000:13.0f}k{cy / 1000:11.0f}k")
            else:
                print(f"{name:<12}{label:<52}{i / 1000:11.0f} us")
        ratio = f"{(c[0] - b[0]) / (b[0] - a[0]):14.2f}"
        if counted:
            ratio += f"{(c[1] - b[1]) / (b[1] - a[1]):12.2f}"
        print(f"{name:<12}{'(C-B)/(B-A)':<52}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
