"""Example app for the collector pipeline: a dozen declared LLM runs exported over OTLP to a collector.

It sets up the OpenTelemetry SDK with the identity processor (``run_identity.setup``), declares each run's
composition (chat, tools with calls and responses, retrieved documents, an anthropic run) and starts the run's
GenAI span with ``run_identity.start_genai_span``; spans and manifests leave through OTLP exporters to a
collector (rotel or otelcol-contrib). No model is called: the span ends as if the model had answered.

    python examples/collector_pipeline/app.py --key keys/signing-key.pem --endpoint http://127.0.0.1:4318

``--spool DIR`` wraps the exporters so that batches the collector does not take are kept in DIR and sent
again at the next start (see run_identity.pipeline.spool). Exit code 0 when every run was declared and exported (or
spooled), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace.export import SpanExporter

import run_identity

# Synthetic runs written by hand (docs/spec.md §2); a real OpenAI or Anthropic call is declared with
# run_identity.integrations.<client>.composition_of(request, client) (Annex A), as the capture has it.
MODEL = {"provider": "openai", "name": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"}
CLAUDE = {"provider": "anthropic", "name": "claude-sonnet-4-5", "endpoint": "https://api.anthropic.com"}
INSTRUCTIONS = [{"type": "text", "content": "You are the assistant of Tagus Bikes. Answer in two sentences."}]
ORDERS_TOOL = {
    "type": "function",
    "name": "search_orders",
    "description": "Find a customer's orders by e-mail or order number.",
    "parameters": {
        "type": "object",
        "properties": {"email": {"type": "string"}, "order_number": {"type": "string"}},
        "additionalProperties": False,
    },
}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
DOCS = [
    {"id": "kb-101", "uri": "https://kb.example/warranty", "content": "Frames carry a 10-year warranty."},
    {"id": "kb-204", "uri": "https://kb.example/returns", "content": "Returns are accepted within 30 days."},
    {
        "id": "kb-317",
        "uri": "https://kb.example/service",
        "content": "The first service is free.",
        "score": 0.4,
    },
]


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "content": text}]}


def compositions() -> list[dict[str, Any]]:
    """The twelve runs: plain chat, tool use, retrieval, and a run on another provider."""
    chat = {"model": MODEL, "operation": "chat", "instructions": INSTRUCTIONS}
    tool_call = {
        "role": "assistant",
        "parts": [
            {
                "type": "tool_call",
                "id": "call_1",
                "name": "search_orders",
                "arguments": {"order_number": "TB-104233"},
            }
        ],
    }
    tool_response = {
        "role": "tool",
        "parts": [
            {"type": "tool_call_response", "id": "call_1", "response": {"status": "shipped", "eta": "2 days"}}
        ],
    }
    return [
        {**chat, "messages": [_user("Hello! Do you sell gravel bikes?")], "parameters": {"temperature": 0.2}},
        {
            **chat,
            "messages": [_user("What sizes does the Tejo 2 come in?")],
            "parameters": {"temperature": 0.7},
        },
        {
            **chat,
            "messages": [_user("Where is my order TB-104233?")],
            "tools": [ORDERS_TOOL, WEATHER_TOOL],
            "parameters": {"temperature": 0.0, "max_tokens": 200},
        },
        {
            **chat,
            "messages": [_user("Where is my order TB-104233?"), tool_call, tool_response],
            "tools": [ORDERS_TOOL, WEATHER_TOOL],
            "parameters": {"temperature": 0.0, "max_tokens": 200},
        },
        {
            **chat,
            "messages": [_user("Is it dry enough to ride in Lisbon today?")],
            "tools": [WEATHER_TOOL],
            "parameters": {"temperature": 0.3, "seed": 42},
        },
        {
            **chat,
            "messages": [_user("How long is the frame warranty?")],
            "context": DOCS[:1],
            "parameters": {"temperature": 0.1, "top_p": 0.9},
        },
        {
            **chat,
            "messages": [_user("Can I still return a bike I bought three weeks ago?")],
            "context": DOCS,
            "parameters": {"temperature": 0.1},
        },
        {
            **chat,
            "messages": [_user("Is the first service free?")],
            "context": DOCS[2:],
            "tools": [ORDERS_TOOL],
            "parameters": {"temperature": 0.1, "stop_sequences": ["\n\n"]},
        },
        {
            "model": CLAUDE,
            "operation": "chat",
            "instructions": INSTRUCTIONS,
            "messages": [_user("Summarize our return policy.")],
            "context": DOCS[1:2],
            "parameters": {"max_tokens": 120},
        },
        {**chat, "messages": [_user("Suggest a name for a cargo bike.")], "parameters": {"temperature": 1.0}},
        {**chat, "messages": [_user("Suggest a name for a cargo bike.")], "parameters": {"temperature": 1.2}},
        {
            **chat,
            "messages": [_user("Translate 'bicycle' to Portuguese.")],
            "extensions": {"response_format": {"type": "text"}, "user": "customer-881"},
        },
    ]


def make_runs(
    signer: run_identity.Signer,
    span_exporter: SpanExporter,
    manifest_exporter: LogRecordExporter,
    *,
    count: int | None = None,
) -> int:
    """Declare and export the runs (all, or the first ``count``); returns how many were declared."""
    identity = run_identity.setup(
        signer, span_exporters=[span_exporter], manifest_exporters=[manifest_exporter], set_global=False
    )
    runs = compositions()[:count] if count is not None else compositions()
    try:
        for composition in runs:
            with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider) as span:
                span.set_attribute("gen_ai.response.finish_reasons", ["stop"])
    finally:
        identity.shutdown()
    coverage = identity.processor.coverage
    if coverage.identified != len(runs):
        print(f"only {coverage.identified} of {len(runs)} runs were identified: {coverage}", file=sys.stderr)
    return len(runs)


def exporters(endpoint: str, *, protocol: str, spool: str | None, timeout: float) -> tuple[Any, Any]:
    """OTLP span and log exporters to ``endpoint`` (HTTP base URL, or host:port for gRPC)."""
    if spool is not None:
        from run_identity.pipeline.spool import spooling_otlp_exporters

        return spooling_otlp_exporters(endpoint, spool, timeout=timeout, cooldown=timeout)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint, insecure=True, timeout=timeout), GrpcLogs(
            endpoint, insecure=True, timeout=timeout
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=timeout),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="signing key (PEM), from `run-identity keygen`")
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318", help="collector's OTLP endpoint")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--spool", metavar="DIR", help="spool undelivered batches here (OTLP/HTTP only)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds an export may retry")
    parser.add_argument("--count", type=int, help="make only the first COUNT runs")
    args = parser.parse_args(argv)
    span_exporter, manifest_exporter = exporters(
        args.endpoint, protocol=args.protocol, spool=args.spool, timeout=args.timeout
    )
    runs = make_runs(run_identity.load_signer(args.key), span_exporter, manifest_exporter, count=args.count)
    stats = getattr(manifest_exporter, "stats", None)
    print(f"declared {runs} runs" + (f"; manifest spool: {stats}" if stats is not None else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
