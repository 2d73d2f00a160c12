"""The example runs of the demo: a dozen compositions of the kinds a real application declares.

Chat with instructions, tool use (definitions, a call and its response), retrieval-augmented runs with
documents, a multimodal run, and two runs that differ in one parameter, so ``run-identity diff`` has
something to show.
"""

from __future__ import annotations

from typing import Any

__all__ = ["demo_compositions"]

_ASSISTANT = "You are the support assistant of Tagus Bikes. Answer in at most three sentences; cite sources."
_SEARCH_TOOL = {
    "type": "function",
    "name": "search_orders",
    "description": "Find a customer's orders by e-mail address or order number.",
    "parameters": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "order_number": {"type": "string", "pattern": "^TB-[0-9]{6}$"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        },
        "additionalProperties": False,
    },
}
_WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city, for ride planning.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
}
_DOCS = [
    {"id": "kb-101", "uri": "https://kb.example/warranty", "content": "Frames carry a 10-year warranty; parts 2 years.", "score": 0.92},
    {"id": "kb-204", "uri": "https://kb.example/returns", "content": "Returns are accepted within 30 days in original packaging.", "score": 0.81},
    {"id": "kb-317", "uri": "https://kb.example/service", "content": "The first service after 500 km is free of charge.", "score": 0.44},
]


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "content": text}]}


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "text", "content": text}]}


def demo_compositions() -> list[tuple[str, dict[str, Any]]]:
    """(label, composition) pairs in the composition JSON form of docs/spec.md."""
    openai = {"provider": "openai", "name": "gpt-4o-mini", "revision": "2024-07-18", "endpoint": "https://api.openai.com/v1"}
    anthropic = {"provider": "anthropic", "name": "claude-sonnet-4-5", "endpoint": "https://api.anthropic.com"}
    instructions = [{"type": "text", "content": _ASSISTANT}]
    runs: list[tuple[str, dict[str, Any]]] = [
        ("greeting", {
            "model": openai, "operation": "chat", "instructions": instructions,
            "messages": [_user("Hi! Do you sell cargo bikes?")],
            "parameters": {"temperature": 0.3, "max_tokens": 200},
        }),
        ("greeting-hot", {
            "model": openai, "operation": "chat", "instructions": instructions,
            "messages": [_user("Hi! Do you sell cargo bikes?")],
            "parameters": {"temperature": 0.9, "max_tokens": 200},
        }),
        ("multi-turn", {
            "model": openai, "operation": "chat", "instructions": instructions,
            "messages": [
                _user("My brakes squeak."), _assistant("Are they rim or disc brakes?"),
                _user("Disc, hydraulic."), _assistant("Try cleaning the rotors with isopropyl alcohol."),
                _user("Done, still squeaks."),
            ],
            "parameters": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 300, "seed": 7},
        }),
        ("tool-definitions", {
            "model": openai, "operation": "chat", "instructions": instructions,
            "messages": [_user("Where is my order TB-204518?")],
            "tools": [_SEARCH_TOOL, _WEATHER_TOOL],
            "parameters": {"temperature": 0.0, "max_tokens": 256},
        }),
        ("tool-call-and-response", {
            "model": openai, "operation": "chat", "instructions": instructions,
            "messages": [
                _user("Where is my order TB-204518?"),
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_01", "name": "search_orders",
                                                 "arguments": {"order_number": "TB-204518"}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_01",
                                            "response": {"status": "shipped", "carrier": "CTT", "eta_days": 2}}]},
            ],
            "tools": [_SEARCH_TOOL],
            "parameters": {"temperature": 0.0, "max_tokens": 256},
        }),
        ("rag-warranty", {
            "model": anthropic, "operation": "chat", "instructions": instructions,
            "messages": [_user("How long is the frame warranty?")],
            "context": _DOCS,
            "parameters": {"temperature": 0.1, "max_tokens": 400},
        }),
        ("rag-returns", {
            "model": anthropic, "operation": "chat", "instructions": instructions,
            "messages": [_user("Can I return a helmet after three weeks?")],
            "context": _DOCS[1:],
            "parameters": {"temperature": 0.1, "max_tokens": 400},
        }),
        ("rag-with-tools", {
            "model": anthropic, "operation": "chat", "instructions": instructions,
            "messages": [_user("Is it a good day to ride to Belém, and is my service free?")],
            "context": _DOCS[2:],
            "tools": [_WEATHER_TOOL],
            "parameters": {"temperature": 0.4, "max_tokens": 500, "stop_sequences": ["\n\nUser:"]},
        }),
        ("multimodal", {
            "model": {"provider": "gcp.gemini", "name": "gemini-2.5-flash"}, "operation": "generate_content",
            "messages": [{"role": "user", "parts": [
                {"type": "text", "content": "What part is this?"},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0KGgoAAAANSUhEUg=="},
            ]}],
            "parameters": {"max_tokens": 120},
        }),
        ("json-output", {
            "model": openai, "operation": "chat",
            "messages": [_user("Extract the order number from: 'hi, order TB-311002 is late'.")],
            "parameters": {"temperature": 0.0, "output_type": "json",
                           "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": {
                               "type": "object", "properties": {"order_number": {"type": "string"}}}}}},
            "extensions": {"service_tier": "auto", "store": False},
        }),
        ("unicode", {
            "model": openai, "operation": "chat", "instructions": instructions,
            "messages": [_user("Olá! A bicicleta chegou com um risco 😞 — posso trocar?")],
            "parameters": {"temperature": 0.3},
        }),
        ("embeddings", {
            "model": {"provider": "openai", "name": "text-embedding-3-small"}, "operation": "embeddings",
            "messages": [_user("cargo bike with child seat")],
        }),
    ]
    return runs
