"""Tests of run_identity.declare: context manager and decorator, context propagation, claiming once."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Pipeline
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from run_identity import Composition, Declaration, UnclaimedDeclarationError, declare, prepare
from run_identity.core.attributes import RUN_IDENTITY_ID
from run_identity.otel.declare import current_declaration

GENAI = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m-1"}


def chat(text: str = "hi") -> dict[str, Any]:
    """A minimal valid composition."""
    return {
        "model": {"provider": "openai", "name": "m-1"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": text}]}],
    }


def test_context_manager_activates_and_restores() -> None:
    """Inside the block the declaration is current; after it, the previous state is back."""
    assert current_declaration() is None
    with declare(chat()) as declaration:
        assert current_declaration() is declaration
        assert not declaration.claimed
    assert current_declaration() is None


def test_declaration_reads_operation_model_and_provider() -> None:
    """The declaration knows the operation, model and provider it applies to, from dicts or Compositions."""
    for composition in (chat(), Composition.from_dict(chat())):
        declaration = Declaration(composition)
        assert (declaration.operation, declaration.model, declaration.provider) == ("chat", "m-1", "openai")


def test_declaration_with_prepared_model_reads_its_value() -> None:
    """A prepared model component is read through its value."""
    declaration = Declaration({**chat(), "model": prepare("model", {"provider": "p", "name": "n"})})
    assert (declaration.model, declaration.provider) == ("n", "p")


def test_declare_never_validates_or_raises() -> None:
    """Declaring something that is not a composition does not raise; on_start reports it."""
    with declare({"model": 42, "operation": None}) as declaration:
        assert declaration.operation is None and declaration.model is None
    with declare({}) as empty:
        assert empty.applies_to("chat", "any")


def test_applies_to_operation_and_model() -> None:
    """A declaration applies to spans with its operation and, when the span names one, its model."""
    declaration = Declaration(chat())
    assert declaration.applies_to("chat", "m-1")
    assert declaration.applies_to("chat", None)
    assert not declaration.applies_to("embeddings", "m-1")
    assert not declaration.applies_to("chat", "m-2")


def test_claim_succeeds_exactly_once_across_threads() -> None:
    """Among many threads claiming one declaration, exactly one succeeds."""
    declaration = Declaration(chat())
    barrier = threading.Barrier(16)
    wins: list[bool] = []

    def claim() -> None:
        barrier.wait()
        wins.append(declaration.claim())

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and declaration.claimed


def test_decorator_declares_afresh_for_each_call(pipeline: Pipeline) -> None:
    """A decorated function binds a new declaration (same identity, new span) on every call."""

    @declare(chat())
    def call(name: str) -> Declaration | None:
        with pipeline.tracer.start_as_current_span(name, attributes=GENAI):
            pass
        return current_declaration()

    first, second = call("a"), call("b")
    assert first is not None and second is not None and first is not second
    assert first.identity == second.identity
    assert (pipeline.span("a").attributes or {})[RUN_IDENTITY_ID] == first.identity
    assert (pipeline.span("b").attributes or {})[RUN_IDENTITY_ID] == second.identity
    assert call.__name__ == "call"


def test_decorator_on_async_function(pipeline: Pipeline) -> None:
    """A decorated coroutine function keeps its declaration across awaits."""

    @declare(chat("async"))
    async def call() -> Declaration | None:
        await asyncio.sleep(0)
        with pipeline.tracer.start_as_current_span("async", attributes=GENAI):
            await asyncio.sleep(0)
        return current_declaration()

    declaration = asyncio.run(call())
    assert declaration is not None and declaration.identity is not None
    assert (pipeline.span("async").attributes or {})[RUN_IDENTITY_ID] == declaration.identity
    assert current_declaration() is None


def test_same_declare_object_can_be_entered_again() -> None:
    """One declare object used twice in sequence makes two independent declarations."""
    manager = declare(chat())
    with manager as first:
        pass
    with manager as second:
        pass
    assert first is not second


def test_repr_names_state_not_content() -> None:
    """The repr shows operation, model and state, never the composition's content."""
    text = repr(Declaration(chat("a secret prompt")))
    assert "pending" in text and "m-1" in text and "secret" not in text


# --- declarations no span claims --------------------------------------------------------------------------


def genai_span(pipeline: Pipeline, name: str, *, operation: str = "chat", model: str = "m-1") -> Any:
    """A GenAI span started as current in ``pipeline`` (a context manager)."""
    attributes = {"gen_ai.operation.name": operation, "gen_ai.request.model": model}
    return pipeline.tracer.start_as_current_span(name, attributes=attributes)


def unclaimed_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "claimed by no span" in r.getMessage()]


def test_a_typo_in_the_operation_is_counted_and_logged_once_naming_both(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """A declared operation no span has ("caht") leaves the declaration unclaimed: counted each time, logged
    once, the reason naming the declared and the started operation."""
    caplog.set_level(logging.WARNING, logger="run_identity")
    for name in ("a", "b"):
        with declare({**chat(), "operation": "caht"}) as declaration, genai_span(pipeline, name):
            pass
        assert not declaration.claimed and declaration.identity is None
    coverage = pipeline.processor.coverage
    assert coverage.declarations_unclaimed == 2 and coverage.undeclared == 2 and coverage.genai_spans == 2
    (message,) = unclaimed_logs(caplog)
    assert "another operation or model than declared" in message
    assert "declared operation 'caht', model 'm-1'" in message and "started: operation 'chat', model 'm-1'" in message


def test_a_model_other_than_the_spans_is_reported(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    """The span requested another model than declared: reported with both names."""
    caplog.set_level(logging.WARNING, logger="run_identity")
    with declare(chat()), genai_span(pipeline, "s", model="m-2"):
        pass
    assert pipeline.processor.coverage.declarations_unclaimed == 1
    (message,) = unclaimed_logs(caplog)
    assert "model 'm-1'" in message and "started: operation 'chat', model 'm-2'" in message


def test_no_genai_span_in_the_block_is_reported_to_the_global_providers_processor(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GenAI span started (a plain span does not count): the processor of the global TracerProvider is
    told, with that reason; without a global identity processor nothing is counted and nothing raises."""
    caplog.set_level(logging.WARNING, logger="run_identity")
    with declare(chat()):
        pass  # no global provider with an identity processor yet: nobody to tell
    assert pipeline.processor.coverage.declarations_unclaimed == 0
    monkeypatch.setattr(trace_api, "_TRACER_PROVIDER", pipeline.tracer_provider)
    with declare(chat()), pipeline.tracer.start_as_current_span("plain"):
        pass
    assert pipeline.processor.coverage.declarations_unclaimed == 1
    (message,) = unclaimed_logs(caplog)
    assert "no GenAI span started in the block (declared operation 'chat', model 'm-1')" in message


def test_strict_raises_when_the_block_exits(make_pipeline: Callable[..., Pipeline]) -> None:
    """A strict processor raises UnclaimedDeclarationError from the block's exit (also for a decorated
    function), after counting it."""
    strict = make_pipeline(strict=True)
    with (
        pytest.raises(UnclaimedDeclarationError, match="'caht'") as raised,
        declare({**chat(), "operation": "caht"}),
        genai_span(strict, "s"),
    ):
        pass
    assert "another operation or model" in raised.value.reason

    @declare(chat("decorated"))
    def call() -> None:
        with genai_span(strict, "t", operation="embeddings"):
            pass

    with pytest.raises(UnclaimedDeclarationError):
        call()
    assert strict.processor.coverage.declarations_unclaimed == 2


def test_claimed_declarations_and_failed_blocks_are_not_reported(make_pipeline: Callable[..., Pipeline]) -> None:
    """A claimed declaration is not reported, nor one whose block raised (the exception is the report)."""
    strict = make_pipeline(strict=True)
    with declare(chat()) as declaration, strict.tracer.start_as_current_span("s", attributes=GENAI):
        pass
    assert declaration.identity is not None
    with pytest.raises(KeyError), declare({**chat(), "operation": "caht"}), genai_span(strict, "t"):
        raise KeyError("the call failed")
    assert strict.processor.coverage.declarations_unclaimed == 0


def test_a_span_the_sampler_dropped_still_names_its_operation(
    make_pipeline: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mismatching GenAI span that the sampler drops never reaches the processor; the IdentitySampler notes
    it, so the reason still names it (told to the global provider's processor)."""
    caplog.set_level(logging.WARNING, logger="run_identity")
    dropping = make_pipeline(sampler=ALWAYS_OFF)
    monkeypatch.setattr(trace_api, "_TRACER_PROVIDER", dropping.tracer_provider)
    with declare({**chat(), "operation": "caht"}), dropping.tracer.start_as_current_span("s", attributes=GENAI):
        pass
    assert dropping.processor.coverage.declarations_unclaimed == 1
    (message,) = unclaimed_logs(caplog)
    assert "started: operation 'chat', model 'm-1'" in message
