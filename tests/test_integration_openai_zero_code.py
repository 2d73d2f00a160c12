"""Zero code: RUN_IDENTITY_CAPTURE under opentelemetry-instrument identifies undeclared calls (openai, anthropic)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_servers import API_KEY, LLMServer, official_openai_instrumentation, serve

from run_identity import Composition, Ed25519Signer, Keyring, compute_identity
from run_identity.core.attributes import RECEIPT_EVENT_NAME
from run_identity.core.receipt import Receipt, verify_receipt
from run_identity.integrations._openai_map import chat_composition

BIN = Path(sys.executable).parent
APP = """
import sys
import openai
import run_identity

client = openai.OpenAI(max_retries=0)
reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of Portugal?"}])
receipt = run_identity.receipt_of(reply)
print(reply.choices[0].message.content)
print(f"receipt: {receipt.identity if receipt else None}", file=sys.stderr)
"""


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with serve() as running:
        yield running


def spans(path: Path) -> list[dict[str, Any]]:
    """Every span in an OTLP-JSON lines file, with its scope name."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                out.extend({**s, "_scope": scope["scope"]["name"]} for s in scope["spans"])
    return out


def test_capture_by_environment_variable_binds_the_instrumentation_span(tmp_path: Path, server: LLMServer) -> None:
    """The genai-openai span of a call nobody declared carries the identity of the request sent; one span only."""
    key = tmp_path / "signing-key.pem"
    key.write_bytes(Ed25519Signer.generate().private_pem())
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_", "OPENAI_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OPENAI_BASE_URL=server.openai_url,
        OPENAI_API_KEY=API_KEY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(key),
        RUN_IDENTITY_EXPORT_DIR=str(out),
        RUN_IDENTITY_CAPTURE="openai,nonsense",
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(app)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Lisbon."
    assert "unknown integration 'nonsense'" in result.stderr
    (span,) = spans(out / "traces.jsonl")
    assert official_openai_instrumentation()[1] in span["_scope"]
    attributes = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
    (sent,) = server.requests
    expected = compute_identity(
        Composition.from_dict(chat_composition(sent, endpoint=server.openai_url + "/chat/completions"))
    )
    assert attributes["run_identity.id"] == expected.id
    assert f"receipt: {expected.id}" in result.stderr
    assert API_KEY not in (out / "traces.jsonl").read_text() + (out / "manifests.jsonl").read_text()


HOOKED_APP = """
import asyncio
import sys
import openai
import run_identity

messages = [{"role": "user", "content": "Capital of Portugal?"}]
client = openai.OpenAI(max_retries=0)
reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
assert isinstance(stream, openai.Stream)
text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


async def ask():
    async with openai.AsyncOpenAI(max_retries=0) as aclient:
        return await aclient.chat.completions.create(model="gpt-4o-mini", messages=messages)


areply = asyncio.run(ask())
print(reply.choices[0].message.content, text, areply.choices[0].message.content)
for obj in (reply, stream, areply):
    receipt = run_identity.receipt_of(obj)
    print(f"receipt: {receipt.statement.span_id if receipt else None}", file=sys.stderr)
"""


def test_zero_code_with_the_completion_hook_receipts_come_from_the_instrumentation(
    tmp_path: Path, server: LLMServer
) -> None:
    """opentelemetry-instrument + genai-openai + OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK=run_identity: the
    hook signs every receipt (sync, streamed, async) and the integration hands each to its response."""
    pytest.importorskip("opentelemetry.instrumentation.genai.openai", reason="util-genai 1.x instrumentation")
    signer = Ed25519Signer.generate()
    key = tmp_path / "signing-key.pem"
    key.write_bytes(signer.private_pem())
    app = tmp_path / "app.py"
    app.write_text(HOOKED_APP)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_", "OPENAI_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK="run_identity",
        OPENAI_BASE_URL=server.openai_url,
        OPENAI_API_KEY=API_KEY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(key),
        RUN_IDENTITY_EXPORT_DIR=str(out),
        RUN_IDENTITY_CAPTURE="openai",
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(app)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Lisbon.", "Lisbon.", "Lisbon."]
    found = spans(out / "traces.jsonl")
    assert len(found) == 3 and all("genai.openai" in s["_scope"] for s in found)
    span_ids = {s["spanId"] for s in found}
    handed = [line.split(": ")[1] for line in result.stderr.splitlines() if line.startswith("receipt: ")]
    assert set(handed) == span_ids  # each response carries the receipt of its own span
    logs = []
    for line in (out / "manifests.jsonl").read_text(encoding="utf-8").splitlines():
        for resource in json.loads(line)["resourceLogs"]:
            for scope in resource["scopeLogs"]:
                logs.extend({**r, "_scope": scope["scope"]["name"]} for r in scope["logRecords"])
    receipt_records = [r for r in logs if r.get("eventName") == RECEIPT_EVENT_NAME]
    assert {r["_scope"] for r in receipt_records} == {"run_identity.completion_hook"}  # none signed by the integration
    receipts = [Receipt.from_json(r["body"]["stringValue"]) for r in receipt_records]
    assert {r.statement.span_id for r in receipts} == span_ids and len(receipts) == 3
    ring = Keyring([signer.public_key])
    for receipt in receipts:
        verify_receipt(receipt, ring)
        assert receipt.output == [
            {"role": "assistant", "parts": [{"type": "text", "content": "Lisbon."}], "finish_reason": "stop"}
        ]


ANTHROPIC_APP = """
import sys
import anthropic
import run_identity

client = anthropic.Anthropic(max_retries=0)
body = {"model": "claude-canned-4", "max_tokens": 64, "messages": [{"role": "user", "content": "Capital of Portugal?"}]}
message = client.messages.create(**body)
with client.messages.stream(**body) as helper:
    text = helper.get_final_text()
print(message.content[0].text, text)
for obj in (message, helper):
    receipt = run_identity.receipt_of(obj)
    print(f"receipt: {receipt.statement.span_id if receipt else None}", file=sys.stderr)
"""


def test_zero_code_anthropic_with_genai_anthropic_and_the_hook(tmp_path: Path, server: LLMServer) -> None:
    """The same for anthropic 2.17+ under genai-anthropic: the instrumentation's span is the run's (the client's
    own span inside it is an undeclared GenAI span), the hook signs, the responses carry the receipts."""
    pytest.importorskip("opentelemetry.instrumentation.genai.anthropic", reason="util-genai 1.x instrumentation")
    signer = Ed25519Signer.generate()
    key = tmp_path / "signing-key.pem"
    key.write_bytes(signer.private_pem())
    app = tmp_path / "app.py"
    app.write_text(ANTHROPIC_APP)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_", "ANTHROPIC_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK="run_identity",
        ANTHROPIC_BASE_URL=server.anthropic_url,
        ANTHROPIC_API_KEY=API_KEY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(key),
        RUN_IDENTITY_EXPORT_DIR=str(out),
        RUN_IDENTITY_CAPTURE="anthropic",
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(app)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Lisbon.", "Lisbon."]
    found = spans(out / "traces.jsonl")
    identified = [s for s in found if any(a["key"] == "run_identity.id" for a in s["attributes"])]
    assert len(identified) == 2 and all("genai.anthropic" in s["_scope"] for s in identified)
    handed = [line.split(": ")[1] for line in result.stderr.splitlines() if line.startswith("receipt: ")]
    assert set(handed) == {s["spanId"] for s in identified}
    receipts = []
    for line in (out / "manifests.jsonl").read_text(encoding="utf-8").splitlines():
        for resource in json.loads(line)["resourceLogs"]:
            for scope in resource["scopeLogs"]:
                receipts.extend(
                    (scope["scope"]["name"], Receipt.from_json(r["body"]["stringValue"]))
                    for r in scope["logRecords"]
                    if r.get("eventName") == RECEIPT_EVENT_NAME
                )
    assert {name for name, _ in receipts} == {"run_identity.completion_hook"} and len(receipts) == 2
    for _, receipt in receipts:
        verify_receipt(receipt, Keyring([signer.public_key]))
