"""Zero-code example: an OpenAI chat call with no OpenTelemetry set-up in the code.

Run it under ``opentelemetry-instrument``; the OpenAI instrumentation creates the GenAI span, and
ai-run-identity (installed from the ``RUN_IDENTITY_*`` variables) puts the signed identity of the declared
composition on it and exports the manifest::

    run-identity keygen --out keys
    export RUN_IDENTITY_ENABLED=true RUN_IDENTITY_SIGNING_KEY=keys/signing-key.pem RUN_IDENTITY_EXPORT_DIR=out
    export OTEL_TRACES_EXPORTER=none OTEL_LOGS_EXPORTER=none OTEL_METRICS_EXPORTER=none   # files only, no collector
    export OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=...
    opentelemetry-instrument python examples/zero_code/app.py "What is the capital of Portugal?"

The only line that knows about run identity is ``run_identity.declare``. The request is built *from* the
declared composition, so what is identified is exactly what is sent.
"""

from __future__ import annotations

import sys
from typing import Any

import openai

import run_identity

MODEL = "gpt-4o-mini"
SYSTEM = "You answer geography questions in one short sentence."


def build_composition(question: str, base_url: str) -> dict[str, Any]:
    """The composition of the call: model, instructions, the user's message and request parameters."""
    return {
        "model": {"provider": "openai", "name": MODEL, "endpoint": base_url},
        "operation": "chat",
        "instructions": [{"type": "text", "content": SYSTEM}],
        "messages": [{"role": "user", "parts": [{"type": "text", "content": question}]}],
        "parameters": {"temperature": 0.0, "max_tokens": 64, "seed": 7},
    }


def openai_request(composition: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions request for ``composition`` (text parts only, as this example uses)."""
    messages = [{"role": "system", "content": part["content"]} for part in composition["instructions"]]
    for message in composition["messages"]:
        text = "".join(part["content"] for part in message["parts"] if part["type"] == "text")
        messages.append({"role": message["role"], "content": text})
    parameters = composition["parameters"]
    return {
        "model": composition["model"]["name"],
        "messages": messages,
        "temperature": parameters["temperature"],
        "max_tokens": parameters["max_tokens"],
        "seed": parameters["seed"],
    }


def main(argv: list[str]) -> int:
    question = argv[0] if argv else "What is the capital of Portugal?"
    client = openai.OpenAI(max_retries=0)
    composition = build_composition(question, str(client.base_url).rstrip("/"))
    with run_identity.declare(composition) as declaration:
        reply = client.chat.completions.create(**openai_request(composition))
    print(reply.choices[0].message.content)
    print(f"run identity: {declaration.identity or declaration.error or 'not bound'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
