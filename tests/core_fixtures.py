"""Shared inputs of the identity-core tests: published test keys, fixed span ids and sample compositions.

The keys are the RFC 8032 section 7.1 TEST 1 and TEST 2 keys; they are public and never to be trusted.
TEST 1 is also the example key of RFC 8037 Appendix A, whose JWK thumbprint is published there.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from run_identity.core.composition import Composition
from run_identity.core.keys import Ed25519Signer, Keyring, Signer
from run_identity.core.parts import (
    BlobPart,
    Document,
    FilePart,
    FunctionTool,
    InputMessage,
    Model,
    Parameters,
    TextPart,
    ToolCallPart,
    ToolCallResponsePart,
    UriPart,
)
from run_identity.core.signing import SignedRun, sign_run

TEST1_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
TEST1_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
#: RFC 8037 Appendix A.3: the thumbprint of the TEST 1 public key.
TEST1_KEY_ID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
TEST2_SEED = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
TEST2_PUBLIC = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
DECLARED_AT = "2026-11-22T02:07:12.123456Z"

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUg=="
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
}
CITY = {"city": "Lisbon"}


def signer(seed: bytes = TEST1_SEED) -> Ed25519Signer:
    """The Ed25519 signer holding the given published seed."""
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(seed))


def keyring(*seeds: bytes) -> Keyring:
    """A keyring trusting the public halves of the given seeds (TEST 1 by default)."""
    return Keyring(signer(s).public_key for s in (seeds or (TEST1_SEED,)))


def b64(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def text_message(role: str, content: str) -> dict[str, Any]:
    """A message with one text part, in JSON form."""
    return {"role": role, "parts": [{"type": "text", "content": content}]}


def full_dict() -> dict[str, Any]:
    """A composition with every component and every part type, as plain JSON (a fresh copy each call)."""
    return copy.deepcopy(_FULL)


_FULL: dict[str, Any] = {
    "model": {
        "provider": "openai",
        "name": "gpt-4o",
        "revision": "2024-08-06",
        "endpoint": "https://api.openai.com/v1",
    },
    "operation": "chat",
    "instructions": [{"type": "text", "content": "You are terse."}],
    "messages": [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Weather in Lisbon?"},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG_B64},
                {"type": "uri", "modality": "image", "uri": "https://example.com/map.png"},
                {"type": "file", "modality": "document", "file_id": "file-123"},
            ],
        },
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": CITY}],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"temp_c": 21.5}}],
        },
        {"role": "user", "name": "ana", "parts": [{"type": "text", "content": "Thanks"}]},
    ],
    "parameters": {
        "temperature": 0.2,
        "top_p": 1,
        "top_k": 40,
        "max_tokens": 256,
        "seed": 7,
        "stop_sequences": ["\n\n"],
        "frequency_penalty": 0,
        "presence_penalty": 0.5,
        "choice_count": 1,
        "output_type": "text",
        "response_format": {"type": "text"},
    },
    "tools": [
        {"type": "function", "name": "get_weather", "description": "Weather.", "parameters": SCHEMA},
        {"type": "function", "name": "noop"},
    ],
    "context": [
        {"id": "doc-1", "uri": "https://kb.example.com/1", "content": "Lisbon is a capital."},
        {"id": "doc-2", "content": "It rains little in summer.", "score": 0.9},
    ],
    "extensions": {"service_tier": "default", "logit_bias": {"50256": -100}},
}


def full_typed() -> Composition:
    """The composition of :func:`full_dict`, built from the typed objects of run_identity.core.parts."""
    return Composition.of(
        model=Model(
            provider="openai", name="gpt-4o", revision="2024-08-06", endpoint="https://api.openai.com/v1"
        ),
        operation="chat",
        instructions=[TextPart("You are terse.")],
        messages=[
            InputMessage(
                role="user",
                parts=(
                    TextPart("Weather in Lisbon?"),
                    BlobPart(content=PNG_BYTES, modality="image", mime_type="image/png"),
                    UriPart(uri="https://example.com/map.png", modality="image"),
                    FilePart(file_id="file-123", modality="document"),
                ),
            ),
            InputMessage("assistant", (ToolCallPart(name="get_weather", arguments=CITY, id="call_1"),)),
            InputMessage("tool", (ToolCallResponsePart(response={"temp_c": 21.5}, id="call_1"),)),
            InputMessage("user", (TextPart("Thanks"),), name="ana"),
        ],
        parameters=Parameters(
            temperature=0.2,
            top_p=1,
            top_k=40,
            max_tokens=256,
            seed=7,
            stop_sequences=("\n\n",),
            frequency_penalty=0,
            presence_penalty=0.5,
            choice_count=1,
            output_type="text",
            response_format={"type": "text"},
        ),
        tools=[
            FunctionTool(name="get_weather", description="Weather.", parameters=SCHEMA),
            FunctionTool(name="noop"),
        ],
        context=[
            Document(id="doc-1", uri="https://kb.example.com/1", content="Lisbon is a capital."),
            Document(id="doc-2", content="It rains little in summer.", extra={"score": 0.9}),
        ],
        extensions={"service_tier": "default", "logit_bias": {"50256": -100}},
    )


def minimal_dict() -> dict[str, Any]:
    """The smallest valid composition."""
    return {"model": {"provider": "openai", "name": "gpt-4o"}, "operation": "chat"}


def sign(composition: Composition | None = None, *, key: Signer | None = None, **options: Any) -> SignedRun:
    """``sign_run`` with the TEST 1 key (or ``key``), the fixed span ids and the fixed declaration time."""
    comp = composition if composition is not None else Composition.from_dict(full_dict())
    given: dict[str, Any] = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "declared_at": DECLARED_AT, **options}
    return sign_run(comp, key if key is not None else signer(), **given)
