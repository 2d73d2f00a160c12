"""Manifests that would reach no configured LoggerProvider are counted as not delivered and logged once."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry._logs import LoggerProvider as ApiLoggerProvider
from opentelemetry._logs import NoOpLoggerProvider, get_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from run_identity import Ed25519Signer, IdentitySpanProcessor, start_genai_span


def _composition(text: str) -> dict[str, Any]:
    return {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": text}]}],
    }


def _two_runs(logger_provider: ApiLoggerProvider | None) -> IdentitySpanProcessor:
    processor = IdentitySpanProcessor(Ed25519Signer.generate(), logger_provider=logger_provider)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for text in ("one", "two"):
        with start_genai_span(_composition(text), tracer_provider=provider):
            pass
    provider.shutdown()
    return processor


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "run_identity" and r.levelno == logging.WARNING]


def test_without_a_global_logger_provider_manifests_are_not_counted_as_emitted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No LoggerProvider set anywhere: both runs are identified, neither manifest counts as emitted, one warning."""
    if type(get_logger_provider()).__name__ != "ProxyLoggerProvider":
        pytest.skip("a global LoggerProvider was set in this process")
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        coverage = _two_runs(None).coverage
    assert (coverage.identified, coverage.manifests_emitted, coverage.manifest_failures) == (2, 0, 2)
    (warning,) = _warnings(caplog)
    assert "no LoggerProvider is configured" in warning and "run_identity.setup()" in warning


def test_a_noop_logger_provider_delivers_nothing_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """An explicit no-op provider is treated like none: counted as not delivered, logged once."""
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        coverage = _two_runs(NoOpLoggerProvider()).coverage
    assert (coverage.manifests_emitted, coverage.manifest_failures) == (0, 2)
    assert len(_warnings(caplog)) == 1


def test_a_configured_logger_provider_gets_every_manifest(caplog: pytest.LogCaptureFixture) -> None:
    """With an SDK LoggerProvider and an exporter, every manifest is emitted and exported, nothing is logged."""
    exporter = InMemoryLogRecordExporter()
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        coverage = _two_runs(logs).coverage
    assert (coverage.manifests_emitted, coverage.manifest_failures) == (2, 0)
    assert len(exporter.get_finished_logs()) == 2
    assert _warnings(caplog) == []
