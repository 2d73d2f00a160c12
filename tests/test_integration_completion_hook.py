"""The run_identity completion hook inside the official GenAI instrumentations (opentelemetry-util-genai 1.x).

Real parts: the openai and anthropic clients against the local canned server, the official
``opentelemetry-instrumentation-genai-openai`` / ``-genai-anthropic`` instrumentors on the real OTel SDK,
and the hook loaded the way util-genai loads it (entry point named by the environment variable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

pytest.importorskip("opentelemetry.instrumentation.genai.openai", reason="the util-genai 1.x instrumentations")
from conftest import Pipeline
from llm_servers import API_KEY, SNAPSHOT, LLMServer, serve
from opentelemetry.instrumentation.genai.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.util.genai.completion_hook import load_completion_hook
from opentelemetry.util.genai.types import BlobPart, OutputMessage, TextPart, ToolCallRequestPart

import run_identity
from run_identity import Composition, Keyring, Manifest, compute_identity, declare
from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME, RUN_IDENTITY_ID
from run_identity.core.receipt import Receipt, verify_receipt
from run_identity.integrations import anthropic as ri_anthropic
from run_identity.integrations import openai as ri_openai
from run_identity.integrations._openai_map import chat_composition
from run_identity.integrations._receipts import BOARD
from run_identity.integrations.completion_hook import RunIdentityCompletionHook, output_json
from run_identity.otel.declare import current_declaration

QUESTION = "What is the capital of Portugal?"
LISBON = [{"role": "assistant", "parts": [{"type": "text", "content": "Lisbon."}], "finish_reason": "stop"}]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with serve() as running:
        yield running


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hook as util-genai loads it: the entry point that OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK names."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK", "run_identity")
    return load_completion_hook()


@pytest.fixture
def hook(loaded: Any) -> RunIdentityCompletionHook:
    inner = getattr(loaded, "_wrapped", None)  # util-genai wraps it so that nothing it raises escapes
    assert isinstance(inner, RunIdentityCompletionHook)
    inner.strict = True
    return inner


@pytest.fixture
def official(pipeline: Pipeline, loaded: Any) -> Iterator[Pipeline]:
    """The official OpenAI instrumentation with that hook."""
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logger_provider, completion_hook=loaded
    )
    try:
        yield pipeline
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def captured(official: Pipeline) -> Iterator[Pipeline]:
    """... and the OpenAI client integration over it (after it, as opentelemetry-instrument orders them)."""
    ri_openai.instrument(tracer_provider=official.tracer_provider, strict=True)
    try:
        yield official
    finally:
        ri_openai.uninstrument()


def client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)


def request(**more: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}], "seed": 7, **more}


def events(pipeline: Pipeline, name: str) -> list[ReadableLogRecord]:
    return [r for r in pipeline.manifests() if r.log_record.event_name == name]


def all_from_the_hook(pipeline: Pipeline) -> bool:
    """Whether every receipt exported was signed by the completion hook (none by a client integration)."""
    scopes = {r.instrumentation_scope.name for r in events(pipeline, RECEIPT_EVENT_NAME) if r.instrumentation_scope}
    return scopes == {"run_identity.completion_hook"}


def the_receipt(pipeline: Pipeline) -> Receipt:
    (event,) = events(pipeline, RECEIPT_EVENT_NAME)
    assert isinstance(event.log_record.body, str)
    return Receipt.from_json(event.log_record.body)


def identity_of(server: LLMServer, body: dict[str, Any]) -> str:
    composition = chat_composition(body, endpoint=server.openai_url + "/chat/completions")
    return compute_identity(Composition.from_dict(composition)).id


def test_the_instrumentation_loads_the_hook_from_the_environment(
    pipeline: Pipeline, server: LLMServer, monkeypatch: pytest.MonkeyPatch, keyring: Keyring
) -> None:
    """``OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK=run_identity``: the instrumentor loads the hook itself."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK", "run_identity")
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logger_provider)
    try:
        with declare({"model": {"provider": "openai", "name": "gpt-4o-mini"}, "operation": "chat"}) as declaration:
            client(server).chat.completions.create(**request())
    finally:
        instrumentor.uninstrument()
    receipt = the_receipt(pipeline)
    assert receipt.identity == declaration.identity and receipt.output == LISBON
    verify_receipt(receipt, keyring)


def test_declared_call_gets_its_receipt_from_the_hook(
    official: Pipeline, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    """``declare`` + the official instrumentation's span + the hook: a receipt, with no client patched."""
    composition = {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}],
    }
    with declare(composition) as declaration:
        reply = client(server).chat.completions.create(**request())
    assert reply.choices[0].message.content == "Lisbon."
    (span,) = official.spans()
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name.endswith("genai.openai")
    assert (span.attributes or {})[RUN_IDENTITY_ID] == declaration.identity
    (record,) = events(official, MANIFEST_EVENT_NAME)
    manifest = Manifest.from_json(str(record.log_record.body))
    receipt = the_receipt(official)
    assert receipt.binds(manifest.statement) and receipt.output == LISBON
    verify_receipt(receipt, keyring, statement=manifest.statement)
    s = receipt.statement
    assert (s.request_model, s.response_model) == ("gpt-4o-mini", "gpt-4o-mini" + SNAPSHOT)
    assert (s.response_id, s.system_fingerprint, s.finish_reasons) == ("chatcmpl-canned-1", "fp_canned01", ("stop",))
    assert run_identity.receipt_of(reply) is None  # no integration to carry it to the response: it is in the logs
    assert hook.stats.receipts == 1
    assert (s.trace_id, s.span_id) not in BOARD._receipts  # nobody will take it: not kept


def test_undeclared_call_is_counted_and_left_alone(
    official: Pipeline, hook: RunIdentityCompletionHook, server: LLMServer
) -> None:
    client(server).chat.completions.create(**request())
    assert not events(official, RECEIPT_EVENT_NAME)
    assert hook.stats.unbound == 1 and hook.stats.receipts == 0


def test_with_the_integration_the_hook_signs_and_the_response_carries_it(
    captured: Pipeline, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    """The integration gives the identity before the call, the hook the receipt after: one of each."""
    reply = client(server).chat.completions.create(**request())
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None and receipt == the_receipt(captured)
    assert receipt.identity == identity_of(server, request())
    verify_receipt(receipt, keyring)
    assert hook.stats.receipts == 1 and ri_openai.stats().receipts == 1
    assert len(captured.spans()) == 1 and captured.processor.coverage.identified == 1


def test_streamed_call_keeps_the_instrumentation_stream_and_gets_the_hook_receipt(
    captured: Pipeline, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    """The hook signs when the instrumentation sees the stream end; the stream is the client's, proxied by it."""
    whole = client(server).chat.completions.create(**request())
    stream = client(server).chat.completions.create(**request(stream=True))
    assert isinstance(stream, openai.Stream)
    assert run_identity.receipt_of(stream) is None
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Lisbon."
    receipt, first = run_identity.receipt_of(stream), run_identity.receipt_of(whole)
    assert receipt is not None and first is not None and receipt.output == LISBON
    assert receipt.statement.output_digest == first.statement.output_digest
    assert receipt.identity == identity_of(server, request(stream=True))
    verify_receipt(receipt, keyring)
    assert len(events(captured, RECEIPT_EVENT_NAME)) == 2 and hook.stats.receipts == 2
    assert ri_openai.stats().receipts == 2  # the integration counts the receipts it handed to its responses
    assert all_from_the_hook(captured)


def test_async_calls_and_streams_get_hook_receipts(
    captured: Pipeline, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    aclient = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)

    async def ask(i: int) -> Any:
        reply = await aclient.chat.completions.create(
            **request(messages=[{"role": "user", "content": f"Q{i}?"}]), stream=i % 2 == 1
        )
        if i % 2 == 1:
            assert isinstance(reply, openai.AsyncStream)
            async for _ in reply:
                pass
        return reply

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(*(ask(i) for i in range(4)))
        finally:
            await aclient.close()

    replies = asyncio.run(main())
    for i, reply in enumerate(replies):
        receipt = run_identity.receipt_of(reply)
        assert receipt is not None and receipt.output == LISBON
        body = request(messages=[{"role": "user", "content": f"Q{i}?"}], stream=i % 2 == 1)
        assert receipt.identity == identity_of(server, body)
        verify_receipt(receipt, keyring)
    assert hook.stats.receipts == 4 and len(events(captured, RECEIPT_EVENT_NAME)) == 4
    assert all_from_the_hook(captured)


def test_anthropic_official_instrumentation_with_the_hook(
    pipeline: Pipeline, loaded: Any, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    """The same through opentelemetry-instrumentation-genai-anthropic: create, create(stream=True), stream()."""
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(
        tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logger_provider, completion_hook=loaded
    )
    ri_anthropic.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": QUESTION}]}
    try:
        aclient = anthropic.Anthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)
        message = aclient.messages.create(**body)
        stream = aclient.messages.create(**body, stream=True)
        assert isinstance(stream, anthropic.Stream)
        for _ in stream:
            pass
        with aclient.messages.stream(**body) as helper:
            assert "Lisbon" in helper.get_final_text()
        # The instrumentation detaches its span's context at a stream's end (after the captured call
        # returned): no captured declaration is left showing after the calls.
        assert current_declaration() is None
    finally:
        ri_anthropic.uninstrument()
        instrumentor.uninstrument()
    receipts = [run_identity.receipt_of(x) for x in (message, stream, helper)]
    assert all(r is not None for r in receipts)
    for receipt in receipts:
        assert receipt is not None
        verify_receipt(receipt, keyring)
        assert receipt.output[0]["parts"] == [{"type": "text", "content": "Lisbon."}]
    assert hook.stats.receipts == 3 and len(events(pipeline, RECEIPT_EVENT_NAME)) == 3
    assert all_from_the_hook(pipeline)
    assert ri_anthropic.stats().capture_failures == 0
    genai = [s for s in pipeline.spans() if "gen_ai.operation.name" in (s.attributes or {})]
    assert all(
        RUN_IDENTITY_ID in (s.attributes or {}) for s in genai if "genai.anthropic" in s.instrumentation_scope.name
    )


def test_output_messages_become_semantic_convention_json() -> None:
    """None fields are left out, bytes become base64, tool call arguments stay as given."""
    message = OutputMessage(
        role="assistant",
        parts=[
            TextPart(content="Here."),
            ToolCallRequestPart(arguments='{"tz": "WET"}', name="get_time", id=None),
            BlobPart(mime_type="image/png", modality="image", content=b"\x89PNG"),
        ],
        finish_reason="tool_call",
    )
    assert output_json(message) == {
        "role": "assistant",
        "parts": [
            {"type": "text", "content": "Here."},
            {"type": "tool_call", "name": "get_time", "arguments": '{"tz": "WET"}'},
            {"type": "blob", "mime_type": "image/png", "modality": "image", "content": "iVBORw=="},
        ],
        "finish_reason": "tool_call",
    }


def test_a_hook_failure_never_reaches_the_application(
    pipeline: Pipeline, server: LLMServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A receipt that cannot be made is logged once and counted; the call returns normally."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK", "run_identity")
    failing = RunIdentityCompletionHook(signer=_BrokenSigner())
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.tracer_provider, completion_hook=failing)
    try:
        with declare({"model": {"provider": "openai", "name": "gpt-4o-mini"}, "operation": "chat"}):
            reply = client(server).chat.completions.create(**request())
        with declare({"model": {"provider": "openai", "name": "gpt-4o-mini"}, "operation": "chat"}):
            client(server).chat.completions.create(**request())
    finally:
        instrumentor.uninstrument()
    assert reply.choices[0].message.content == "Lisbon."
    assert failing.stats.receipt_failures == 2
    assert len([r for r in caplog.records if "completion hook" in r.getMessage()]) == 1


def test_when_the_hook_cannot_sign_the_integration_does(
    pipeline: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """A hook that fails gives up its claim on the run: the integration signs it from the response it read."""
    failing = RunIdentityCompletionHook(signer=_BrokenSigner())
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logger_provider, completion_hook=failing
    )
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        reply = client(server).chat.completions.create(**request())
        assert failing.stats.receipt_failures == 1 and ri_openai.stats().receipts == 1
    finally:
        ri_openai.uninstrument()
        instrumentor.uninstrument()
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None and receipt.output == LISBON
    verify_receipt(receipt, keyring)
    (event,) = events(pipeline, RECEIPT_EVENT_NAME)
    assert event.instrumentation_scope is not None and event.instrumentation_scope.name == "run_identity.integrations"


class _BrokenSigner:
    key_id = "broken"

    def sign(self, data: bytes) -> bytes:
        raise RuntimeError("the HSM is unplugged")


def test_responses_create_streamed_and_the_stream_helper_get_hook_receipts(
    captured: Pipeline, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    """responses.create (whole, stream=True) and responses.stream(...): the hook signs each, once."""
    oai = client(server)
    whole = oai.responses.create(model="gpt-4o-mini", input=QUESTION)
    stream = oai.responses.create(model="gpt-4o-mini", input=QUESTION, stream=True)
    for _ in stream:
        pass
    with oai.responses.stream(model="gpt-4o-mini", input=QUESTION) as helper:
        assert helper.get_final_response().output_text == "Lisbon."
    receipts = [run_identity.receipt_of(x) for x in (whole, stream, helper)]
    for receipt in receipts:
        assert receipt is not None and receipt.output == LISBON
        verify_receipt(receipt, keyring)
    assert receipts[1] is not None and receipts[2] is not None and receipts[1].identity == receipts[2].identity
    assert hook.stats.receipts == 3 and len(events(captured, RECEIPT_EVENT_NAME)) == 3 and all_from_the_hook(captured)
    assert captured.processor.coverage.undeclared == 0 and captured.processor.coverage.identified == 3


def test_anthropic_async_calls_get_hook_receipts(
    pipeline: Pipeline, loaded: Any, hook: RunIdentityCompletionHook, server: LLMServer, keyring: Keyring
) -> None:
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(
        tracer_provider=pipeline.tracer_provider, logger_provider=pipeline.logger_provider, completion_hook=loaded
    )
    ri_anthropic.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": QUESTION}]}

    async def main() -> list[Any]:
        aclient = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)
        message = await aclient.messages.create(**body)
        stream = await aclient.messages.create(**body, stream=True)
        async for _ in stream:
            pass
        async with aclient.messages.stream(**body) as helper:
            assert await helper.get_final_text() == "Lisbon."
        await aclient.close()
        return [message, stream, helper]

    try:
        replies = asyncio.run(main())
    finally:
        ri_anthropic.uninstrument()
        instrumentor.uninstrument()
    for reply in replies:
        receipt = run_identity.receipt_of(reply)
        assert receipt is not None
        verify_receipt(receipt, keyring)
    assert hook.stats.receipts == 3 and all_from_the_hook(pipeline)
