"""Tests of run_identity.declare: context manager and decorator, context propagation, claiming once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from conftest import Pipeline

from run_identity import Composition, Declaration, declare, prepare
from run_identity.attributes import RUN_IDENTITY_ID
from run_identity.declare import current_declaration

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
