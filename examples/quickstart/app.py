"""Quickstart: the manual OpenTelemetry SDK set-up, one declared run, and its verification.

    run-identity keygen --out keys
    python examples/quickstart/app.py --key keys/signing-key.pem --out out/quickstart
    run-identity verify out/quickstart --keyring keys/trusted-keys.jwks.json

What it shows, in the order an application does it:

1. the SDK set-up by hand: a TracerProvider with the IdentitySpanProcessor, and a LoggerProvider of its own
   for the manifests (so they can be routed apart from application logs), both exporting OTLP-JSON lines;
2. a composition declared for the next GenAI span; here the app has no GenAI instrumentation, so
   ``start_genai_span`` starts that span with the semantic-convention name and attributes;
3. the identity the run got, read back from the declaration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import run_identity

# Written by hand (docs/spec.md §2), for a model call this example does not make. To declare a real OpenAI
# or Anthropic call, declare the composition of its request: run_identity.integrations.openai.composition_of(
# request, client) (docs/spec.md Annex A; a Chat Completions system prompt is then a message in `messages`),
# the very composition the client integration would capture.
COMPOSITION = {
    "model": {"provider": "openai", "name": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"},
    "operation": "chat",
    "instructions": [{"type": "text", "content": "Answer in one short sentence."}],
    "messages": [{"role": "user", "parts": [{"type": "text", "content": "What is the capital of Portugal?"}]}],
    "parameters": {"temperature": 0.2, "max_tokens": 64},
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="signing key (PEM), from `run-identity keygen`")
    parser.add_argument("--out", required=True, help="folder for traces.jsonl and manifests.jsonl")
    args = parser.parse_args(argv)

    # 1. SDK set-up: the processor signs GenAI spans at start and emits each run's manifest as a log event.
    signer = run_identity.load_signer(args.key)
    span_file, manifest_file = run_identity.file_exporters(Path(args.out))
    manifests = LoggerProvider()
    manifests.add_log_record_processor(BatchLogRecordProcessor(manifest_file))
    tracer_provider = TracerProvider(sampler=run_identity.IdentitySampler())
    tracer_provider.add_span_processor(run_identity.IdentitySpanProcessor(signer, logger_provider=manifests))
    tracer_provider.add_span_processor(BatchSpanProcessor(span_file))

    # 2. Declare the run and start its GenAI span; the identity is fixed before the model is called.
    with run_identity.start_genai_span(COMPOSITION, tracer_provider=tracer_provider) as span:
        # ... call the model here ...
        identity = getattr(span, "attributes", {}).get("run_identity.id")  # shown, never recomputed from

    tracer_provider.shutdown()
    manifests.shutdown()
    # 3. What the run got.
    print(f"identity {identity}")
    return 0 if identity else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
