"""Manifests never vanish silently: back-pressure, counted losses, delivery at shutdown, bounded memory."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

import run_identity
from run_identity.core.keys import Ed25519Signer
from run_identity.otel.manifest_export import ManifestExportQueue
from run_identity.pipeline.collector import free_port
from run_identity.pipeline.spool import LOGS_SPOOL, Spool

COMPOSITION = {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": []}
GENAI = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}
#: The full figure of the issue (20,000 runs) when RUN_IDENTITY_LOAD_RUNS says so; a smaller one by default.
LOAD_RUNS = int(os.environ.get("RUN_IDENTITY_LOAD_RUNS", "3000"))
#: The issue's 50,000 never-ended spans when RUN_IDENTITY_UNENDED_SPANS says so.
UNENDED_SPANS = int(os.environ.get("RUN_IDENTITY_UNENDED_SPANS", "16000"))


class SlowExporter(LogRecordExporter):
    """Takes ``delay`` seconds per batch and counts what it received; refuses while ``refuse`` is set."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received = 0
        self.batches = 0
        self.refuse = False
        self.gate: threading.Event | None = None

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        if self.refuse:
            return LogRecordExportResult.FAILURE
        self.received += len(batch)
        self.batches += 1
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class UnlockedSigner:
    """A signer that is not the library's own class, so the processor signs on its background worker."""

    def __init__(self, inner: Ed25519Signer) -> None:
        self.inner = inner
        self.key_id = inner.key_id

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data)


def _runs(identity: Any, count: int) -> None:
    for _ in range(count):
        with run_identity.start_genai_span(COMPOSITION, tracer_provider=identity.tracer_provider):
            pass


@pytest.mark.slow
def test_a_slow_manifest_exporter_loses_nothing(signer: Ed25519Signer) -> None:
    """Runs declared as fast as one thread can, an exporter taking 0.5 s a batch: every manifest reaches
    it, the queue pushed back instead of dropping, and coverage equals what the exporter received."""
    exporter = SlowExporter(delay=0.5)
    identity = run_identity.setup(
        signer, manifest_exporters=[exporter], set_global=False, manifest_queue_size=512, manifest_batch_size=512
    )
    _runs(identity, LOAD_RUNS)
    sizes = identity.queue_sizes
    identity.shutdown()
    coverage = identity.processor.coverage
    assert exporter.received == LOAD_RUNS
    assert coverage.manifests_emitted == exporter.received
    assert (coverage.manifest_failures, coverage.manifests_lost) == (0, 0)
    assert sizes["max_queue_size"] == 512 and sizes["waits"] > 0 and sizes["dropped"] == 0


def test_a_queue_full_past_its_wait_is_counted_in_coverage_and_logged(
    signer: Ed25519Signer, caplog: pytest.LogCaptureFixture
) -> None:
    """When the exporter is stuck past max_wait, the manifest that found no room is a counted failure."""
    exporter = SlowExporter()
    exporter.gate = threading.Event()
    identity = run_identity.setup(
        signer,
        manifest_exporters=[exporter],
        set_global=False,
        manifest_queue_size=2,
        manifest_batch_size=1,
        manifest_max_wait=0.2,
    )
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        _runs(identity, 5)  # one in the exporter, two queued, the rest wait 0.2 s and give up
    coverage = identity.processor.coverage
    exporter.gate.set()
    identity.shutdown()
    assert coverage.manifest_failures >= 1
    assert coverage.manifests_emitted + coverage.manifest_failures == 5
    assert exporter.received == identity.processor.coverage.manifests_emitted
    assert identity.queue_sizes["dropped"] == coverage.manifest_failures
    assert "manifest could not be emitted" in caplog.text and "stayed full" in caplog.text


def test_batches_an_exporter_keeps_refusing_are_counted_lost(signer: Ed25519Signer) -> None:
    """Refused after its retries, a batch is counted in coverage.manifests_lost, never silently gone."""
    exporter = SlowExporter()
    exporter.refuse = True
    queue = ManifestExportQueue([exporter], export_attempts=2, retry_pause=0.01, schedule_delay=0.01)
    identity = run_identity.setup(signer, set_global=False)  # no manifest exporter: add our own queue
    identity.logger_provider.add_log_record_processor(queue)
    identity.processor.count_manifest_losses(queue.lost)
    _runs(identity, 3)
    identity.force_flush()
    identity.shutdown()
    assert identity.processor.coverage.manifests_lost == 3 and queue.stats.lost == 3


def test_shutdown_delivers_what_is_queued(signer: Ed25519Signer) -> None:
    """Manifests still queued at shutdown are exported before the exporters close."""
    exporter = SlowExporter(delay=0.2)
    identity = run_identity.setup(signer, manifest_exporters=[exporter], set_global=False, manifest_batch_size=4)
    _runs(identity, 20)
    identity.shutdown()
    assert exporter.received == 20 and identity.queue_sizes["queued"] == 0


def test_shutdown_spools_what_the_destination_does_not_take(signer: Ed25519Signer, tmp_path: Path) -> None:
    """With spool_dir and the collector down, shutdown leaves every manifest on disk, none lost."""
    down = f"http://127.0.0.1:{free_port()}/v1/logs"
    identity = run_identity.setup(
        signer,
        manifest_exporters=[OTLPLogExporter(endpoint=down, timeout=0.3)],
        set_global=False,
        spool_dir=tmp_path / "spool",
    )
    _runs(identity, 7)
    identity.shutdown()
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    spooled = sum(
        len(sl.log_records)
        for payload in Spool(tmp_path / "spool" / LOGS_SPOOL).payloads()
        for rl in ExportLogsServiceRequest.FromString(payload).resource_logs
        for sl in rl.scope_logs
    )
    assert spooled == 7
    assert identity.processor.coverage.manifests_lost == 0
    assert identity.queue_sizes["spooled_pending"] >= 1


@pytest.mark.slow
def test_never_ended_spans_keep_memory_flat_and_their_manifests_go_out(signer: Ed25519Signer) -> None:
    """Spans started and dropped without end(), with background signing: traced memory stops growing
    with their number, and the worker's timer emits their manifests without a flush."""
    exporter = SlowExporter()
    identity = run_identity.setup(UnlockedSigner(signer), manifest_exporters=[exporter], set_global=False)  # type: ignore[arg-type]
    assert identity.processor.background_signing
    tracer = identity.tracer_provider.get_tracer("tests")
    total, step = UNENDED_SPANS, UNENDED_SPANS // 4
    marks = []
    tracemalloc.start()
    try:
        for i in range(total):
            with run_identity.declare(COMPOSITION):
                tracer.start_span("chat m", attributes=GENAI)  # never ended, dropped at once
            if (i + 1) % step == 0:
                # Let the worker catch up first (its timer emits the dropped spans' manifests), so the mark
                # measures what is retained, not how far a loaded machine let the worker fall behind.
                deadline = time.monotonic() + 30
                while exporter.received < i + 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                gc.collect()
                marks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    deadline = time.monotonic() + 30
    while exporter.received < total and time.monotonic() < deadline:
        time.sleep(0.1)
    received_before_shutdown = exporter.received
    identity.shutdown()
    print(f"traced memory after each quarter of {total} unended spans: {[m // 1024 for m in marks]} KiB")
    # Bounded: what stays per dropped span is a small entry of the job table (capped at _MAX_JOBS entries and
    # purged), under 1 KiB, where keeping each run's data (the bug) kept about 8 KiB a span.
    assert (marks[-1] - marks[0]) / (total - step) < 1024, marks
    assert received_before_shutdown == total
    assert identity.processor.coverage.manifests_emitted == total


def _child_runs(queue: Any, identity: Any, exporter: SlowExporter) -> None:
    _runs(identity, 3)
    identity.shutdown()
    queue.put(exporter.received)


def test_the_queue_restarts_its_worker_in_a_forked_child(signer: Ed25519Signer) -> None:
    """A manifest queue created before fork() still exports in the child (its worker is started again)."""
    exporter = SlowExporter()
    identity = run_identity.setup(signer, manifest_exporters=[exporter], set_global=False)
    _runs(identity, 1)
    identity.force_flush()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_runs, args=(queue, identity, exporter))
    child.start()
    assert queue.get(timeout=30) == 4  # the parent's one, exported before the fork, and the child's three
    child.join(30)
    assert child.exitcode == 0
    identity.shutdown()
