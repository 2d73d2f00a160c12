"""Shared fixtures: a signer, and a real OTel SDK pipeline with the identity processor, in memory."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import settings
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from run_identity.core.keys import Ed25519Signer, Keyring, Signer
from run_identity.otel.processor import IdentitySpanProcessor
from run_identity.otel.sampling import IdentitySampler

# CI (CI=true) draws the same examples on every run, so its verdict does not depend on chance; elsewhere
# the property tests explore new examples each run (a failure prints the seed and a reproduction blob).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


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


@dataclass
class OpenAIServer:
    """A local stand-in for the OpenAI API: canned chat completions, requests kept for inspection."""

    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """Serve POST /v1/chat/completions on 127.0.0.1 (random port) until the test ends."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    server_ref: list[OpenAIServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server_ref[0].requests.append(request)
            body = json.dumps(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 1767225600,
                    "model": request.get("model", "unknown"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Lisbon."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
                }
            ).encode()
            self.send_response(200 if self.path == "/v1/chat/completions" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_ref.append(OpenAIServer(f"http://127.0.0.1:{httpd.server_address[1]}/v1"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_ref[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
