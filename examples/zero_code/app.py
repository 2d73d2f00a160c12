"""Zero-code example: an OpenAI chat call with no OpenTelemetry set-up in the code.

Run it under ``opentelemetry-instrument``; the OpenAI instrumentation creates the GenAI span, and
ai-run-identity (installed from the ``RUN_IDENTITY_*`` variables) puts the signed identity of the declared
composition on it and exports the manifest::

    run-identity keygen --out keys
    export RUN_IDENTITY_ENABLED=true RUN_IDENTITY_SIGNING_KEY=keys/signing-key.pem RUN_IDENTITY_EXPORT_DIR=out
    export OTEL_TRACES_EXPORTER=none OTEL_LOGS_EXPORTER=none OTEL_METRICS_EXPORTER=none   # files only, no collector
    export OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=...
    opentelemetry-instrument python examples/zero_code/app.py "What is the capital of Portugal?"

The only lines that know about run identity declare the call's composition: the one the OpenAI client
integration would capture from this very request (``composition_of``, the mapping of docs/spec.md Annex A:
Chat Completions keeps the system message in ``messages``, as sent), so declared by hand or captured, the
call gets one identity.
"""

from __future__ import annotations

import sys
from typing import Any

import openai

import run_identity
from run_identity.integrations import openai as ri_openai

MODEL = "gpt-4o-mini"
SYSTEM = "You answer geography questions in one short sentence."


def openai_request(question: str) -> dict[str, Any]:
    """The Chat Completions request of the call (its keyword arguments)."""
    return {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "temperature": 0.0,
        "max_tokens": 64,
        "seed": 7,
    }


def build_composition(request: dict[str, Any], client: openai.OpenAI | openai.AsyncOpenAI) -> dict[str, Any]:
    """The composition of ``request`` sent by ``client``: exactly what the integration captures."""
    return ri_openai.composition_of(request, client)


def main(argv: list[str]) -> int:
    question = argv[0] if argv else "What is the capital of Portugal?"
    client = openai.OpenAI(max_retries=0)
    request = openai_request(question)
    with run_identity.declare(build_composition(request, client)) as declaration:
        reply = client.chat.completions.create(**request)
    print(reply.choices[0].message.content)
    print(f"run identity: {declaration.identity or declaration.error or 'not bound'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
