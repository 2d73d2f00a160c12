#!/usr/bin/env python3
"""Write the test vectors of docs/spec.md §11 into tests/vectors/ (``--check``: exit 1 when they differ).

Every vector is computed by the library under the published RFC 8032 TEST 1 key, with fixed trace ids,
span ids and declaration times, so the output is identical on every run and every machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition
from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.core.manifest import Manifest
from run_identity.core.receipt import sign_receipt
from run_identity.core.signing import sign_run

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "vectors"
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")

OPENAI = {"provider": "openai", "name": "gpt-4o-mini", "revision": "2024-07-18", "endpoint": "https://api.openai.com/v1"}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name, e.g. Lisbon"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
}


def _text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


def _cases() -> list[dict[str, Any]]:
    minimal = {"model": {"provider": "openai", "name": "gpt-4o"}, "operation": "chat"}
    typical = {
        "model": OPENAI,
        "operation": "chat",
        "instructions": [{"type": "text", "content": "You are a careful assistant. Answer in one sentence."}],
        "messages": [
            _text("user", "What is the capital of Portugal?"),
            _text("assistant", "Lisbon."),
            _text("user", "And its population?"),
        ],
        "parameters": {"temperature": 0.2, "top_p": 1.0, "max_tokens": 256, "seed": 42, "stop_sequences": ["\n\n"]},
    }
    tools = {
        "model": OPENAI,
        "operation": "chat",
        "messages": [
            _text("user", "Weather in Lisbon?"),
            {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Lisbon"}}],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"temp_c": 21.5, "sky": "clear"}}],
            },
        ],
        "tools": [
            WEATHER_TOOL,
            {"type": "function", "name": "noop", "description": None, "parameters": None},
        ],
        "parameters": {"temperature": 0, "choice_count": 1},
    }
    rag = {
        "model": {"provider": "anthropic", "name": "claude-sonnet-4-5"},
        "operation": "chat",
        "instructions": [{"type": "text", "content": "Answer only from the documents."}],
        "messages": [_text("user", "When was the bridge opened?")],
        "context": [
            {"id": "doc-1", "uri": "https://example.org/bridge", "content": "The 25 de Abril Bridge opened in 1966.", "score": 0.91},
            {"id": "doc-2", "content": "It is a suspension bridge over the Tagus.", "score": 0.47},
            {"id": "doc-3", "uri": "s3://kb/bridges/vasco-da-gama.md"},
        ],
        "parameters": {"max_tokens": 512},
    }
    unicode_heavy = {
        "model": {"provider": "openai", "name": "gpt-4o"},
        "operation": "chat",
        "messages": [
            _text("user", "Ol\u00e1! \u00bfQu\u00e9 tal? \u4f60\u597d \U0001f600 \u05e9\u05dc\u05d5\u05dd \u2028 tab\there"),
            _text("user", "Cafe\u0301 (NFD) vs Caf\u00e9 (NFC)"),
            _text("user", "control \u0001\u001f quote \" backslash \\ slash /"),
        ],
        "extensions": {"\U0001f600": 1, "\ue000": 2, "a": 3, "\u00e9": 4, "metadata": {"z": [], "y": {}}},
    }
    numbers = {
        "model": {"provider": "openai", "name": "gpt-4o"},
        "operation": "text_completion",
        "messages": [_text("user", "n")],
        "parameters": {"temperature": 1.0, "top_p": 0.1, "frequency_penalty": -0.0, "presence_penalty": 1e-7},
        "extensions": {"big": 9007199254740991, "neg": -9007199254740991, "e21": 1e21, "e20": 1e20, "tiny": 5e-324, "third": 1 / 3},
    }
    multimodal = {
        "model": {"provider": "gcp.gemini", "name": "gemini-2.5-flash"},
        "operation": "generate_content",
        "messages": [
            {
                "role": "user",
                "parts": [
                    {"type": "text", "content": "Describe these."},
                    {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0KGgo="},
                    {"type": "uri", "modality": "image", "uri": "https://example.org/cat.jpg"},
                    {"type": "file", "modality": "document", "file_id": "file-abc123", "mime_type": "application/pdf"},
                ],
            }
        ],
    }
    empty_tools = {**minimal, "messages": [_text("user", "hi")], "tools": []}
    absent_tools = {**minimal, "messages": [_text("user", "hi")]}
    extensions = {
        **minimal,
        "messages": [_text("user", "Return JSON.")],
        "parameters": {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}, "output_type": "json"},
        "extensions": {"logit_bias": {"50256": -100}, "user": "user-1234", "service_tier": "auto", "store": False, "metadata": None},
    }
    return [
        {"name": "minimal", "description": "Only the required components.", "composition": minimal},
        {"name": "typical", "description": "Instructions, a short conversation and parameters.", "composition": typical},
        {"name": "tools", "description": "Tool definitions, a tool call and its response.", "composition": tools},
        {"name": "rag-context", "description": "Retrieved documents as context.", "composition": rag},
        {"name": "unicode-heavy", "description": "Non-ASCII text, NFC vs NFD, control characters, astral-plane vs U+E000 member names.", "composition": unicode_heavy},
        {"name": "numbers", "description": "Number formatting: 1.0, -0.0, 1e-7, 1e20, 1e21, 5e-324, 1/3, ±(2^53-1).", "composition": numbers},
        {"name": "multimodal", "description": "blob (base64), uri and file parts.", "composition": multimodal},
        {"name": "empty-tools", "description": "tools present and empty: differs from absent-tools.", "composition": empty_tools},
        {"name": "absent-tools", "description": "tools absent: differs from empty-tools.", "composition": absent_tools},
        {"name": "extensions", "description": "Provider request fields verbatim, response_format, output_type.", "composition": extensions},
        {"name": "withheld-message", "description": "The typical composition with message 1 withheld in the manifest.", "composition": typical, "withheld": [["messages", 1]]},
        {"name": "withheld-document", "description": "The RAG composition with document 0 withheld.", "composition": rag, "withheld": [["context", 0]]},
        {"name": "withheld-component", "description": "Parameters withheld as a whole, and one tool.", "composition": tools, "withheld": [["parameters", None], ["tools", 0]]},
        {"name": "salted", "description": "The typical composition under a 32-byte blinding salt.", "composition": typical, "salt_hex": "5a" * 32},
        {"name": "integer-spelling", "description": "Integers spelled with a fraction (max_tokens 256.0, seed -3.0): whole numbers are integers (§2.4) and canonicalize to 256 and -3.", "composition": {**minimal, "messages": [_text("user", "n")], "parameters": {"max_tokens": 256.0, "seed": -3.0, "choice_count": 1}}},
    ]


REJECTIONS: list[dict[str, Any]] = [
    {"composition": {"model": {"provider": "openai", "name": "m"}}, "path": "", "reason": "missing required component 'operation'"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "prompt": "x"}, "path": "prompt", "reason": "unknown component"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": [{"role": "user"}]}, "path": "messages[0]", "reason": "missing required field 'parts'"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": [{"role": "user", "parts": [{"type": "text"}]}]}, "path": "messages[0].parts[0]", "reason": "missing required field 'content'"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "parameters": {"temperature": "hot"}}, "path": "parameters.temperature", "reason": "expected a number"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "parameters": {"logit_bias": {}}}, "path": "parameters.logit_bias", "reason": "unknown parameter"},
    {"composition": {"model": {"provider": "openai", "name": "m", "endpoint": "https://u:p@h/v1"}, "operation": "chat"}, "path": "model.endpoint", "reason": "credentials"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "extensions": {"api_key": "sk-..."}}, "path": "extensions.api_key", "reason": "credential"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": [{"role": "user", "parts": [{"type": "blob", "modality": "image", "content": "not base64!"}]}]}, "path": "messages[0].parts[0].content", "reason": "base64"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "extensions": {"n": 9007199254740992}}, "path": "extensions.n", "reason": "outside"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "parameters": {"max_tokens": 256.5}}, "path": "parameters.max_tokens", "reason": "expected an integer"},
    {"composition": {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "extensions": {"headers_": {"X_Goog_Api_Key": "k"}}}, "path": "extensions.headers_.X_Goog_Api_Key", "reason": "credential"},
    {"composition": {"model": {"provider": "openai", "name": "m", "endpoint": "https://h/v1?alt=json&Key=k"}, "operation": "chat"}, "path": "model.endpoint", "reason": "credential"},
]


def signer() -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(TEST_SEED))


def build(case: dict[str, Any], index: int) -> dict[str, Any]:
    salt = bytes.fromhex(case.get("salt_hex", ""))
    composition = Composition.from_dict(case["composition"])
    run = sign_run(
        composition,
        signer(),
        trace_id=f"{index + 1:032x}".replace("0", "a", 4),
        span_id=f"{index + 1:016x}".replace("0", "b", 2),
        salt=salt,
        declared_at=f"2026-11-22T12:00:{index:02d}.000000Z",
    )
    identity = run.identity
    manifest = Manifest.from_json(run.manifest_json())
    for component, element in case.get("withheld", []):
        manifest = manifest.withhold(component, element)
    canonical: dict[str, Any] = {}
    digests: dict[str, Any] = {}
    for name in sorted(identity.components):
        cd = identity.components[name]
        blob = identity.canonical[name]
        if cd.element_digests is not None:
            canonical[name] = [b.decode("utf-8") for b in blob]
            digests[name] = {"digest": cd.digest, "elements": list(cd.element_digests)}
        else:
            assert isinstance(blob, bytes)
            canonical[name] = blob.decode("utf-8")
            digests[name] = {"digest": cd.digest}
    out = {
        "name": case["name"],
        "description": case["description"],
        "composition": case["composition"],
        "salt_hex": case.get("salt_hex", ""),
        "canonical": canonical,
        "component_digests": digests,
        "identity": identity.id,
        "statement": run.statement.to_json(),
        "signing_input_hex": run.statement.signing_input().hex(),
        "signature": manifest.to_json()["signature"],
        "manifest": manifest.to_json(),
        "manifest_body": manifest.to_json_bytes().decode("utf-8"),
    }
    if "withheld" not in case:
        assert out["manifest_body"] == run.manifest_json().decode("utf-8"), case["name"]
    if "withheld" in case:
        out["withheld"] = case["withheld"]
    return out


RECEIPT_OUTPUT = [
    {
        "role": "assistant",
        "parts": [
            {"type": "text", "content": "About 545,000 people live in Lisbon itself."},
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": '{"city":"Lisbon"}'},
        ],
        "finish_reason": "tool_calls",
    }
]


def build_receipt(index: int) -> dict[str, Any]:
    """The receipt vector (docs/spec.md §10.4): a receipt bound to the run of vector ``index``."""
    case = _cases()[index]
    run = build(case, index)
    receipt = sign_receipt(
        signer(),
        identity=run["identity"],
        trace_id=run["statement"]["trace_id"],
        span_id=run["statement"]["span_id"],
        output=RECEIPT_OUTPUT,
        finish_reasons=["tool_calls"],
        request_model=case["composition"]["model"]["name"],
        response_model="gpt-4o-mini-2024-07-18",
        response_id="chatcmpl-vector-1",
        system_fingerprint="fp_vector01",
        completed_at="2026-11-22T12:00:30.500000Z",
    )
    return {
        "name": "receipt",
        "description": f"A run receipt bound to the run of vector {index + 1:02d}-{case['name']}.json",
        "run": f"{index + 1:02d}-{case['name']}.json",
        "output": RECEIPT_OUTPUT,
        "salt_hex": "",
        "output_canonical": canonicalize(RECEIPT_OUTPUT).decode("utf-8"),
        "output_digest": receipt.statement.output_digest,
        "statement": receipt.statement.to_json(),
        "statement_canonical": receipt.statement.canonical().decode("utf-8"),
        "signing_input_hex": receipt.statement.signing_input().hex(),
        "signature": receipt.to_json()["signature"],
        "receipt": receipt.to_json(),
    }


def render() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i, case in enumerate(_cases()):
        files[f"{i + 1:02d}-{case['name']}.json"] = _dump(build(case, i))
    files["receipt.json"] = _dump(build_receipt(1))
    files["rejections.json"] = _dump(REJECTIONS, check=False)
    files["test-key.jwks.json"] = _dump(Keyring([signer().public_key]).to_jwks())
    return files


def _dump(doc: Any, *, check: bool = True) -> bytes:
    # Pretty for people; json.dumps keeps the floats' shortest repr, and the checks recompute from values.
    if check:
        canonicalize(doc)  # every vector must itself be canonicalizable
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str]) -> int:
    files = render()
    if argv == ["--check"]:
        stale = [n for n, data in files.items() if not (OUT / n).exists() or (OUT / n).read_bytes() != data]
        if stale:
            print(f"test vectors are stale: {', '.join(stale)}; run scripts/gen_vectors.py", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files are up to date")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (OUT / name).write_bytes(data)
    print(f"wrote {len(files)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
