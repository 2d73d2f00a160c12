"""Where ``run-identity serve`` keeps what it accepts: OTLP-JSON lines files, durable before the answer.

Durability: a request's lines are appended (whole lines, short writes continued) under the sink's lock,
then :meth:`OtlpSink.accept_traces` / :meth:`OtlpSink.accept_logs` return only once an ``fsync`` covering
them is done (group commit: one thread fsyncs for every request written before it started, the others
wait for it), so a 200 from the receiver means the data is on disk. Files are created 0600 (manifests
hold prompts), never through a symbolic link.

Torn tails: a process killed in the middle of a write leaves a last line without its newline. At start the
sink moves such a partial line into ``<file>.torn-<ns>`` beside the file, truncates the file to its last
whole line, and reports it (logged, and in the summary under ``repairs``); it is never merged with the next
request's line.

Summary: computed from a *snapshot*: the prefixes of the files that are durable at that moment, copied to a
private temporary folder, verified there by the summarizer (the public :class:`run_identity.verify.Verifier`
over all three files), outside the ingestion lock; the result is reused while nothing new was written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from run_identity.core.attributes import MANIFEST_EVENT_NAME, RUN_IDENTITY_ID
from run_identity.core.errors import RunIdentityError
from run_identity.pipeline.serve._journal import BatchJournal
from run_identity.pipeline.serve._otlp import event_of, otlp_json_line, split_manifests

__all__ = ["LOGS_FILE", "MANIFESTS_FILE", "TRACES_FILE", "OtlpSink", "SinkCounts", "Summarizer", "repair_torn_tail"]

_logger = logging.getLogger("run_identity.serve")

# The same names as run_identity.otel.export_file's (not imported: that module pulls in the OTel SDK).
TRACES_FILE = "traces.jsonl"
MANIFESTS_FILE = "manifests.jsonl"
LOGS_FILE = "logs.jsonl"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

Summarizer = Callable[[list[Path]], dict[str, Any]]


@dataclass
class SinkCounts:
    """What the receiver has accepted (durably) so far."""

    requests: int = 0
    rejected_requests: int = 0
    #: Requests answered 429/503 (busy or over the memory cap): the exporter retries them.
    throttled_requests: int = 0
    spans: int = 0
    run_spans: int = 0
    manifests: int = 0
    receipts: int = 0
    other_logs: int = 0
    started_at: float = field(default_factory=time.time)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_torn_tail(path: Path) -> dict[str, Any] | None:
    """Move a partial last line of ``path`` aside (see the module docstring); what was done, or None."""
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None
        end, step = size, 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - step)
            chunk = os.pread(fd, end - start, start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        torn = os.pread(fd, size - keep, keep)
        aside = path.with_name(f"{path.name}.torn-{time.time_ns()}")
        out = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        try:
            view = memoryview(torn)
            while view:
                view = view[os.write(out, view) :]
            os.fsync(out)
        finally:
            os.close(out)
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    _logger.warning("%s ended with a torn line of %d bytes (a crash mid-write): moved to %s", path, len(torn), aside)
    return {"file": str(path), "bytes": len(torn), "moved_to": str(aside)}


class _LineFile:
    """An append-only lines file (0600); ``size`` is what was written, fsynced by the sink's group commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.closed = False
        self.size = 0
        with contextlib.suppress(FileNotFoundError):
            self.size = path.lstat().st_size

    def write(self, line: bytes) -> None:
        if self.closed:
            raise OSError(f"{self.path}: the receiver is stopping")
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
            if created:
                _fsync_dir(self.path.parent)
        view = memoryview(line)
        while view:  # a short write is continued: a line is never left half written by us
            view = view[os.write(self._fd, view) :]
        self.size += len(line)

    def fsync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        self.closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class OtlpSink:
    """Writes received OTLP requests into ``directory`` durably and counts them. Thread-safe.

    ``summarize``, when given, computes the verification part of :meth:`summary` from a snapshot of the
    written files. Torn tails left by a crash are repaired at construction (``repairs``). ``journal`` notes
    each request when received and when durable (:mod:`run_identity.pipeline.serve._journal`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        summarize: Summarizer | None = None,
        journal: BatchJournal | None = None,
    ) -> None:
        self.journal = journal
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        names = (TRACES_FILE, MANIFESTS_FILE, LOGS_FILE)
        self.repairs = [r for r in (repair_torn_tail(self.directory / n) for n in names) if r is not None]
        self._traces, self._manifests, self._logs = (_LineFile(self.directory / n) for n in names)
        self._files = (self._traces, self._manifests, self._logs)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._written = 0  # requests written so far (a ticket each)
        self._sync = threading.Condition()
        self._synced = 0  # requests fsynced so far
        self._syncing = False
        self._durable_sizes = tuple(f.size for f in self._files)
        self._summarize = summarize
        self._summary_lock = threading.Lock()
        self._summary_cache: tuple[tuple[int, ...], dict[str, Any]] | None = None
        self.counts = SinkCounts()

    # -- ingestion -----------------------------------------------------------------------------------------

    def _write(self, lines: list[tuple[_LineFile, bytes]]) -> int:
        with self._lock:
            for target, line in lines:
                target.write(line)
            self._written += 1
            return self._written

    def _durable(self, ticket: int) -> None:
        """Return once the request with ``ticket`` is fsynced (group commit). Raises OSError."""
        with self._sync:
            while self._synced < ticket:
                if not self._syncing:
                    self._syncing = True
                    break
                self._sync.wait()
            else:
                return
        done, sizes = 0, None
        try:
            with self._lock:
                done = self._written
                sizes = tuple(f.size for f in self._files)
            for f in self._files:
                f.fsync()
            self._durable_sizes = sizes
        finally:
            with self._sync:
                self._syncing = False
                if self._durable_sizes == sizes:
                    self._synced = max(self._synced, done)
                self._sync.notify_all()

    def _accepted(self, **added: int) -> None:
        with self._changed:
            c = self.counts
            c.requests += 1
            for key, value in added.items():
                setattr(c, key, getattr(c, key) + value)
            self._changed.notify_all()

    def accept_traces(self, request: ExportTraceServiceRequest) -> None:
        """Write a traces request; returns once it is durable. Raises OSError when it cannot be."""
        spans = run_spans = 0
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans += len(ss.spans)
                run_spans += sum(1 for s in ss.spans if any(a.key == RUN_IDENTITY_ID for a in s.attributes))
        lines = [(self._traces, otlp_json_line(request))] if spans else []
        if self.journal is None:
            self._durable(self._write(lines))
        else:
            ids = [
                s.span_id.hex()
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
                if any(a.key == RUN_IDENTITY_ID for a in s.attributes)
            ]
            self._journaled(lines, "traces", spans, ids)
        self._accepted(spans=spans, run_spans=run_spans)

    def _journaled(self, lines: list[tuple[_LineFile, bytes]], signal: str, records: int, ids: list[str]) -> None:
        assert self.journal is not None
        ticket = self.journal.ticket()
        self.journal.note(ticket, "received", signal, records, ids)
        try:
            self._durable(self._write(lines))
        except OSError:
            self.journal.note(ticket, "failed", signal, records, ids)
            raise
        self.journal.note(ticket, "durable", signal, records, ids)

    def accept_logs(self, request: ExportLogsServiceRequest) -> None:
        """Write a logs request (ours to ``manifests.jsonl``, others to ``logs.jsonl``) durably."""
        ours, others = split_manifests(request)
        n_manifests = n_receipts = 0
        for rl in ours.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    if event_of(record) == MANIFEST_EVENT_NAME:
                        n_manifests += 1
                    else:
                        n_receipts += 1
        n_others = sum(len(sl.log_records) for rl in others.resource_logs for sl in rl.scope_logs)
        lines = []
        if n_manifests + n_receipts:
            lines.append((self._manifests, otlp_json_line(ours)))
        if n_others:
            lines.append((self._logs, otlp_json_line(others)))
        if self.journal is None:
            self._durable(self._write(lines))
        else:
            ids = [r.span_id.hex() for rl in ours.resource_logs for sl in rl.scope_logs for r in sl.log_records]
            self._journaled(lines, "logs", n_manifests + n_receipts + n_others, ids)
        self._accepted(manifests=n_manifests, receipts=n_receipts, other_logs=n_others)

    def reject(self, *, throttled: bool = False) -> None:
        with self._lock:
            if throttled:
                self.counts.throttled_requests += 1
            else:
                self.counts.rejected_requests += 1

    def wait_for(self, *, spans: int = 0, manifests: int = 0, timeout: float = 30.0) -> bool:
        """Block until at least ``spans`` run spans and ``manifests`` manifests arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.counts.run_spans < spans or self.counts.manifests < manifests:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def files(self) -> list[Path]:
        return [f.path for f in self._files if f.path.exists()]

    # -- summary -------------------------------------------------------------------------------------------

    def _verification(self, sizes: tuple[int, ...]) -> dict[str, Any]:
        assert self._summarize is not None
        with self._summary_lock:  # one verification at a time; ingestion goes on meanwhile
            cached = self._summary_cache
            if cached is not None and cached[0] == sizes:
                return cached[1]
            snapshot = Path(tempfile.mkdtemp(prefix="run-identity-serve-"))
            try:
                paths = []
                for f, size in zip(self._files, sizes, strict=True):
                    if size == 0:
                        continue
                    copy = snapshot / f.path.name
                    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
                    with open(f.path, "rb") as src, os.fdopen(fd, "wb") as dst:
                        remaining = size
                        while remaining:
                            chunk = src.read(min(remaining, 1 << 20))
                            if not chunk:
                                break
                            dst.write(chunk)
                            remaining -= len(chunk)
                    paths.append(copy)
                try:
                    result = self._summarize(paths)
                except RunIdentityError as exc:
                    result = {"error": str(exc)}
            finally:
                shutil.rmtree(snapshot, ignore_errors=True)
            self._summary_cache = (sizes, result)
            return result

    def summary(self) -> dict[str, Any]:
        """Counts, files and (with a summarizer) the verification of what is durable now."""
        with self._lock:
            counts = asdict(self.counts)
            sizes = self._durable_sizes
        started = counts.pop("started_at")
        out: dict[str, Any] = {
            "received": counts,
            "files": {
                "traces": str(self._traces.path),
                "manifests": str(self._manifests.path),
                "logs": str(self._logs.path),
            },
            "uptime_seconds": round(time.time() - started, 3),
        }
        if self.repairs:
            out["repairs"] = list(self.repairs)
        if self._summarize is not None:
            out["verification"] = self._verification(sizes)
        return out

    def close(self) -> None:
        with self._lock:
            for f in self._files:
                with contextlib.suppress(OSError):
                    f.fsync()
                f.close()
            if self.journal is not None:
                self.journal.close()
