"""Tests of run_identity.otel.processor: identity on declared GenAI spans, coverage, errors, strict mode."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import Pipeline
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from run_identity import (
    Composition,
    CompositionError,
    IdentitySpanProcessor,
    Keyring,
    SigningError,
    compute_identity,
    declare,
    prepare,
)
from run_identity.core.attributes import RUN_IDENTITY_ERROR, RUN_IDENTITY_ID, RUN_IDENTITY_SIGNATURE
from run_identity.core.keys import Ed25519Signer
from run_identity.core.statement import BindingStatement, decode_signature

MODEL = "gpt-4o-mini"


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    """A small valid chat composition in JSON form."""
    return {
        "model": {"provider": "openai", "name": MODEL},
        "operation": "chat",
        "instructions": [{"type": "text", "content": "Be brief."}],
        "messages": [{"role": "user", "parts": [{"type": "text", "content": text}]}],
        "parameters": {"temperature": 0.2},
        **extra,
    }


def identity_of(composition: dict[str, Any], salt: bytes = b"") -> str:
    return compute_identity(Composition.from_dict(composition), salt=salt).id


GENAI = {"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL}


def start_genai(pipeline: Pipeline, name: str = "chat gpt-4o-mini", **attributes: Any) -> None:
    with pipeline.tracer.start_as_current_span(name, attributes={**GENAI, **attributes}):
        pass


def assert_signed(span: ReadableSpan, keyring: Keyring) -> None:
    attributes = dict(span.attributes or {})
    context = span.get_span_context()
    assert context is not None
    statement = BindingStatement.from_span(attributes, f"{context.trace_id:032x}", f"{context.span_id:016x}")
    signature = decode_signature(attributes[RUN_IDENTITY_SIGNATURE])
    assert signature is not None
    assert keyring.verify(statement.key_id, signature, statement.signing_input())


def test_declared_genai_span_gets_the_identity_of_the_declared_composition(
    pipeline: Pipeline, keyring: Keyring
) -> None:
    """The GenAI span started inside declare() carries the composition's identity and a valid signature."""
    composition = chat()
    with declare(composition) as declaration:
        start_genai(pipeline)
    span = pipeline.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes[RUN_IDENTITY_ID] == identity_of(composition) == declaration.identity
    assert declaration.span_id == f"{span.context.span_id:016x}"
    assert_signed(span, keyring)


def test_composition_object_and_dict_give_the_same_identity(pipeline: Pipeline) -> None:
    """Declaring a Composition or its plain-dict form binds the same identity."""
    with declare(Composition.from_dict(chat())) as a:
        start_genai(pipeline)
    with declare(chat()) as b:
        start_genai(pipeline)
    assert a.identity == b.identity == identity_of(chat())


def test_other_spans_are_untouched(pipeline: Pipeline) -> None:
    """Spans without gen_ai.operation.name, around or inside the GenAI span, get no identity attributes."""
    tracer = pipeline.tracer
    with (
        declare(chat()),
        tracer.start_as_current_span("handler", attributes={"http.route": "/ask"}),
        tracer.start_as_current_span("chat gpt-4o-mini", attributes=GENAI),
        tracer.start_as_current_span("POST", attributes={"http.method": "POST"}),
    ):
        pass
    assert dict(pipeline.span("handler").attributes or {}) == {"http.route": "/ask"}
    assert dict(pipeline.span("POST").attributes or {}) == {"http.method": "POST"}
    assert pipeline.processor.coverage.genai_spans == 1


def test_a_declaration_binds_exactly_one_span(pipeline: Pipeline) -> None:
    """A second GenAI span in the same declare block is not covered and is counted as undeclared."""
    with declare(chat()):
        start_genai(pipeline, "first")
        start_genai(pipeline, "second")
    assert RUN_IDENTITY_ID in (pipeline.span("first").attributes or {})
    assert dict(pipeline.span("second").attributes or {}) == GENAI
    coverage = pipeline.processor.coverage
    assert (coverage.genai_spans, coverage.identified, coverage.undeclared) == (2, 1, 1)
    assert coverage.ratio == 0.5


def test_undeclared_genai_span_is_counted_and_left_alone(pipeline: Pipeline) -> None:
    """A GenAI span without a declaration keeps its attributes and is counted."""
    start_genai(pipeline)
    assert dict(pipeline.span("chat gpt-4o-mini").attributes or {}) == GENAI
    coverage = pipeline.processor.coverage
    assert (coverage.genai_spans, coverage.identified, coverage.undeclared, coverage.failed) == (1, 0, 1, 0)
    assert pipeline.manifests() == []


def test_declaration_skips_genai_spans_of_another_operation_or_model(pipeline: Pipeline) -> None:
    """An invoke_agent span or a call to another model does not take a chat declaration meant for MODEL."""
    agent = {"gen_ai.operation.name": "invoke_agent"}
    with (
        declare(chat()) as declaration,
        pipeline.tracer.start_as_current_span("invoke_agent", attributes=agent),
    ):
        start_genai(pipeline, "guard", **{"gen_ai.request.model": "guard-model"})
        start_genai(pipeline, "main")
    assert RUN_IDENTITY_ID not in (pipeline.span("invoke_agent").attributes or {})
    assert RUN_IDENTITY_ID not in (pipeline.span("guard").attributes or {})
    assert (pipeline.span("main").attributes or {})[RUN_IDENTITY_ID] == declaration.identity
    assert pipeline.processor.coverage.undeclared == 2


def test_genai_span_without_requested_model_still_matches(pipeline: Pipeline) -> None:
    """A span that does not state gen_ai.request.model is matched on the operation alone."""
    with (
        declare(chat()) as declaration,
        pipeline.tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat"}),
    ):
        pass
    assert (pipeline.span("chat").attributes or {})[RUN_IDENTITY_ID] == declaration.identity


def test_identity_comes_from_the_declaration_not_from_span_attributes(pipeline: Pipeline) -> None:
    """Span attributes that disagree with the composition do not change the identity."""
    with declare(chat()) as declaration:
        start_genai(pipeline, **{"gen_ai.request.temperature": 0.9, "gen_ai.request.max_tokens": 5})
    assert declaration.identity == identity_of(chat())


def test_nested_declarations_inner_first_then_outer(pipeline: Pipeline) -> None:
    """The innermost declaration applies inside its block; the outer one applies again after it."""
    with declare(chat("outer")) as outer:
        with declare(chat("inner")) as inner:
            start_genai(pipeline, "a")
        start_genai(pipeline, "b")
    assert (
        (pipeline.span("a").attributes or {})[RUN_IDENTITY_ID] == inner.identity == identity_of(chat("inner"))
    )
    assert (
        (pipeline.span("b").attributes or {})[RUN_IDENTITY_ID] == outer.identity == identity_of(chat("outer"))
    )


def test_declared_at_is_when_the_composition_was_declared(pipeline: Pipeline) -> None:
    """run_identity.declared_at is the declaration time, not later than the span's start."""
    with declare(chat()) as declaration:
        start_genai(pipeline)
    span = pipeline.span("chat gpt-4o-mini")
    assert span.start_time is not None
    assert declaration.declared_ns // 1000 <= span.start_time // 1000
    declared_at = (span.attributes or {})["run_identity.declared_at"]
    assert isinstance(declared_at, str) and declared_at.endswith("Z")


def test_prepared_components_give_the_same_identity(pipeline: Pipeline) -> None:
    """Instructions and tools prepared once bind the same identity as the raw values."""
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    raw = chat(tools=tools)
    prepared = {
        **raw,
        "instructions": prepare("instructions", raw["instructions"]),
        "tools": prepare("tools", tools),
    }
    with declare(prepared) as declaration:
        start_genai(pipeline)
    assert declaration.identity == identity_of(raw)


def test_prepared_components_are_not_canonicalized_again(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With instructions and tools prepared, on_start canonicalizes only the other components."""
    import run_identity.core.digest as digest_module

    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    raw = chat(tools=tools)
    prepared = {
        **raw,
        "instructions": prepare("instructions", raw["instructions"]),
        "tools": prepare("tools", tools),
    }
    paths: list[str] = []
    real = digest_module.canonicalize

    def recording(value: Any, path: str = "") -> bytes:
        paths.append(path)
        return real(value, path)

    monkeypatch.setattr(digest_module, "canonicalize", recording)
    with declare(prepared):
        start_genai(pipeline)
    assert paths and not [p for p in paths if p.startswith(("instructions", "tools"))]


def test_salt_blinds_the_identity(make_pipeline: Callable[..., Pipeline]) -> None:
    """A processor with a blinding salt binds the salted identity."""
    pipeline = make_pipeline(salt=b"deployment-salt")
    with declare(chat()) as declaration:
        start_genai(pipeline)
    assert declaration.identity == identity_of(chat(), salt=b"deployment-salt") != identity_of(chat())


def test_unidentifiable_composition_is_marked_counted_and_logged_once(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad composition never raises: the span gets run_identity.error; counted, and logged once."""
    bad = chat(parameters={"temperature": "hot"})
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        for name in ("one", "two"):
            with declare(bad) as declaration:
                start_genai(pipeline, name)
    for name in ("one", "two"):
        attributes = pipeline.span(name).attributes or {}
        assert RUN_IDENTITY_ID not in attributes
        assert (
            attributes[RUN_IDENTITY_ERROR]
            == "CompositionError: parameters.temperature: expected a number, got str"
        )
    assert declaration.error is not None and declaration.identity is None
    assert pipeline.processor.coverage.failed == 2
    assert len([r for r in caplog.records if "parameters.temperature" in r.getMessage()]) == 1
    assert pipeline.manifests() == []


def test_non_json_content_is_marked_with_its_path(pipeline: Pipeline) -> None:
    """NaN in a composition is rejected with the field path in run_identity.error."""
    with declare(chat(parameters={"temperature": float("nan")})):
        start_genai(pipeline)
    error = (pipeline.span("chat gpt-4o-mini").attributes or {})[RUN_IDENTITY_ERROR]
    assert isinstance(error, str) and "parameters.temperature" in error


def test_strict_mode_raises_into_the_caller(make_pipeline: Callable[..., Pipeline]) -> None:
    """With strict=True an unidentifiable composition raises from start_span."""
    pipeline = make_pipeline(strict=True)
    with declare(chat(parameters={"temperature": "hot"})), pytest.raises(CompositionError) as info:
        pipeline.tracer.start_span("chat", attributes=GENAI)
    assert info.value.path == "parameters.temperature"
    assert pipeline.processor.strict


class BrokenSigner:
    """A signer whose backend is down."""

    key_id = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

    def sign(self, data: bytes) -> bytes:
        raise OSError("HSM unreachable")


def test_failing_signer_is_marked_not_raised(make_pipeline: Callable[..., Pipeline]) -> None:
    """A signer that fails marks the span with a SigningError reason instead of raising."""
    pipeline = make_pipeline(signer_=BrokenSigner())
    with declare(chat()):
        start_genai(pipeline)
    error = (pipeline.span("chat gpt-4o-mini").attributes or {})[RUN_IDENTITY_ERROR]
    assert isinstance(error, str) and error.startswith("SigningError:")


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_failing_signer_raises_in_strict_mode(make_pipeline: Callable[..., Pipeline], background: bool) -> None:
    """In strict mode the SigningError reaches the caller: from start_span when signing inline, from end()
    when signing on the worker."""
    pipeline = make_pipeline(signer_=BrokenSigner(), strict=True, background_signing=background)
    with declare(chat()), pytest.raises(SigningError):
        pipeline.tracer.start_span("chat", attributes=GENAI).end()


@pytest.mark.parametrize(("signer", "salt"), [(object(), b""), (Ed25519Signer.generate(), "salt")])
def test_bad_constructor_arguments_raise_value_error(signer: Any, salt: Any) -> None:
    """A signer without key_id/sign or a non-bytes salt is a ValueError at construction."""
    with pytest.raises(ValueError):
        IdentitySpanProcessor(signer, salt=salt)


def test_threads_with_their_own_declarations(pipeline: Pipeline) -> None:
    """Concurrent threads each bind their own declaration to their own span."""
    results: dict[int, str | None] = {}

    def work(i: int) -> None:
        with declare(chat(f"thread {i}")) as declaration:
            start_genai(pipeline, f"span-{i}")
        results[i] = declaration.identity

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(16):
        assert (pipeline.span(f"span-{i}").attributes or {})[RUN_IDENTITY_ID] == results[i]
        assert results[i] == identity_of(chat(f"thread {i}"))
    assert pipeline.processor.coverage.identified == 16


def test_a_declaration_shared_across_threads_is_claimed_once(pipeline: Pipeline) -> None:
    """Threads that carry the same context race for one declaration; exactly one span wins it."""
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        start_genai(pipeline, f"span-{i}")

    with declare(chat()) as declaration, ThreadPoolExecutor(8) as pool:
        contexts = [contextvars.copy_context() for _ in range(8)]
        list(pool.map(lambda i: contexts[i].run(work, i), range(8)))
    bound = [s for s in pipeline.spans() if RUN_IDENTITY_ID in (s.attributes or {})]
    assert len(bound) == 1 and (bound[0].attributes or {})[RUN_IDENTITY_ID] == declaration.identity
    assert pipeline.processor.coverage.undeclared == 7


def test_declaration_follows_context_into_a_worker_thread(pipeline: Pipeline) -> None:
    """A span started in a thread that runs with the declaring context is bound."""
    with declare(chat()) as declaration:
        context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(start_genai, pipeline))
    worker.start()
    worker.join()
    assert (pipeline.span("chat gpt-4o-mini").attributes or {})[RUN_IDENTITY_ID] == declaration.identity


def test_asyncio_tasks_keep_their_own_declarations(pipeline: Pipeline) -> None:
    """Concurrent asyncio tasks each bind their own declaration, interleaved at await points."""

    async def call(i: int) -> str | None:
        with declare(chat(f"task {i}")) as declaration:
            await asyncio.sleep(0.001 * (5 - i))
            with pipeline.tracer.start_as_current_span(f"task-{i}", attributes=GENAI):
                await asyncio.sleep(0)
        return declaration.identity

    async def main() -> list[str | None]:
        return await asyncio.gather(*(call(i) for i in range(5)))

    identities = asyncio.run(main())
    for i, identity in enumerate(identities):
        assert identity == identity_of(chat(f"task {i}"))
        assert (pipeline.span(f"task-{i}").attributes or {})[RUN_IDENTITY_ID] == identity


def test_works_beside_batch_span_processor(signer: Ed25519Signer) -> None:
    """Spans exported through a BatchSpanProcessor carry the identity attributes."""
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    provider.add_span_processor(IdentitySpanProcessor(signer, emit_manifests=False))
    with (
        declare(chat()) as declaration,
        provider.get_tracer("t").start_as_current_span("chat", attributes=GENAI),
    ):
        pass
    provider.force_flush()
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})[RUN_IDENTITY_ID] == declaration.identity
    provider.shutdown()


def test_force_flush_also_flushes_the_manifests(pipeline: Pipeline) -> None:
    """The processor's force_flush flushes the manifests' LoggerProvider."""
    assert pipeline.processor.force_flush(1000) is True
    assert IdentitySpanProcessor(Ed25519Signer.generate(), emit_manifests=False).force_flush() is True


def test_statement_template_is_its_canonical_form(signer: Ed25519Signer) -> None:
    """The statement's fast canonical bytes equal RFC 8785 of its JSON form (the hot path relies on it)."""
    from run_identity import canonicalize
    from run_identity.core.statement import format_timestamp

    for ns in (0, 1_795_313_791_145_091_415, 1_795_313_791_999_999_999, 1_795_313_792_000_000_001):
        statement = BindingStatement(
            identity="sha256:" + "ab" * 32,
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            key_id=signer.key_id,
            declared_at=format_timestamp(ns),
        )
        assert statement.canonical() == canonicalize(statement.to_json())
    assert format_timestamp(1_795_313_791_999_999_999) == "2026-11-22T02:16:31.999999Z"
    assert format_timestamp(1_795_313_792_000_000_001) == "2026-11-22T02:16:32.000000Z"


class _DefectiveSpan:
    """Stands for a span whose attributes cannot be read (a defect somewhere below us)."""

    @property
    def attributes(self) -> Any:
        raise RuntimeError("attributes unavailable")


def test_on_start_never_raises_even_on_a_defect(
    make_pipeline: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected failure inside on_start is logged, not raised (and raised in strict mode)."""
    lenient = make_pipeline().processor
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        lenient.on_start(_DefectiveSpan())  # type: ignore[arg-type]
    assert "attributes unavailable" in caplog.text
    with pytest.raises(RuntimeError):
        make_pipeline(strict=True).processor.on_start(_DefectiveSpan())  # type: ignore[arg-type]
