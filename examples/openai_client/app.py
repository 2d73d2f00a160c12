"""Example: the OpenAI client declares its own identity, and the answer carries a signed receipt.

No composition is written by hand: ``run_identity.integrations.openai.instrument()`` builds it from the
request the client sends, declares it before the request goes out, and signs a receipt of the output::

    run-identity keygen --out keys
    export OPENAI_API_KEY=...
    python examples/openai_client/app.py --key keys/signing-key.pem --out out "What is the capital of Portugal?"
    run-identity verify out --keyring keys/trusted-keys.jwks.json
    run-identity replay <identity> --in out --dry-run

``out/`` receives ``traces.jsonl`` and ``manifests.jsonl`` (manifests and receipts; OTLP-JSON lines);
``receipt.json`` is the receipt as it travels with the answer to a downstream party.

``--official`` runs the call under the official OpenAI instrumentation (``opentelemetry-instrumentation-genai-openai``)
with the ``run_identity`` completion hook: its span carries the identity, and the hook signs the receipt from
the instrumentation's own output (zero code: ``OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK=run_identity``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import openai

import run_identity
from run_identity.integrations import openai as ri_openai

MODEL = "gpt-4o-mini"
SYSTEM = "You answer geography questions in one short sentence."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What is the capital of Portugal?")
    parser.add_argument("--key", required=True, help="Ed25519 signing key (PEM), from run-identity keygen")
    parser.add_argument("--out", default="out", help="folder for the exported spans, manifests and receipts")
    parser.add_argument(
        "--receipt", default="receipt.json", help="where to write the receipt that goes with the answer"
    )
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"), help="OpenAI-compatible API")
    parser.add_argument("--stream", action="store_true", help="stream the answer")
    parser.add_argument(
        "--official", action="store_true", help="under genai-openai, receipts from the run_identity completion hook"
    )
    args = parser.parse_args(argv)

    out = Path(args.out)
    handle = run_identity.setup(args.key, directory=out, set_global=False)  # receipts go to manifests.jsonl
    instrumentor = None
    if args.official:  # first the instrumentation, then the integration over it
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        from run_identity.integrations.completion_hook import RunIdentityCompletionHook

        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=handle.tracer_provider, completion_hook=RunIdentityCompletionHook())
    ri_openai.instrument(tracer_provider=handle.tracer_provider)
    try:
        client = openai.OpenAI(base_url=args.base_url, max_retries=0)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": args.question}]
        if args.stream:
            reply = client.chat.completions.create(model=MODEL, messages=messages, seed=7, stream=True)  # type: ignore[arg-type]
            answer = "".join(chunk.choices[0].delta.content or "" for chunk in reply if chunk.choices)
        else:
            reply = client.chat.completions.create(model=MODEL, messages=messages, seed=7)  # type: ignore[arg-type]
            answer = reply.choices[0].message.content or ""
    finally:
        ri_openai.uninstrument()
        if instrumentor is not None:
            instrumentor.uninstrument()
        handle.shutdown()
    print(answer)
    receipt = run_identity.receipt_of(reply)
    if receipt is None:
        print("no receipt (the request could not be identified; see the log)", file=sys.stderr)
        return 1
    Path(args.receipt).write_bytes(receipt.to_json_bytes())
    s = receipt.statement
    print(f"run identity: {s.identity}", file=sys.stderr)
    print(f"model: requested {s.request_model}, served {s.response_model}", file=sys.stderr)
    print(f"receipt: {args.receipt} (output {s.output_digest})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
