"""Benchmark compositions in the JSON form of docs/spec.md: small, typical and rag-large.

* ``small()``: 500-char system prompt, 4 messages of ~200 chars, 6 parameters.
* ``typical()``: 4 KB system prompt, 12 messages of ~500 chars, 8 tools with ~600-char JSON schemas,
  10 parameters (about 17 KB of canonical JSON).
* ``rag_large()``: typical plus 50 retrieved documents of 4 KB each.

The text is deterministic (same bytes every run) and mostly ASCII with a little non-ASCII, as real prompts
are. Each call returns fresh dicts, so a benchmark may mutate them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["rag_large", "small", "typical"]

_WORDS = (
    "the model answers questions about invoices, orders and refunds; it cites the policy section, "
    "asks for the order number when missing, never invents amounts, and replies in the customer's "
    "language (français, español, deutsch) with a short summary first. "
)


def _text(n: int, salt: int = 0) -> str:
    """``n`` characters of prompt-like text; ``salt`` shifts it so elements differ."""
    start = (salt * 37) % len(_WORDS)
    base = _WORDS[start:] + _WORDS[:start]
    out = (base * (n // len(base) + 1))[:n]
    return out


def _message(role: str, n: int, i: int) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": _text(n, i)}]}


def _messages(count: int, n: int) -> list[dict[str, Any]]:
    return [_message("user" if i % 2 == 0 else "assistant", n, i) for i in range(count)]


def _tool(i: int) -> dict[str, Any]:
    """A function tool whose JSON-schema parameters are about 600 characters of JSON."""
    return {
        "type": "function",
        "name": f"lookup_record_{i}",
        "description": f"Look up record kind {i} by id and return its fields; use before answering.",
        "parameters": {
            "type": "object",
            "properties": {
                "record_id": {"type": "string", "description": "The record id, e.g. INV-2024-000123."},
                "customer_id": {"type": "string", "description": "The customer id shown on the account."},
                "include_history": {"type": "boolean", "description": "Also return the change history."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Max rows."},
                "fields": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["amount", "status", "currency", "due", "lines"]},
                    "description": "Which fields to return; all when omitted.",
                },
            },
            "required": ["record_id"],
            "additionalProperties": False,
        },
    }


def _model() -> dict[str, Any]:
    return {"provider": "openai", "name": "gpt-4o-2024-08-06", "endpoint": "https://api.openai.com/v1"}


def small() -> dict[str, Any]:
    """500-char system prompt, 4 messages of ~200 chars, 6 parameters."""
    return {
        "model": _model(),
        "operation": "chat",
        "instructions": [{"type": "text", "content": _text(500)}],
        "messages": _messages(4, 200),
        "parameters": {
            "temperature": 0.2,
            "top_p": 0.95,
            "max_tokens": 512,
            "seed": 42,
            "stop_sequences": ["\n\nUser:"],
            "presence_penalty": 0.0,
        },
    }


def typical() -> dict[str, Any]:
    """4 KB system prompt, 12 messages of ~500 chars, 8 tools (~600-char schemas), 10 parameters."""
    return {
        "model": _model(),
        "operation": "chat",
        "instructions": [{"type": "text", "content": _text(4096)}],
        "messages": _messages(12, 500),
        "tools": [_tool(i) for i in range(8)],
        "parameters": {
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "max_tokens": 1024,
            "seed": 1234,
            "stop_sequences": ["\n\nUser:", "<|end|>"],
            "frequency_penalty": 0.1,
            "presence_penalty": 0.2,
            "choice_count": 1,
            "output_type": "text",
        },
    }


def rag_large() -> dict[str, Any]:
    """``typical()`` plus 50 retrieved documents of 4 KB each."""
    out = typical()
    out["context"] = [
        {"id": f"doc-{i:03d}", "uri": f"kb://policies/section-{i}", "content": _text(4096, 100 + i)}
        for i in range(50)
    ]
    return out
