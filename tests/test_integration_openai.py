"""The OpenAI integration: the real openai client against a canned local server, identities and receipts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest import Pipeline
from llm_servers import API_KEY, SNAPSHOT, LLMServer, Reply, official_openai_instrumentation, serve
from opentelemetry.sdk._logs import ReadableLogRecord

import run_identity
from run_identity import Composition, Keyring, Manifest, compute_identity
from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME, RUN_IDENTITY_ID
from run_identity.core.receipt import Receipt, output_digest, verify_receipt
from run_identity.integrations import openai as ri_openai
from run_identity.integrations._openai_map import chat_body, chat_composition, responses_body, responses_composition

OpenAIInstrumentor, INSTRUMENTATION_SCOPE = official_openai_instrumentation()

QUESTION = "What is the capital of Portugal?"
SYSTEM = "You answer geography questions in one short sentence."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with serve() as running:
        yield running


@pytest.fixture
def captured(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The OpenAI integration on the test pipeline (strict: capture defects fail the test)."""
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        yield pipeline
    finally:
        ri_openai.uninstrument()


def client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)


def by_event(pipeline: Pipeline, name: str) -> list[ReadableLogRecord]:
    return [r for r in pipeline.manifests() if r.log_record.event_name == name]


def hand_composition(server: LLMServer, **extensions: Any) -> dict[str, Any]:
    """The composition of the standard request, declared by hand."""
    composition: dict[str, Any] = {
        "model": {"provider": "openai", "name": "gpt-4o-mini", "endpoint": server.openai_url + "/chat/completions"},
        "operation": "chat",
        "messages": [
            {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
            {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
        ],
        "parameters": {"temperature": 0.0, "max_tokens": 64, "seed": 7},
    }
    if extensions:
        composition["extensions"] = extensions
    return composition


def request(**more: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "temperature": 0.0,
        "max_tokens": 64,
        "seed": 7,
        **more,
    }


def exported_bytes(pipeline: Pipeline) -> bytes:
    """Every exported span and log record, serialized."""
    spans = [s.to_json() for s in pipeline.spans()]
    logs = [r.to_json() for r in pipeline.manifests()]
    return json.dumps(spans + logs).encode()


def test_captured_chat_call_has_the_identity_of_the_hand_declared_composition(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """Without instrumentation the integration starts the GenAI span; its identity is the hand-declared one."""
    reply = client(server).chat.completions.create(**request())
    assert reply.choices[0].message.content == "Lisbon."
    expected = compute_identity(Composition.from_dict(hand_composition(server))).id
    (span,) = captured.spans()
    assert span.name == "chat gpt-4o-mini"
    attributes = dict(span.attributes or {})
    assert attributes[RUN_IDENTITY_ID] == expected
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini" + SNAPSHOT
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    (record,) = by_event(captured, MANIFEST_EVENT_NAME)
    assert isinstance(record.log_record.body, str)
    manifest = Manifest.from_json(record.log_record.body)
    assert manifest.composition_json() == hand_composition(server)
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None and receipt.identity == expected and receipt.binds(manifest.statement)
    verify_receipt(receipt, keyring, statement=manifest.statement)
    assert receipt.statement.system_fingerprint == "fp_canned01"
    assert receipt.statement.response_id == "chatcmpl-canned-1"
    assert receipt.statement.finish_reasons == ("stop",)
    assert receipt.output == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Lisbon."}], "finish_reason": "stop"}
    ]
    (event,) = by_event(captured, RECEIPT_EVENT_NAME)
    assert isinstance(event.log_record.body, str)
    assert Receipt.from_json(event.log_record.body) == receipt
    assert event.log_record.span_id == span.context.span_id
    assert ri_openai.stats().receipts == 1


def test_the_api_key_and_headers_never_reach_any_exported_byte(captured: Pipeline, server: LLMServer) -> None:
    """Neither the API key nor extra headers or query appear in spans, manifests or receipts."""
    client(server).chat.completions.create(
        **request(), extra_headers={"X-Secret-Header": "hdr-secret-value"}, extra_query={"q": "query-secret"}
    )
    assert server.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    data = exported_bytes(captured)
    for secret in (API_KEY, "hdr-secret-value", "query-secret", "X-Secret-Header"):
        assert secret.encode() not in data


def test_extra_body_is_request_content_under_extensions(captured: Pipeline, server: LLMServer) -> None:
    """Fields sent through extra_body are part of the body, so of the composition (verbatim)."""
    client(server).chat.completions.create(**request(user="ana"), extra_body={"reasoning": {"effort": "low"}})
    assert server.requests[0]["reasoning"] == {"effort": "low"}
    (record,) = by_event(captured, MANIFEST_EVENT_NAME)
    manifest = Manifest.from_json(str(record.log_record.body))
    assert manifest.composition_json() == hand_composition(server, user="ana", reasoning={"effort": "low"})


def test_with_the_official_instrumentation_its_span_gets_the_identity(
    pipeline: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """Instrumented by genai-openai first, the integration only declares: one span, the instrumentation's."""
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.tracer_provider)
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        reply = client(server).chat.completions.create(**request())
    finally:
        ri_openai.uninstrument()
        instrumentor.uninstrument()
    (span,) = pipeline.spans()
    assert span.instrumentation_scope is not None and INSTRUMENTATION_SCOPE in span.instrumentation_scope.name
    expected = compute_identity(Composition.from_dict(hand_composition(server))).id
    assert (span.attributes or {})[RUN_IDENTITY_ID] == expected
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None and receipt.statement.span_id == f"{span.context.span_id:016x}"
    verify_receipt(receipt, keyring)
    assert pipeline.processor.coverage.undeclared == 0


def test_streamed_chat_gets_its_receipt_when_read_to_the_end(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """A stream's receipt appears once consumed, with the same output digest as the non-streamed call."""
    whole = client(server).chat.completions.create(**request())
    stream = client(server).chat.completions.create(**request(stream=True))
    assert run_identity.receipt_of(stream) is None
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Lisbon."
    receipt, first = run_identity.receipt_of(stream), run_identity.receipt_of(whole)
    assert receipt is not None and first is not None
    assert receipt.statement.output_digest == first.statement.output_digest
    assert receipt.identity != first.identity  # "stream": true is part of the request as sent
    verify_receipt(receipt, keyring)
    assert len(captured.spans()) == 2 and all(RUN_IDENTITY_ID in (s.attributes or {}) for s in captured.spans())


def test_a_stream_closed_early_ends_its_span_without_a_receipt(captured: Pipeline, server: LLMServer) -> None:
    """Closing a stream before its end ends the span; a partial output gets no receipt."""
    stream = client(server).chat.completions.create(**request(stream=True))
    next(iter(stream))
    stream.close()
    assert run_identity.receipt_of(stream) is None
    assert len(captured.spans()) == 1 and not by_event(captured, RECEIPT_EVENT_NAME)


def test_async_calls_and_async_streams_are_captured(captured: Pipeline, server: LLMServer, keyring: Keyring) -> None:
    """AsyncOpenAI: concurrent calls each bind their own composition; async streams get receipts."""
    aclient = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)

    async def ask(question: str, stream: bool) -> Any:
        messages = [{"role": "user", "content": question}]
        reply = await aclient.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=stream)
        if stream:
            async for _ in reply:
                pass
        return reply

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(*(ask(f"Question {i}?", i % 2 == 1) for i in range(4)))
        finally:
            await aclient.close()

    replies = asyncio.run(main())
    receipts = [run_identity.receipt_of(r) for r in replies]
    assert all(r is not None for r in receipts)
    for i, receipt in enumerate(receipts):
        assert receipt is not None
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Question {i}?"}],
            "stream": i % 2 == 1,
        }
        composition = chat_composition(body, endpoint=server.openai_url + "/chat/completions")
        assert receipt.identity == compute_identity(Composition.from_dict(composition)).id
        verify_receipt(receipt, keyring)


def test_tool_calls_images_and_tool_results_map_to_genai_parts(captured: Pipeline, server: LLMServer) -> None:
    """Content arrays, data URLs, assistant tool calls (arguments verbatim) and tool results become parts."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n-canned").decode()
    server.reply(Reply(text="", tool_calls=[("call_2", "get_time", '{"tz": "WET"}')]))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/map.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True}}
    ]
    reply = client(server).chat.completions.create(model="gpt-4o", messages=messages, tools=tools, stop="\n")  # type: ignore[arg-type]
    (record,) = by_event(captured, MANIFEST_EVENT_NAME)
    composition = Manifest.from_json(str(record.log_record.body)).composition_json()
    assert composition["messages"] == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Weather here?"},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": png, "detail": "low"},
                {"type": "uri", "modality": "image", "uri": "https://example.com/map.png"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": '{"city":"Lisbon"}'}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": '{"temp_c": 21}'}]},
    ]
    assert composition["tools"] == [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}
    ]
    assert composition["parameters"] == {"stop_sequences": ["\n"]}
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None and receipt.statement.finish_reasons == ("tool_calls",)
    assert receipt.output[0]["parts"] == [
        {"type": "tool_call", "id": "call_2", "name": "get_time", "arguments": '{"tz": "WET"}'}
    ]


def test_responses_api_calls_streamed_or_not_are_captured(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """responses.create: instructions are their own component; the streamed receipt matches the whole one."""
    oai = client(server)
    whole = oai.responses.create(model="gpt-4o-mini", instructions=SYSTEM, input=QUESTION, max_output_tokens=50)
    stream = oai.responses.create(model="gpt-4o-mini", instructions=SYSTEM, input=QUESTION, stream=True)
    for _ in stream:
        pass
    first, second = run_identity.receipt_of(whole), run_identity.receipt_of(stream)
    assert first is not None and second is not None
    assert first.statement.output_digest == second.statement.output_digest
    assert first.output == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Lisbon."}], "finish_reason": "completed"}
    ]
    composition = {
        "model": {"provider": "openai", "name": "gpt-4o-mini", "endpoint": server.openai_url + "/responses"},
        "operation": "chat",
        "instructions": [{"type": "text", "content": SYSTEM}],
        "messages": [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}],
        "parameters": {"max_tokens": 50},
    }
    assert first.identity == compute_identity(Composition.from_dict(composition)).id
    verify_receipt(second, keyring)


def test_responses_stream_helper_is_captured_when_entered(
    captured: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """responses.stream(...), sync and async: one run (the create it sends inside is not captured again), the
    helper stream is the client's own, and its receipt matches the streamed create's."""
    oai = client(server)
    created = oai.responses.create(model="gpt-4o-mini", input=QUESTION, stream=True)
    for _ in created:
        pass
    with oai.responses.stream(model="gpt-4o-mini", input=QUESTION) as helper:
        assert type(helper).__name__ == "ResponseStream"
        assert helper.get_final_response().output_text == "Lisbon."

    async def asynchronous() -> Any:
        aclient = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)
        async with aclient.responses.stream(model="gpt-4o-mini", input=QUESTION) as ahelper:
            assert type(ahelper).__name__ == "AsyncResponseStream"
            async for _ in ahelper:
                pass
        await aclient.close()
        return ahelper

    ahelper = asyncio.run(asynchronous())
    receipts = [run_identity.receipt_of(x) for x in (created, helper, ahelper)]
    assert all(r is not None for r in receipts)
    assert len({r.identity for r in receipts if r}) == 1  # the same request body: "stream": true included
    assert len({r.statement.output_digest for r in receipts if r}) == 1
    for receipt in receipts:
        assert receipt is not None
        verify_receipt(receipt, keyring)
    assert len(captured.spans()) == 3 and ri_openai.stats().captured == 3


def test_responses_stream_resuming_a_response_is_not_captured(captured: Pipeline) -> None:
    """responses.stream(response_id=...) sends no model request: no capture, the call goes on (here it fails
    to connect, as it would have without run identity)."""
    oai = openai.OpenAI(api_key=API_KEY, base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(openai.APIConnectionError), oai.responses.stream(response_id="resp_1") as stream:
        for _ in stream:
            pass
    assert ri_openai.stats().captured == 0


def test_a_request_that_cannot_be_identified_still_goes_out_marked(pipeline: Pipeline, server: LLMServer) -> None:
    """A credential-like field in the body: the span is marked with run_identity.error, the reply arrives."""
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        reply = client(server).chat.completions.create(**request(), extra_body={"token": "abc"})
    finally:
        ri_openai.uninstrument()
    assert reply.choices[0].message.content == "Lisbon."
    (span,) = pipeline.spans()
    assert "looks like a credential" in str((span.attributes or {})["run_identity.error"])
    assert run_identity.receipt_of(reply) is None and ri_openai.stats().unbound == 0


def test_instrument_is_idempotent_and_uninstrument_restores_the_methods(pipeline: Pipeline) -> None:
    """Patching twice wraps once; uninstrument puts the library's methods back."""
    from openai.resources.chat.completions.completions import Completions

    before = Completions.__dict__["create"]
    assert ri_openai.instrument(tracer_provider=pipeline.tracer_provider)
    patched = Completions.__dict__["create"]
    assert ri_openai.instrument() and Completions.__dict__["create"] is patched is not before
    assert ri_openai.is_instrumented()
    ri_openai.uninstrument()
    assert Completions.__dict__["create"] is before and not ri_openai.is_instrumented()


BODIES = [
    request(),
    request(
        stream=True, stream_options={"include_usage": True}, n=2, top_p=0.5, response_format={"type": "json_object"}
    ),
    {
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": "Be brief.", "name": "ops"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            },
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}}]},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "ok"}]},
        ],
        "tools": [{"type": "custom", "custom": {"name": "grep", "description": "search"}}],
        "temperature": None,
        "stop": ["x", "y"],
    },
]


@pytest.mark.parametrize("body", BODIES)
def test_chat_bodies_round_trip_through_their_composition(body: dict[str, Any]) -> None:
    """chat_body(chat_composition(b)) is b: the request can be rebuilt exactly from the manifest."""
    composition = chat_composition(body, endpoint="http://127.0.0.1/v1")
    Composition.from_dict(composition)
    assert chat_body(composition) == body


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 9},
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "done"}, {"type": "output_text", "text": "!"}],
                },
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {}, "strict": False}],
            "text": {"format": {"type": "text"}},
        },
        {"model": "m", "input": [{"type": "reasoning", "id": "r", "summary": []}], "tools": [{"type": "web_search"}]},
    ],
)
def test_responses_bodies_round_trip_through_their_composition(body: dict[str, Any]) -> None:
    """responses_body(responses_composition(b)) is b (unmappable items stay verbatim in extensions)."""
    composition = responses_composition(body)
    Composition.from_dict(composition)
    assert responses_body(composition) == body


def test_output_digest_is_domain_separated_jcs() -> None:
    """The output digest is sha256 over the output prefix, the salt length and the JCS output."""
    import hashlib

    output = [{"role": "assistant", "parts": [{"type": "text", "content": "x"}], "finish_reason": "stop"}]
    jcs = b'[{"finish_reason":"stop","parts":[{"content":"x","type":"text"}],"role":"assistant"}]'
    assert (
        output_digest(output)
        == "sha256:" + hashlib.sha256(b"run-identity/v1/output\x00\x00\x00\x00\x00" + jcs).hexdigest()
    )


def test_with_raw_response_calls_get_receipts_through_parse(captured: Pipeline, server: LLMServer) -> None:
    """with_raw_response: the receipt is made from the parsed reply; a raw stream is left to the application."""
    raw = client(server).chat.completions.with_raw_response.create(**request())
    receipt = run_identity.receipt_of(raw)
    assert receipt is not None and receipt.output[0]["parts"] == [{"type": "text", "content": "Lisbon."}]
    assert raw.parse().choices[0].message.content == "Lisbon."
    streamed = client(server).chat.completions.with_raw_response.create(**request(stream=True))
    chunks = list(streamed.parse())
    assert chunks and run_identity.receipt_of(streamed) is None
    assert len(captured.spans()) == 2


def test_generator_messages_are_sent_and_captured_whole(captured: Pipeline, server: LLMServer) -> None:
    """A one-shot iterator of messages is captured without being consumed before the client reads it."""
    messages = (m for m in request()["messages"])
    client(server).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert server.requests[0]["messages"] == request()["messages"]
    (record,) = by_event(captured, MANIFEST_EVENT_NAME)
    assert len(Manifest.from_json(str(record.log_record.body)).composition_json()["messages"]) == 2


def span_identity(pipeline: Pipeline) -> str:
    """The ``run_identity.id`` of the pipeline's one span (the test then clears the exporter)."""
    (span,) = pipeline.spans()
    pipeline.span_exporter.clear()
    return str((span.attributes or {})[RUN_IDENTITY_ID])


def test_composition_of_declared_by_hand_gets_the_captured_identity(pipeline: Pipeline, server: LLMServer) -> None:
    """One chat request, declared by hand with composition_of around the official instrumentation's span, and
    captured by the integration: one identity (spec Annex A). The README's old way, with the system message
    moved to ``instructions``, is another composition, so another identity."""
    oai = client(server)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        composition = ri_openai.composition_of(request(), oai)
        with run_identity.declare(composition) as declaration:
            oai.chat.completions.create(**request())
        by_hand = span_identity(pipeline)
        ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
        try:
            oai.chat.completions.create(**request())
        finally:
            ri_openai.uninstrument()
        captured_id = span_identity(pipeline)
    finally:
        instrumentor.uninstrument()
    assert by_hand == captured_id == declaration.identity
    assert composition == hand_composition(server)
    assert [m["role"] for m in composition["messages"]] == ["system", "user"] and "instructions" not in composition
    moved = {
        **composition,
        "instructions": composition["messages"][0]["parts"],
        "messages": composition["messages"][1:],
    }
    assert compute_identity(Composition.from_dict(moved)).id != by_hand
    assert pipeline.processor.coverage.undeclared == 0


def test_composition_of_a_responses_request_gets_the_captured_identity(pipeline: Pipeline, server: LLMServer) -> None:
    """responses.create declared by hand (a span started with start_genai_span) and captured: one identity;
    ``instructions`` is the instructions component, ``input`` the messages."""
    oai = client(server)
    ask = {"model": "gpt-4o-mini", "instructions": SYSTEM, "input": QUESTION, "max_output_tokens": 50}
    composition = ri_openai.composition_of(ask, oai, api="responses")
    assert composition["instructions"] == [{"type": "text", "content": SYSTEM}]
    assert composition["messages"] == [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]
    with run_identity.start_genai_span(composition, tracer_provider=pipeline.tracer_provider):
        oai.responses.create(**ask)
    by_hand = span_identity(pipeline)
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        oai.responses.create(**ask)
    finally:
        ri_openai.uninstrument()
    assert span_identity(pipeline) == by_hand


def test_composition_of_without_a_client_and_its_options() -> None:
    """Without a client the model has no endpoint; call options are not part of the body; extra_body is; an
    Azure client names its provider; an unknown api is refused; a generator is read into the request."""
    bare = ri_openai.composition_of(
        {**request(), "extra_headers": {"x": "1"}, "timeout": 3, "extra_body": {"user": "a"}}
    )
    assert bare["model"] == {"provider": "openai", "name": "gpt-4o-mini"}
    assert bare["extensions"] == {"user": "a"}
    azure = openai.AzureOpenAI(
        api_key=API_KEY, api_version="2024-10-21", azure_endpoint="https://example.openai.azure.com"
    )
    assert ri_openai.composition_of(request(), azure)["model"]["provider"] == "azure.ai.openai"
    with pytest.raises(ValueError, match="api must be"):
        ri_openai.composition_of(request(), api="embeddings")  # type: ignore[arg-type]
    asked = request(messages=(m for m in request()["messages"]))
    assert ri_openai.composition_of(asked)["messages"] == bare["messages"]
    assert type(asked["messages"]) is list and len(asked["messages"]) == 2


def test_a_hand_declaration_around_a_captured_call_is_reported_unclaimed(
    captured: Pipeline, server: LLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Declared by hand around a call the integration captures, the hand declaration goes unused (the span
    takes the capture's): counted on the capture's processor and logged, naming the integration."""
    caplog.set_level("WARNING", logger="run_identity")
    with run_identity.declare(hand_composition(server)) as declaration:
        client(server).chat.completions.create(**request())
    assert not declaration.claimed and declaration.captured_by == "openai"
    assert captured.processor.coverage.declarations_unclaimed == 1
    assert any("the openai client integration captured the call" in r.getMessage() for r in caplog.records)


def test_the_spec_annex_example_is_what_composition_of_gives() -> None:
    """docs/spec.md Annex A's example composition, as written, is composition_of's for its request."""
    import re
    from pathlib import Path

    spec = (Path(__file__).resolve().parent.parent / "docs" / "spec.md").read_text(encoding="utf-8")
    example = spec[spec.index("### A.5 Example") :]
    match = re.search(r"```json\n(.*?)```", example, re.S)
    assert match is not None
    oai = openai.OpenAI(api_key=API_KEY, base_url="https://api.openai.com/v1")
    asked = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "stream": True,
    }
    assert ri_openai.composition_of(asked, oai) == json.loads(match.group(1))
    responses = ri_openai.composition_of(
        {"model": "m", "instructions": "Answer briefly.", "input": "Hi"}, api="responses"
    )
    assert responses["instructions"] == [{"type": "text", "content": "Answer briefly."}]
