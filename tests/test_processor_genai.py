"""Tests of start_genai_span (our own GenAI span) and IdentitySampler (declared spans keep recording)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Pipeline
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased
from opentelemetry.trace import SpanKind

from run_identity import Composition, IdentitySampler, compute_identity, declare, start_genai_span
from run_identity.core.attributes import RUN_IDENTITY_ERROR, RUN_IDENTITY_ID


def composition(**parameters: Any) -> dict[str, Any]:
    """A chat composition with the given parameters and an endpoint."""
    return {
        "model": {"provider": "openai", "name": "gpt-4o", "endpoint": "https://llm.example:8443/v1"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "hello"}]}],
        "parameters": parameters,
    }


def test_start_genai_span_names_and_attributes_by_semantic_conventions(pipeline: Pipeline) -> None:
    """The span is '{operation} {model}', CLIENT, with the gen_ai request attributes from the composition."""
    declared = composition(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_tokens=100,
        seed=7,
        stop_sequences=["\n\n"],
        frequency_penalty=0.5,
        presence_penalty=0.1,
        choice_count=2,
        output_type="json",
        response_format={"type": "json_object"},
    )
    with start_genai_span(declared, tracer_provider=pipeline.tracer_provider) as span:
        assert span.is_recording()
    (finished,) = pipeline.spans()
    assert finished.name == "chat gpt-4o"
    assert finished.kind is SpanKind.CLIENT
    attributes = dict(finished.attributes or {})
    assert {k: v for k, v in attributes.items() if not k.startswith("run_identity.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.top_k": 40,
        "gen_ai.request.max_tokens": 100,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("\n\n",),
        "gen_ai.request.frequency_penalty": 0.5,
        "gen_ai.request.presence_penalty": 0.1,
        "gen_ai.request.choice.count": 2,
        "gen_ai.output.type": "json",
        "server.address": "llm.example",
        "server.port": 8443,
    }
    assert attributes[RUN_IDENTITY_ID] == compute_identity(Composition.from_dict(declared)).id


def test_start_genai_span_adds_caller_attributes_and_is_current(pipeline: Pipeline) -> None:
    """Extra attributes are added, the span is current inside the block, and children are not bound."""
    with (
        start_genai_span(
            Composition.from_dict(composition()),
            tracer_provider=pipeline.tracer_provider,
            attributes={"app.user": "u1"},
        ),
        pipeline.tracer.start_as_current_span("child"),
    ):
        pass
    parent = pipeline.span("chat gpt-4o")
    child = pipeline.span("child")
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert (parent.attributes or {})["app.user"] == "u1"
    assert RUN_IDENTITY_ID not in (child.attributes or {})


def test_start_genai_span_records_exceptions(pipeline: Pipeline) -> None:
    """An exception in the block is recorded on the span and re-raised."""
    with (
        pytest.raises(RuntimeError),
        start_genai_span(composition(), tracer_provider=pipeline.tracer_provider),
    ):
        raise RuntimeError("model down")
    (span,) = pipeline.spans()
    assert span.events and span.events[0].name == "exception"
    assert RUN_IDENTITY_ID in (span.attributes or {})


def test_start_genai_span_does_not_use_an_outer_declaration(pipeline: Pipeline) -> None:
    """Inside an unrelated declare block, start_genai_span binds its own composition, not the pending one."""
    with declare({**composition(), "messages": []}) as outer:
        with start_genai_span(composition(), tracer_provider=pipeline.tracer_provider):
            pass
        assert not outer.claimed
    assert (pipeline.spans()[0].attributes or {})[RUN_IDENTITY_ID] == compute_identity(
        Composition.from_dict(composition())
    ).id


def test_start_genai_span_with_an_invalid_composition_marks_the_span(pipeline: Pipeline) -> None:
    """A composition without operation still gets a span, marked with run_identity.error."""
    with start_genai_span(
        {"model": {"provider": "p", "name": "m"}}, tracer_provider=pipeline.tracer_provider
    ):
        pass
    (span,) = pipeline.spans()
    assert span.name == "m"
    assert "operation" in str((span.attributes or {})[RUN_IDENTITY_ERROR])


def test_sampler_keeps_dropped_declared_genai_spans_recording(make_pipeline: Callable[..., Pipeline]) -> None:
    """With a sampler that drops everything, a declared GenAI span records unsampled and gets its identity."""
    pipeline = make_pipeline(sampler=ALWAYS_OFF)
    with (
        declare(composition()) as declaration,
        pipeline.tracer.start_as_current_span(
            "chat gpt-4o", attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
        ) as span,
    ):
        assert span.is_recording()
        assert not span.get_span_context().trace_flags.sampled
        assert span.attributes is not None and span.attributes[RUN_IDENTITY_ID] == declaration.identity
    assert pipeline.spans() == []  # unsampled: not exported
    assert declaration.identity is not None


def test_sampler_keeps_dropping_everything_else(make_pipeline: Callable[..., Pipeline]) -> None:
    """Undeclared GenAI spans, non-GenAI spans and spans of another operation stay dropped."""
    pipeline = make_pipeline(sampler=ALWAYS_OFF)
    genai = {"gen_ai.operation.name": "chat"}
    assert not pipeline.tracer.start_span("chat", attributes=genai).is_recording()
    with declare(composition()):
        assert not pipeline.tracer.start_span("db").is_recording()
        assert not pipeline.tracer.start_span(
            "embed", attributes={"gen_ai.operation.name": "embeddings"}
        ).is_recording()
    with declare(composition()) as used:
        pipeline.tracer.start_span("chat", attributes=genai).end()
        assert used.claimed
        assert not pipeline.tracer.start_span("chat", attributes=genai).is_recording()


def test_sampler_passes_through_what_the_delegate_samples() -> None:
    """Decisions other than DROP are the delegate's own; the description names the delegate."""
    sampler = IdentitySampler(ALWAYS_ON)
    assert sampler.should_sample(None, 1, "x").decision is Decision.RECORD_AND_SAMPLE
    assert sampler.get_description() == "IdentitySampler{AlwaysOnSampler}"
    assert isinstance(IdentitySampler().delegate, ParentBased)
