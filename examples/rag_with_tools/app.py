"""RAG with tools: a two-step agent turn whose every model call gets its own identity.

    run-identity keygen --out keys
    python examples/rag_with_tools/app.py --key keys/signing-key.pem --out out/rag
    run-identity verify out/rag --keyring keys/trusted-keys.jwks.json
    run-identity diff <first run> <second run> --in out/rag

The tool definitions and the instructions change rarely, so they are *prepared* once: digested at start-up
and reused by every call, which then pays only for the messages, the retrieved documents and the
parameters. The first call sees the question and the retrieved documents and asks for a tool; the second
also sees the tool call and its result. ``run-identity diff`` shows exactly that difference.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import run_identity

INSTRUCTIONS = [{"type": "text", "content": "Answer from the documents; call a tool for live data. Cite ids."}]
TOOLS = [
    {
        "type": "function",
        "name": "get_stock",
        "description": "Units in stock for a product SKU, per store.",
        "parameters": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "store": {"type": "string", "enum": ["lisbon", "porto"]}},
            "required": ["sku"],
        },
    }
]
MODEL = {"provider": "anthropic", "name": "claude-sonnet-4-5", "endpoint": "https://api.anthropic.com"}


def retrieve(question: str) -> list[dict[str, Any]]:
    """Stand-in for a vector search: the documents the retriever returned for the question."""
    return [
        {
            "id": "sku-7731",
            "uri": "https://kb.example/products/7731",
            "content": "Trail helmet, MIPS, sizes S-L.",
            "score": 0.88,
        },
        {
            "id": "faq-12",
            "uri": "https://kb.example/faq/12",
            "content": "Stock figures update every 15 minutes.",
            "score": 0.52,
        },
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="signing key (PEM), from `run-identity keygen`")
    parser.add_argument("--out", required=True, help="folder for traces.jsonl and manifests.jsonl")
    args = parser.parse_args(argv)

    wiring = run_identity.setup(args.key, directory=args.out, set_global=False)
    instructions = run_identity.prepare("instructions", INSTRUCTIONS)
    tools = run_identity.prepare("tools", TOOLS)

    question = "Is the trail helmet (SKU 7731) in stock in Lisbon?"
    documents = retrieve(question)
    messages: list[dict[str, Any]] = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
    turn = {
        "model": MODEL,
        "operation": "chat",
        "instructions": instructions,
        "tools": tools,
        "context": documents,
        "parameters": {"temperature": 0.0, "max_tokens": 400},
    }
    identities = []
    try:
        # Call 1: the model asks for the stock tool.
        with run_identity.start_genai_span(
            {**turn, "messages": list(messages)}, tracer_provider=wiring.tracer_provider
        ) as span:
            identities.append(span.attributes.get("run_identity.id"))
            tool_call = {
                "type": "tool_call",
                "id": "toolu_01",
                "name": "get_stock",
                "arguments": {"sku": "7731", "store": "lisbon"},
            }
        messages.append({"role": "assistant", "parts": [tool_call]})
        messages.append(
            {"role": "user", "parts": [{"type": "tool_call_response", "id": "toolu_01", "response": {"units": 4}}]}
        )
        # Call 2: the model answers with the tool result in its input.
        with run_identity.start_genai_span(
            {**turn, "messages": list(messages)}, tracer_provider=wiring.tracer_provider
        ) as span:
            identities.append(span.attributes.get("run_identity.id"))
    finally:
        wiring.shutdown()
    for i, identity in enumerate(identities, 1):
        print(f"call {i}: {identity}")
    return 0 if all(identities) and identities[0] != identities[1] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
