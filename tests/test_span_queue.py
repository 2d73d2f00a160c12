"""Spans never vanish silently: the span export queue's back-pressure, counted losses and delivery at shutdown.

The SDK's BatchSpanProcessor, which ``setup()`` used before, drops spans when its queue is full and says
nothing, so a run verified as ``span_missing``. With it, the load test fails (no back-pressure: no waits
on a queue of 512; at the issue's 20,000 runs it also loses spans), and so do the counting tests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import run_identity
from run_identity import Keyring
from run_identity.core.keys import Ed25519Signer
from run_identity.otel.export_file import file_exporters
from run_identity.otel.span_export import SpanExportQueue
from run_identity.pipeline.collector import free_port
from run_identity.pipeline.spool import TRACES_SPOOL, Spool
from run_identity.verify import Policy, Verifier

COMPOSITION = {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": []}
#: The issue's figure (20,000 runs) when RUN_IDENTITY_LOAD_RUNS says so; a smaller one by default.
LOAD_RUNS = int(os.environ.get("RUN_IDENTITY_LOAD_RUNS", "3000"))


class SlowSpanExporter(SpanExporter):
    """Takes ``delay`` seconds per batch, then hands it to ``inner`` (if any); counts what it received;
    refuses while ``refuse`` is set; waits for ``gate`` when one is set."""

    def __init__(self, delay: float = 0.0, inner: SpanExporter | None = None) -> None:
        self.delay = delay
        self.inner = inner
        self.received = 0
        self.run_spans = 0
        self.batches = 0
        self.refuse = False
        self.gate: threading.Event | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        if self.refuse:
            return SpanExportResult.FAILURE
        if self.inner is not None and self.inner.export(spans) != SpanExportResult.SUCCESS:
            return SpanExportResult.FAILURE
        self.received += len(spans)
        self.run_spans += sum(1 for s in spans if (s.attributes or {}).get("run_identity.id"))
        self.batches += 1
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _runs(identity: Any, count: int) -> None:
    for _ in range(count):
        with run_identity.start_genai_span(COMPOSITION, tracer_provider=identity.tracer_provider):
            pass


@pytest.mark.slow
def test_a_slow_span_exporter_loses_no_span(signer: Ed25519Signer, keyring: Keyring, tmp_path: Path) -> None:
    """Runs declared as fast as one thread can, a span exporter taking 0.5 s a batch: every span reaches it,
    the queue pushed back instead of dropping, coverage equals what the exporter received, and verify
    reports no span_missing."""
    span_file, manifest_file = file_exporters(tmp_path)
    exporter = SlowSpanExporter(delay=0.5, inner=span_file)
    identity = run_identity.setup(
        signer,
        span_exporters=[exporter],
        manifest_exporters=[manifest_file],
        set_global=False,
        span_queue_size=512,
        span_batch_size=512,
    )
    started = time.monotonic()
    _runs(identity, LOAD_RUNS)
    declared = time.monotonic() - started
    sizes = identity.queue_sizes
    identity.shutdown()
    coverage = identity.processor.coverage
    counts = Verifier(keyring, Policy()).verify([tmp_path]).summary_json()["counts"]
    print(
        f"span queue load: {LOAD_RUNS} runs declared in {declared:.1f} s, {exporter.batches} batches, "
        f"{sizes['spans_waits']} waits, verify {dict((k, v) for k, v in counts.items() if v)}"
    )
    assert exporter.run_spans == exporter.received == LOAD_RUNS
    assert coverage.identified == exporter.run_spans and coverage.spans_lost == 0
    assert sizes["spans_max_queue_size"] == 512 and sizes["spans_waits"] > 0 and sizes["spans_dropped"] == 0
    assert counts["span_missing"] == 0 and counts["verified"] == LOAD_RUNS


def test_a_queue_full_past_its_wait_is_counted_in_coverage_and_logged(
    signer: Ed25519Signer, caplog: pytest.LogCaptureFixture
) -> None:
    """When the exporter is stuck past span_max_wait, the span that found no room is counted and logged,
    and ending it does not raise into the application."""
    exporter = SlowSpanExporter()
    exporter.gate = threading.Event()
    identity = run_identity.setup(
        signer, span_exporters=[exporter], set_global=False, span_queue_size=2, span_batch_size=1, span_max_wait=0.2
    )
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        _runs(identity, 5)  # one in the exporter, two queued, the rest wait 0.2 s and are dropped
    coverage = identity.processor.coverage
    sizes = identity.queue_sizes
    exporter.gate.set()
    identity.shutdown()
    assert coverage.spans_lost >= 1 and sizes["spans_dropped"] == sizes["spans_run_dropped"] == coverage.spans_lost
    assert exporter.received + coverage.spans_lost == 5
    assert "span(s) dropped" in caplog.text and "stayed full" in caplog.text


def test_batches_an_exporter_keeps_refusing_are_counted_lost(
    signer: Ed25519Signer, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused after its retries, a batch is counted in coverage.spans_lost and logged."""
    exporter = SlowSpanExporter()
    exporter.refuse = True
    queue = SpanExportQueue([exporter], export_attempts=2, retry_pause=0.01, schedule_delay=0.01)
    identity = run_identity.setup(signer, set_global=False)  # no span exporter: add our own queue
    identity.tracer_provider.add_span_processor(queue)
    identity.processor.count_span_losses(queue.run_spans_lost)
    with caplog.at_level(logging.ERROR, logger="run_identity"):
        _runs(identity, 3)
        identity.force_flush()
        identity.shutdown()
    assert identity.processor.coverage.spans_lost == 3 and queue.stats.lost == 3
    assert "spans lost" in caplog.text


def test_shutdown_delivers_what_is_queued(signer: Ed25519Signer) -> None:
    """Spans still queued at shutdown are exported before the exporters close."""
    exporter = SlowSpanExporter(delay=0.2)
    identity = run_identity.setup(signer, span_exporters=[exporter], set_global=False, span_batch_size=4)
    _runs(identity, 20)
    identity.shutdown()
    assert exporter.received == 20 and identity.queue_sizes["spans_queued"] == 0
    assert identity.processor.coverage.spans_lost == 0


def test_shutdown_spools_the_spans_the_destination_does_not_take(signer: Ed25519Signer, tmp_path: Path) -> None:
    """With spool_dir and the collector down, shutdown leaves every span on disk, none lost."""
    down = f"http://127.0.0.1:{free_port()}/v1/traces"
    identity = run_identity.setup(
        signer,
        span_exporters=[OTLPSpanExporter(endpoint=down, timeout=0.3)],
        set_global=False,
        spool_dir=tmp_path / "spool",
    )
    _runs(identity, 7)
    identity.shutdown()
    spooled = sum(
        len(ss.spans)
        for payload in Spool(tmp_path / "spool" / TRACES_SPOOL).payloads()
        for rs in ExportTraceServiceRequest.FromString(payload).resource_spans
        for ss in rs.scope_spans
    )
    assert spooled == 7
    assert identity.processor.coverage.spans_lost == 0
    assert identity.queue_sizes["spans_spooled_pending"] >= 1


def test_unsampled_spans_are_not_queued(signer: Ed25519Signer) -> None:
    """As with the SDK's processors, spans that are not sampled are not exported (nor counted lost)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = SlowSpanExporter()
    identity = run_identity.setup(signer, span_exporters=[exporter], set_global=False, sampler=ALWAYS_OFF)
    _runs(identity, 3)
    identity.shutdown()
    assert exporter.received == 0 and identity.processor.coverage.spans_lost == 0
