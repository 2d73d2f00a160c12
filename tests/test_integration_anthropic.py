"""The Anthropic integration: the real anthropic client against a canned local server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from conftest import Pipeline
from llm_servers import API_KEY, SNAPSHOT, LLMServer, Reply, serve

import run_identity
from run_identity import Composition, Keyring, Manifest, compute_identity
from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME, RUN_IDENTITY_ID
from run_identity.core.receipt import Receipt, verify_receipt
from run_identity.integrations import anthropic as ri_anthropic
from run_identity.integrations._anthropic_map import messages_body, messages_composition

SYSTEM = "You answer geography questions in one short sentence."
QUESTION = "What is the capital of Portugal?"
MODEL = "claude-canned-4"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with serve() as running:
        yield running


@pytest.fixture
def captured(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The Anthropic integration on the test pipeline, strict."""
    ri_anthropic.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        yield pipeline
    finally:
        ri_anthropic.uninstrument()


def client(server: LLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)


def request(**more: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": QUESTION}],
        # This client version has no temperature/top_k arguments: extra_body sends them, as body fields.
        "extra_body": {"temperature": 0.0, "top_k": 5},
        **more,
    }


def hand_composition(server: LLMServer, **extensions: Any) -> dict[str, Any]:
    """The standard request's composition, declared by hand."""
    composition: dict[str, Any] = {
        "model": {"provider": "anthropic", "name": MODEL, "endpoint": server.anthropic_url + "/v1/messages"},
        "operation": "chat",
        "instructions": [{"type": "text", "content": SYSTEM}],
        "messages": [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}],
        "parameters": {"max_tokens": 64, "temperature": 0.0, "top_k": 5},
    }
    if extensions:
        composition["extensions"] = extensions
    return composition


def events(pipeline: Pipeline, name: str) -> list[Any]:
    return [r for r in pipeline.manifests() if r.log_record.event_name == name]


def test_captured_message_has_the_hand_declared_identity_and_a_receipt(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """messages.create: system is the instructions; the receipt names the resolved model."""
    message = client(server).messages.create(**request())
    assert message.content[0].text == "Lisbon."  # type: ignore[union-attr]
    expected = compute_identity(Composition.from_dict(hand_composition(server))).id
    (span,) = captured.spans()
    assert span.name == f"chat {MODEL}" and (span.attributes or {})[RUN_IDENTITY_ID] == expected
    assert (span.attributes or {})["gen_ai.provider.name"] == "anthropic"
    (record,) = events(captured, MANIFEST_EVENT_NAME)
    manifest = Manifest.from_json(str(record.log_record.body))
    assert manifest.composition_json() == hand_composition(server)
    receipt = run_identity.receipt_of(message)
    assert receipt is not None
    verify_receipt(receipt, keyring, statement=manifest.statement)
    assert (receipt.statement.request_model, receipt.statement.response_model) == (MODEL, MODEL + SNAPSHOT)
    assert receipt.statement.finish_reasons == ("end_turn",) and receipt.statement.response_id == "msg_canned_1"
    (event,) = events(captured, RECEIPT_EVENT_NAME)
    assert Receipt.from_json(str(event.log_record.body)) == receipt
    data = json.dumps([s.to_json() for s in captured.spans()] + [r.to_json() for r in captured.manifests()])
    assert API_KEY not in data


def test_stream_true_and_messages_stream_give_the_same_output_digest(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """stream=True events and the messages.stream() helper build the output of the whole message."""
    calls = [("call_1", "get_weather", '{"city": "Lisbon"}')]
    server.reply(Reply(text="Checking.", tool_calls=calls))
    server.reply(Reply(text="Checking.", tool_calls=calls))
    server.reply(Reply(text="Checking.", tool_calls=calls))
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    whole = client(server).messages.create(**request(tools=tools))
    raw = client(server).messages.create(**request(tools=tools, stream=True))
    for _ in raw:
        pass
    with client(server).messages.stream(**request(tools=tools)) as helper:
        final = helper.get_final_message()
    assert final.stop_reason == "tool_use"
    receipts = [
        run_identity.receipt_of(whole),
        run_identity.receipt_of(raw),
        run_identity.receipt_of(helper),
    ]
    assert all(r is not None for r in receipts)
    digests = {r.statement.output_digest for r in receipts if r is not None}
    assert len(digests) == 1
    first = receipts[0]
    assert first is not None and first.output[0]["parts"] == [
        {"type": "text", "content": "Checking."},
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Lisbon"}},
    ]
    # stream=True and the helper send the same body, so they have the same identity
    assert receipts[1] is not None and receipts[2] is not None and receipts[1].identity == receipts[2].identity
    for r in receipts:
        assert r is not None
        verify_receipt(r, keyring)
    assert len(captured.spans()) == 3 and len(events(captured, RECEIPT_EVENT_NAME)) == 3


def test_async_create_and_async_stream_helper_are_captured(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """AsyncAnthropic: create and messages.stream() get identities and receipts in their own tasks."""
    aclient = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)

    async def main() -> tuple[Any, Any]:
        try:
            message = await aclient.messages.create(**request())
            async with aclient.messages.stream(**request()) as stream:
                async for _ in stream:
                    pass
            return message, stream
        finally:
            await aclient.close()

    message, stream = asyncio.run(main())
    first, second = run_identity.receipt_of(message), run_identity.receipt_of(stream)
    assert first is not None and second is not None
    assert first.statement.output_digest == second.statement.output_digest
    assert first.identity == compute_identity(Composition.from_dict(hand_composition(server))).id
    verify_receipt(second, keyring)


BODIES = [
    {**{k: v for k, v in request().items() if k != "extra_body"}, "temperature": 0.0, "top_k": 5},
    {
        "model": MODEL,
        "max_tokens": 10,
        "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}, "title": "A"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42", "is_error": False}],
            },
        ],
        "tools": [
            {"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
        ],
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u1"},
        "stream": True,
    },
]


@pytest.mark.parametrize("body", BODIES)
def test_message_bodies_round_trip_through_their_composition(body: dict[str, Any]) -> None:
    """messages_body(messages_composition(b)) is b."""
    composition = messages_composition(body, endpoint="http://127.0.0.1:1")
    Composition.from_dict(composition)
    assert messages_body(composition) == body


def test_blocks_map_to_genai_parts() -> None:
    """Images, tool use, tool results and thinking map to blob, tool_call, tool_call_response and reasoning."""
    composition = messages_composition(BODIES[1])
    assert composition["instructions"] == [{"type": "text", "content": "a", "cache_control": {"type": "ephemeral"}}]
    user, assistant, result = composition["messages"]
    assert user["parts"][1] == {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "AAAA"}
    assert user["parts"][2] == {"type": "uri", "modality": "document", "uri": "https://x/a.pdf", "title": "A"}
    assert assistant["parts"] == [
        {"type": "reasoning", "content": "hm", "signature": "sig"},
        {"type": "tool_call", "id": "t1", "name": "f", "arguments": {"x": 1}},
    ]
    assert result["parts"] == [{"type": "tool_call_response", "id": "t1", "response": "42", "is_error": False}]
    assert composition["tools"][0] == {
        "type": "function",
        "name": "f",
        "parameters": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
    }
    assert composition["parameters"] == {"max_tokens": 10, "stop_sequences": ["END"]}
    assert set(composition["extensions"]) == {"thinking", "metadata", "stream"}


def test_the_clients_own_span_takes_the_identity_when_it_traces_to_our_provider(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """anthropic 2.17+ starts a GenAI span of its own: with our provider it is the run's span, not a second one."""
    traced = anthropic.Anthropic(
        api_key=API_KEY,
        base_url=server.anthropic_url,
        max_retries=0,
        open_telemetry={"tracer_provider": captured.tracer_provider},
    )
    message = traced.messages.create(**request())
    stream = traced.messages.create(**request(), stream=True)
    for _ in stream:
        pass
    spans = captured.spans()
    assert len(spans) == 2 and {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "com.anthropic.sdk.python"
    }
    assert all(RUN_IDENTITY_ID in (s.attributes or {}) for s in spans)
    assert captured.processor.coverage.undeclared == 0 and captured.processor.coverage.identified == 2
    receipts = [run_identity.receipt_of(message), run_identity.receipt_of(stream)]
    for receipt in receipts:
        assert receipt is not None
        verify_receipt(receipt, keyring)
    assert {r.statement.span_id for r in receipts if r} == {f"{s.context.span_id:016x}" for s in spans}
    untraced = anthropic.Anthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0, open_telemetry=False)
    untraced.messages.create(**request())
    assert len(captured.spans()) == 3 and captured.spans()[-1].instrumentation_scope.name == "run_identity.integrations"


def test_composition_of_declared_by_hand_gets_the_captured_identity(pipeline: Pipeline, server: LLMServer) -> None:
    """One Messages request on a client that traces itself: declared by hand with composition_of, and
    captured by the integration, its span gets one identity; ``system`` is the instructions (spec Annex A)."""
    traced = anthropic.Anthropic(
        api_key=API_KEY,
        base_url=server.anthropic_url,
        max_retries=0,
        open_telemetry={"tracer_provider": pipeline.tracer_provider},
    )
    composition = ri_anthropic.composition_of(request(), traced)
    assert composition == hand_composition(server)
    with run_identity.declare(composition) as declaration:
        traced.messages.create(**request())
    (span,) = pipeline.spans()
    pipeline.span_exporter.clear()
    ri_anthropic.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        traced.messages.create(**request())
    finally:
        ri_anthropic.uninstrument()
    (captured_span,) = pipeline.spans()
    by_hand = (span.attributes or {})[RUN_IDENTITY_ID]
    assert by_hand == (captured_span.attributes or {})[RUN_IDENTITY_ID] == declaration.identity
    assert ri_anthropic.composition_of(request())["model"] == {"provider": "anthropic", "name": MODEL}
    assert pipeline.processor.coverage.undeclared == 0


def test_composition_of_a_streamed_call_has_stream_true(captured: Pipeline, server: LLMServer) -> None:
    """messages.stream(...) sends "stream": true: composition_of with stream=True is its captured composition."""
    anthropic_client = client(server)
    with anthropic_client.messages.stream(**request()) as stream:
        for _ in stream.text_stream:
            pass
    (span,) = captured.spans()
    composition = ri_anthropic.composition_of({**request(), "stream": True}, anthropic_client)
    assert composition["extensions"] == {"stream": True}
    assert (span.attributes or {})[RUN_IDENTITY_ID] == compute_identity(Composition.from_dict(composition)).id
