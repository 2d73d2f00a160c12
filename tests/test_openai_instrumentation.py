"""Beside real instrumentation: the official OpenAI instrumentation's own span carries our identity."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest
from conftest import OpenAIServer, Pipeline
from llm_servers import official_openai_instrumentation
from opentelemetry.sdk.trace import ReadableSpan

from run_identity import Composition, Keyring, Manifest, compute_identity, declare
from run_identity.core.attributes import RUN_IDENTITY_ID, RUN_IDENTITY_SIGNATURE
from run_identity.core.statement import BindingStatement, decode_signature

OpenAIInstrumentor, INSTRUMENTATION_SCOPE = official_openai_instrumentation()

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "zero_code" / "app.py"


def load_example() -> ModuleType:
    """The zero-code example module (its composition and request builders are reused here)."""
    spec = importlib.util.spec_from_file_location("zero_code_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zero_code_app"] = module
    spec.loader.exec_module(module)
    return module


app = load_example()


@pytest.fixture
def instrumented(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The OpenAI instrumentation on the test pipeline's TracerProvider, removed afterwards."""
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=pipeline.tracer_provider)
    try:
        yield pipeline
    finally:
        instrumentor.uninstrument()


def instrumentation_span(pipeline: Pipeline) -> ReadableSpan:
    (span,) = [
        s for s in pipeline.spans() if s.instrumentation_scope and INSTRUMENTATION_SCOPE in s.instrumentation_scope.name
    ]
    return span


def check_span(span: ReadableSpan, composition: dict[str, Any], keyring: Keyring) -> None:
    """The instrumentation's span carries the declared composition's identity with a valid signature."""
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-4o-mini"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes[RUN_IDENTITY_ID] == compute_identity(Composition.from_dict(composition)).id
    statement = BindingStatement.from_span(attributes, f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    signature = decode_signature(attributes[RUN_IDENTITY_SIGNATURE])
    assert signature is not None and keyring.verify(statement.key_id, signature, statement.signing_input())


def test_instrumented_openai_call_carries_the_declared_identity(
    instrumented: Pipeline, openai_server: OpenAIServer, keyring: Keyring
) -> None:
    """A real openai client call, instrumented by openai-v2, gets the identity of the declared composition."""
    client = openai.OpenAI(api_key="sk-test-not-a-key", base_url=openai_server.base_url, max_retries=0)
    request = app.openai_request("What is the capital of Portugal?")
    composition = app.build_composition(request, client)
    with declare(composition) as declaration:
        reply = client.chat.completions.create(**request)
    assert reply.choices[0].message.content == "Lisbon."
    span = instrumentation_span(instrumented)
    check_span(span, composition, keyring)
    assert declaration.identity == (span.attributes or {})[RUN_IDENTITY_ID]
    # What was sent is what was declared.
    (sent,) = openai_server.requests
    assert sent["messages"] == [
        {"role": "system", "content": app.SYSTEM},
        {"role": "user", "content": "What is the capital of Portugal?"},
    ]
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["seed"]) == (
        "gpt-4o-mini",
        0.0,
        64,
        7,
    )
    (record,) = instrumented.manifests()
    assert isinstance(record.log_record.body, str)
    manifest = Manifest.from_json(record.log_record.body)
    assert manifest.identity == declaration.identity and manifest.composition_json() == composition
    assert record.log_record.span_id == span.context.span_id


def test_instrumented_async_openai_calls_keep_their_own_identities(
    instrumented: Pipeline, openai_server: OpenAIServer, keyring: Keyring
) -> None:
    """Concurrent AsyncOpenAI calls each bind the composition declared in their own task."""
    client = openai.AsyncOpenAI(api_key="sk-test-not-a-key", base_url=openai_server.base_url, max_retries=0)
    questions = [f"Capital of country {i}?" for i in range(4)]

    async def ask(question: str) -> str | None:
        request = app.openai_request(question)
        with declare(app.build_composition(request, client)) as declaration:
            await client.chat.completions.create(**request)
        return declaration.identity

    async def main() -> list[str | None]:
        try:
            return await asyncio.gather(*(ask(q) for q in questions))
        finally:
            await client.close()

    identities = asyncio.run(main())
    spans = [
        s
        for s in instrumented.spans()
        if s.instrumentation_scope and INSTRUMENTATION_SCOPE in s.instrumentation_scope.name
    ]
    assert len(spans) == 4
    by_identity = {(s.attributes or {})[RUN_IDENTITY_ID]: s for s in spans}
    for question, identity in zip(questions, identities, strict=True):
        composition = app.build_composition(app.openai_request(question), client)
        assert identity == compute_identity(Composition.from_dict(composition)).id
        check_span(by_identity[identity], composition, keyring)


def test_undeclared_instrumented_call_is_counted_not_touched(
    instrumented: Pipeline, openai_server: OpenAIServer
) -> None:
    """Without a declaration the instrumentation's span is left as it is and counted in coverage."""
    client = openai.OpenAI(api_key="sk-test-not-a-key", base_url=openai_server.base_url, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    span = instrumentation_span(instrumented)
    assert not [k for k in (span.attributes or {}) if k.startswith("run_identity.")]
    coverage = instrumented.processor.coverage
    assert (coverage.genai_spans, coverage.undeclared, coverage.ratio) == (1, 1, 0.0)
