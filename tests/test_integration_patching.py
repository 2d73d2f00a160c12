"""The patching never breaks the application, and streams stay the clients' own objects.

Real openai/anthropic clients against the local canned server; the library changes that patching must
survive (a class that moved, a renamed private attribute) are simulated on the real classes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anthropic
import openai
import pytest
from anthropic.lib.streaming import AsyncMessageStream, AsyncMessageStreamManager, MessageStream, MessageStreamManager
from conftest import Pipeline
from llm_servers import API_KEY, LLMServer, official_openai_instrumentation, serve

import run_identity
from run_identity import Keyring
from run_identity.core.attributes import RUN_IDENTITY_ID
from run_identity.core.receipt import verify_receipt
from run_identity.integrations import anthropic as ri_anthropic
from run_identity.integrations import openai as ri_openai

OpenAIInstrumentor, INSTRUMENTATION_SCOPE = official_openai_instrumentation()

MESSAGES = [{"role": "user", "content": "What is the capital of Portugal?"}]
CLAUDE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": MESSAGES}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with serve() as running:
        yield running


@pytest.fixture
def both(pipeline: Pipeline) -> Iterator[Pipeline]:
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    ri_anthropic.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        yield pipeline
    finally:
        ri_openai.uninstrument()
        ri_anthropic.uninstrument()


def openai_client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)


def claude(server: LLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_streams_are_the_clients_own_objects(both: Pipeline, server: LLMServer, keyring: Keyring) -> None:
    """Sync and async, openai and anthropic: the stream returned is of the client's class, and gets a receipt."""
    stream = openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert type(stream) is openai.Stream
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Lisbon."
    raw = claude(server).messages.create(**CLAUDE, stream=True)
    assert type(raw) is anthropic.Stream
    for _ in raw:
        pass
    manager = claude(server).messages.stream(**CLAUDE)
    assert isinstance(manager, MessageStreamManager)
    with manager as helper:
        assert type(helper) is MessageStream
        assert helper.get_final_text() == "Lisbon."

    async def asynchronous() -> list[Any]:
        aopenai = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)
        aclaude = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)
        astream = await aopenai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert type(astream) is openai.AsyncStream
        async for _ in astream:
            pass
        araw = await aclaude.messages.create(**CLAUDE, stream=True)
        assert type(araw) is anthropic.AsyncStream
        async for _ in araw:
            pass
        amanager = aclaude.messages.stream(**CLAUDE)
        assert isinstance(amanager, AsyncMessageStreamManager)
        async with amanager as ahelper:
            assert type(ahelper) is AsyncMessageStream
            assert await ahelper.get_final_text() == "Lisbon."
        await aopenai.close()
        await aclaude.close()
        return [astream, araw, ahelper]

    for obj in [stream, raw, helper, *asyncio.run(asynchronous())]:
        receipt = run_identity.receipt_of(obj)
        assert receipt is not None, type(obj)
        verify_receipt(receipt, keyring)
    assert ri_openai.stats().receipts == 2 and ri_anthropic.stats().receipts == 4


def test_under_an_instrumentation_the_stream_is_its_proxy_of_the_clients_stream(
    pipeline: Pipeline, server: LLMServer, keyring: Keyring
) -> None:
    """Under genai-openai (no completion hook) the integration adds no layer of its own and signs at the end."""
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.tracer_provider)
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
    try:
        stream = openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert type(stream).__module__.startswith("opentelemetry.")  # the instrumentation's wrapper, not ours
        if INSTRUMENTATION_SCOPE == "genai.openai":  # a wrapt proxy: isinstance sees the client's class
            assert isinstance(stream, openai.Stream) and type(stream.__wrapped__) is openai.Stream
        for _ in stream:
            pass
    finally:
        ri_openai.uninstrument()
        instrumentor.uninstrument()
    receipt = run_identity.receipt_of(stream)
    assert receipt is not None
    verify_receipt(receipt, keyring)
    (span,) = pipeline.spans()
    assert receipt.statement.span_id == f"{span.context.span_id:016x}" and RUN_IDENTITY_ID in (span.attributes or {})


def test_a_method_not_where_expected_is_logged_once_and_runs_unpatched(
    pipeline: Pipeline, server: LLMServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A class that is not there any more and a module that moved: one warning each; those calls run as they are."""
    chat, async_chat, *others = ri_openai.TARGETS
    targets = (
        replace(chat, owner="CompletionsThatMoved"),
        replace(async_chat, module="openai.resources.chat.moved_away"),
        *others,
    )
    monkeypatch.setattr(ri_openai._INTEGRATION, "targets", targets)
    caplog.set_level(logging.WARNING, logger="run_identity")
    for _ in range(2):
        assert ri_openai.instrument(tracer_provider=pipeline.tracer_provider, strict=True)
        reply = openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.choices[0].message.content == "Lisbon."
        assert run_identity.receipt_of(reply) is None  # unpatched: no identity, no receipt
        response = openai_client(server).responses.create(model="gpt-4o-mini", input="Capital of Portugal?")
        assert run_identity.receipt_of(response) is not None  # the methods that were found are patched
        ri_openai.uninstrument()
    assert len(warnings_about(caplog, "CompletionsThatMoved")) == 1
    assert len(warnings_about(caplog, "moved_away")) == 1
    assert not pipeline.processor.coverage.failed


def test_a_library_that_is_not_installed_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from run_identity.integrations._patch import Integration

    chat = ri_openai.TARGETS[0]
    missing = Integration("nothing", (replace(chat, module="not_an_installed_library.resources"),))
    assert missing.instrument(own_span=None) is False
    assert not warnings_about(caplog, "not_an_installed_library")


def test_a_stream_whose_item_iterator_was_renamed_runs_unobserved(
    both: Pipeline, server: LLMServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client release renaming the stream's private ``_iterator``: one warning, streams work, no receipts."""
    init = openai.Stream.__init__

    def renamed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._items = self.__dict__.pop("_iterator")

    def iterate(self: Any) -> Iterator[Any]:
        yield from self._items

    monkeypatch.setattr(openai.Stream, "__init__", renamed_init)
    monkeypatch.setattr(openai.Stream, "__next__", lambda self: self._items.__next__())
    monkeypatch.setattr(openai.Stream, "__iter__", iterate)
    caplog.set_level(logging.WARNING, logger="run_identity")
    for _ in range(2):
        stream = openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert type(stream) is openai.Stream
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Lisbon."
        assert run_identity.receipt_of(stream) is None
    assert len(warnings_about(caplog, "cannot observe a Stream")) == 1
    assert len(both.spans()) == 2  # the spans started for the calls were ended all the same
    assert ri_openai.stats().receipt_failures == 2


def test_a_failing_accumulator_loses_the_receipt_not_the_stream(
    pipeline: Pipeline, server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from run_identity.integrations import _openai_output

    def broken(self: Any, chunk: Any) -> None:
        raise ValueError("a chunk of a new shape")

    monkeypatch.setattr(_openai_output.ChatAccumulator, "add", broken)
    ri_openai.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        stream = openai_client(server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Lisbon."
    finally:
        ri_openai.uninstrument()
    assert run_identity.receipt_of(stream) is None
    assert len(pipeline.spans()) == 1


def test_an_observed_stream_that_is_dropped_is_freed_by_reference_counting(both: Pipeline, server: LLMServer) -> None:
    """Observing a stream adds no reference cycle: anthropic's streams rely on refcounting to close a dropped one."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        stream = claude(server).messages.create(**CLAUDE, stream=True)
        next(iter(stream))  # read a little, then drop it
        ref = weakref.ref(stream)
        del stream
        assert ref() is None
    finally:
        gc.enable()
