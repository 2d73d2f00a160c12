"""Example: the Anthropic client declares its own identity; a streamed answer gets a signed receipt.

``run_identity.integrations.anthropic.instrument()`` captures ``messages.create`` and ``messages.stream``:
the composition comes from the request itself, and when the stream has been read to its end the output is
bound to the run by a receipt::

    run-identity keygen --out keys
    export ANTHROPIC_API_KEY=...
    python examples/anthropic_client/app.py --key keys/signing-key.pem --out out "What is the capital of Portugal?"
    run-identity verify out --keyring keys/trusted-keys.jwks.json

``--official`` runs it under the official instrumentation (``opentelemetry-instrumentation-genai-anthropic``)
with the ``run_identity`` completion hook, which signs the receipt from the instrumentation's own output.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anthropic

import run_identity
from run_identity.integrations import anthropic as ri_anthropic

MODEL = "claude-haiku-4-5"
SYSTEM = "You answer geography questions in one short sentence."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What is the capital of Portugal?")
    parser.add_argument("--key", required=True, help="Ed25519 signing key (PEM), from run-identity keygen")
    parser.add_argument("--out", default="out", help="folder for the exported spans, manifests and receipts")
    parser.add_argument(
        "--receipt", default="receipt.json", help="where to write the receipt that goes with the answer"
    )
    parser.add_argument("--base-url", default=os.environ.get("ANTHROPIC_BASE_URL"), help="Anthropic API URL")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument(
        "--official", action="store_true", help="under genai-anthropic, receipts from the run_identity completion hook"
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    handle = run_identity.setup(args.key, directory=out, set_global=False)  # receipts go to manifests.jsonl
    instrumentor = None
    if args.official:  # first the instrumentation, then the integration over it
        from opentelemetry.instrumentation.genai.anthropic import AnthropicInstrumentor

        from run_identity.integrations.completion_hook import RunIdentityCompletionHook

        instrumentor = AnthropicInstrumentor()
        instrumentor.instrument(tracer_provider=handle.tracer_provider, completion_hook=RunIdentityCompletionHook())
    ri_anthropic.instrument(tracer_provider=handle.tracer_provider)
    try:
        client = anthropic.Anthropic(base_url=args.base_url, max_retries=0)
        with client.messages.stream(
            model=args.model,
            max_tokens=256,
            system=SYSTEM,
            messages=[{"role": "user", "content": args.question}],
        ) as stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
            print()
            final = stream.get_final_message()
    finally:
        ri_anthropic.uninstrument()
        if instrumentor is not None:
            instrumentor.uninstrument()
        handle.shutdown()
    receipt = run_identity.receipt_of(stream)  # the stream helper, once read to its end
    if receipt is None:
        print("no receipt (the request could not be identified; see the log)", file=sys.stderr)
        return 1
    Path(args.receipt).write_bytes(receipt.to_json_bytes())
    s = receipt.statement
    print(f"run identity: {s.identity}", file=sys.stderr)
    print(f"model: requested {s.request_model}, served {s.response_model}; stop: {final.stop_reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
