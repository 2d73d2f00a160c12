"""Shared fixtures: a signer, and a real OTel SDK pipeline with the identity processor, in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from run_identity.keys import Ed25519Signer, Keyring, Signer
from run_identity.processor import IdentitySpanProcessor
from run_identity.sampling import IdentitySampler


@dataclass
class Pipeline:
    """A TracerProvider with the identity processor, spans and manifests captured in memory."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    processor: IdentitySpanProcessor
    span_exporter: InMemorySpanExporter
    log_exporter: InMemoryLogRecordExporter
    tracer: Tracer

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        (found,) = [s for s in self.spans() if s.name == name]
        return found

    def manifests(self) -> list[ReadableLogRecord]:
        return list(self.log_exporter.get_finished_logs())


@pytest.fixture(scope="session")
def signer() -> Ed25519Signer:
    return Ed25519Signer.generate()


@pytest.fixture(scope="session")
def keyring(signer: Ed25519Signer) -> Keyring:
    return Keyring([signer.public_key])


@pytest.fixture
def make_pipeline(signer: Ed25519Signer) -> Iterator[Callable[..., Pipeline]]:
    """Build pipelines (``strict``, ``sampler``, ``salt``, ``signer`` may be given); all shut down after."""
    built: list[Pipeline] = []

    def make(*, sampler: Sampler | None = None, signer_: Signer | None = None, **options: Any) -> Pipeline:
        logger_provider = LoggerProvider(shutdown_on_exit=False)
        log_exporter = InMemoryLogRecordExporter()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        tracer_provider = TracerProvider(sampler=IdentitySampler(sampler), shutdown_on_exit=False)
        processor = IdentitySpanProcessor(signer_ or signer, logger_provider=logger_provider, **options)
        tracer_provider.add_span_processor(processor)
        span_exporter = InMemorySpanExporter()
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        tracer = tracer_provider.get_tracer("tests")
        assert isinstance(tracer, Tracer)
        pipeline = Pipeline(tracer_provider, logger_provider, processor, span_exporter, log_exporter, tracer)
        built.append(pipeline)
        return pipeline

    yield make
    for pipeline in built:
        pipeline.tracer_provider.shutdown()
        pipeline.logger_provider.shutdown()


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()
