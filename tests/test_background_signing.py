"""Signing off the application's thread: the signature still reaches every span before it is exported."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Pipeline
from opentelemetry.sdk.trace import ReadableSpan

from run_identity import Keyring, declare
from run_identity.core.attributes import RUN_IDENTITY_ERROR, RUN_IDENTITY_ID, RUN_IDENTITY_SIGNATURE
from run_identity.core.keys import Ed25519Signer
from run_identity.core.manifest import Manifest
from run_identity.core.statement import BindingStatement, decode_signature
from run_identity.otel._background import Job, SigningWorker, ending_attach_works

GENAI = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}


def chat(text: str = "hello") -> dict[str, Any]:
    return {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": text}]}],
    }


class GatedSigner:
    """Signs with a real key, but only once ``gate`` is set; records the threads it signed on."""

    def __init__(self, inner: Ed25519Signer) -> None:
        self.inner = inner
        self.key_id = inner.key_id
        self.gate = threading.Event()
        self.threads: list[str] = []

    def sign(self, data: bytes) -> bytes:
        self.gate.wait(10)
        self.threads.append(threading.current_thread().name)
        return self.inner.sign(data)


def assert_verifies(span: ReadableSpan, keyring: Keyring) -> None:
    attributes = span.attributes or {}
    context = span.get_span_context()
    assert context is not None
    statement = BindingStatement.from_span(attributes, format(context.trace_id, "032x"), format(context.span_id, "016x"))
    signature = decode_signature(attributes.get(RUN_IDENTITY_SIGNATURE))
    assert signature is not None
    assert keyring.verify(statement.key_id, signature, statement.signing_input())


def test_the_sdk_lets_the_hook_attach() -> None:
    """The pinned SDK calls _on_ending and keeps what it sets, so background signing is available."""
    assert ending_attach_works()


def test_background_is_the_default_for_signers_other_than_a_key_file(signer: Ed25519Signer) -> None:
    """A local Ed25519 key signs inline; any other signer (an HSM, a KMS) signs on the worker."""
    from run_identity import IdentitySpanProcessor

    assert not IdentitySpanProcessor(signer, emit_manifests=False).background_signing
    assert IdentitySpanProcessor(GatedSigner(signer), emit_manifests=False).background_signing
    assert IdentitySpanProcessor(signer, emit_manifests=False, background_signing=True).background_signing


def test_signature_is_made_on_the_worker_and_attached_at_end(
    make_pipeline: Callable[..., Pipeline], signer: Ed25519Signer, keyring: Keyring
) -> None:
    """on_start sets the identity at once; the signature, made on the worker, is on the exported span."""
    gated = GatedSigner(signer)
    pipeline = make_pipeline(signer_=gated)
    assert pipeline.processor.background_signing
    with declare(chat()):
        span = pipeline.tracer.start_span("chat gpt-4o-mini", attributes=GENAI)
    live = span.attributes or {}
    assert RUN_IDENTITY_ID in live and RUN_IDENTITY_SIGNATURE not in live  # the signer is still held
    threading.Timer(0.05, gated.gate.set).start()
    span.end()  # waits for the worker, then attaches the signature
    assert gated.threads == ["run_identity-signer"]
    (exported,) = pipeline.span_exporter.get_finished_spans()
    assert_verifies(exported, keyring)
    (record,) = pipeline.log_exporter.get_finished_logs()
    manifest = Manifest.from_json(str(record.log_record.body).encode())
    assert manifest.signature == decode_signature((exported.attributes or {})[RUN_IDENTITY_SIGNATURE])


def test_a_long_call_finds_its_signature_ready(
    make_pipeline: Callable[..., Pipeline], signer: Ed25519Signer, keyring: Keyring
) -> None:
    """When the call outlasts the signature (the usual case), ending the span does not wait; the manifest
    goes out when the span ends."""
    pipeline = make_pipeline(background_signing=True)
    with declare(chat()):
        span = pipeline.tracer.start_span("chat gpt-4o-mini", attributes=GENAI)
    assert pipeline.processor.force_flush()  # the worker is done: the signature is made
    assert pipeline.processor.coverage.identified == 1
    assert pipeline.log_exporter.get_finished_logs() == ()
    started = time.perf_counter()
    span.end()
    assert time.perf_counter() - started < 5  # generous: only shows it did not wait for the timeout
    (exported,) = pipeline.span_exporter.get_finished_spans()
    assert_verifies(exported, keyring)
    assert len(pipeline.log_exporter.get_finished_logs()) == 1


def test_a_signer_slower_than_the_timeout_marks_the_span(
    make_pipeline: Callable[..., Pipeline], signer: Ed25519Signer, keyring: Keyring
) -> None:
    """A span that ends before a stuck signer answers waits signing_timeout, then carries the reason; the
    manifest still goes out once the signer answers."""
    gated = GatedSigner(signer)
    pipeline = make_pipeline(signer_=gated, signing_timeout=0.05)
    with declare(chat()):
        pipeline.tracer.start_span("chat gpt-4o-mini", attributes=GENAI).end()
    (exported,) = pipeline.span_exporter.get_finished_spans()
    attributes = exported.attributes or {}
    assert RUN_IDENTITY_SIGNATURE not in attributes
    assert "not ready when the span ended" in str(attributes[RUN_IDENTITY_ERROR])
    # The error replaces the statement put on the span at its start (spec §9.1: never both).
    assert not any(k.startswith("run_identity.") and k != RUN_IDENTITY_ERROR for k in attributes)
    assert pipeline.log_exporter.get_finished_logs() == ()
    gated.gate.set()
    assert pipeline.processor.force_flush()  # the late signature's manifest goes out
    (record,) = pipeline.log_exporter.get_finished_logs()
    manifest = Manifest.from_json(str(record.log_record.body).encode())
    assert keyring.verify(manifest.statement.key_id, manifest.signature, manifest.statement.signing_input())


def test_many_threads_each_get_their_own_signature(
    make_pipeline: Callable[..., Pipeline], keyring: Keyring
) -> None:
    """Spans started and ended on several threads at once each carry the signature of their own binding."""
    pipeline = make_pipeline(background_signing=True)

    def one(i: int) -> None:
        with declare(chat(f"question {i}")):
            pipeline.tracer.start_span("chat gpt-4o-mini", attributes=GENAI).end()

    threads = [threading.Thread(target=lambda i=i: [one(i * 50 + k) for k in range(50)]) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = pipeline.span_exporter.get_finished_spans()
    assert len(spans) == 200
    for span in spans:
        assert_verifies(span, keyring)
    assert len({(s.attributes or {})[RUN_IDENTITY_ID] for s in spans}) == 200
    assert len(pipeline.log_exporter.get_finished_logs()) == 200


def test_spans_dropped_unended_still_emit_their_manifests(make_pipeline: Callable[..., Pipeline]) -> None:
    """Jobs of spans garbage-collected without end() are purged past the bound, their manifests emitted."""
    import gc

    from run_identity.otel import processor as processor_module

    pipeline = make_pipeline(background_signing=True)
    original = processor_module._MAX_JOBS
    processor_module._MAX_JOBS = 4
    try:
        for i in range(10):
            with declare(chat(f"dropped {i}")):
                pipeline.tracer.start_span("chat gpt-4o-mini", attributes=GENAI)  # never ended
            assert pipeline.processor.force_flush()
            gc.collect()
    finally:
        processor_module._MAX_JOBS = original
    assert len(pipeline.processor._jobs) <= 4
    emitted = len(pipeline.log_exporter.get_finished_logs())
    assert emitted >= 6
    pipeline.tracer_provider.shutdown()
    assert len(pipeline.log_exporter.get_finished_logs()) == 10


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_the_attribute_length_limit_still_applies(signer: Ed25519Signer, background: bool) -> None:
    """With OTel's attribute length limit below our values, they are truncated as configured, as the public
    setter does for any attribute (and as signing inline does)."""
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from run_identity import IdentitySpanProcessor

    provider = TracerProvider(shutdown_on_exit=False, span_limits=SpanLimits(max_attribute_length=20))
    provider.add_span_processor(IdentitySpanProcessor(signer, emit_manifests=False, background_signing=background))
    with declare(chat()):
        span = provider.get_tracer("t").start_span("chat gpt-4o-mini", attributes=GENAI)
    span.end()
    attributes = span.attributes or {}
    assert len(str(attributes[RUN_IDENTITY_ID])) == len(str(attributes[RUN_IDENTITY_SIGNATURE])) == 20


def test_a_full_queue_signs_inline() -> None:
    """submit refuses beyond capacity (the processor then signs on the caller's thread); flush waits."""
    worker = SigningWorker(capacity=1)
    gate, started = threading.Event(), threading.Event()

    def hold(job: Job) -> None:
        started.set()
        gate.wait(10)

    first = Job(hold)
    assert worker.submit(first)
    assert started.wait(10)  # the worker holds the first job: the queue is empty
    assert worker.submit(Job(lambda job: None))  # one waits
    assert not worker.submit(Job(lambda job: None))  # the queue is full
    gate.set()
    assert worker.flush(10)
    assert first.wait(0)
    assert worker.submit(Job(lambda job: None))
    worker.shutdown(10)
    assert not worker.submit(Job(lambda job: None))


def test_shutdown_emits_the_manifests_of_spans_still_open(make_pipeline: Callable[..., Pipeline]) -> None:
    """TracerProvider.shutdown lets the worker finish and emits the manifests of spans that never ended:
    a declared run's manifest does not vanish."""
    pipeline = make_pipeline(background_signing=True)
    spans = []
    for i in range(20):
        with declare(chat(f"q{i}")):
            spans.append(pipeline.tracer.start_span("chat gpt-4o-mini", attributes=GENAI))
    pipeline.tracer_provider.shutdown()
    assert len(pipeline.log_exporter.get_finished_logs()) == 20


def _forked(queue: Any, processor: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with declare(chat()):
        span = provider.get_tracer("t").start_span("chat gpt-4o-mini", attributes=GENAI)
        span.end()
    queue.put(RUN_IDENTITY_SIGNATURE in (span.attributes or {}))


@pytest.mark.skipif(not hasattr(multiprocessing, "get_context"), reason="no multiprocessing")
def test_a_forked_child_gets_its_own_worker(signer: Ed25519Signer) -> None:
    """A processor whose worker ran before fork() still signs in the child (the worker restarts there)."""
    from opentelemetry.sdk.trace import TracerProvider

    from run_identity import IdentitySpanProcessor

    processor = IdentitySpanProcessor(signer, emit_manifests=False, background_signing=True)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with declare(chat()):
        provider.get_tracer("t").start_span("chat gpt-4o-mini", attributes=GENAI).end()  # starts the worker
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forked, args=(queue, processor))
    child.start()
    assert queue.get(timeout=30) is True
    child.join(30)
    assert child.exitcode == 0
