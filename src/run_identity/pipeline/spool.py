"""No lost manifests: exporter wrappers that spool undelivered batches to disk and send them again.

OTLP exporters already retry a failed export for a while (``timeout``). When they give up (the collector is
down) or the process ends first, :class:`SpoolingLogExporter` / :class:`SpoolingSpanExporter` write the
batch, encoded as one OTLP export request, into a spool folder; a background thread sends the entries again
(and removes each once delivered), while new batches keep going straight to the exporter: an old entry never
holds up a new batch (no head-of-line blocking). ``run-identity spool flush`` sends a spool by hand.

Replays go through the wrapped exporter's own HTTP client when it is an OTLP/HTTP exporter
(:func:`exporter_sender`): same endpoint, headers, compression, timeout and TLS settings as the batches it
sends itself. Each entry is retried on its own with exponential backoff; an entry the destination refuses
for good (an HTTP 4xx other than 408 and 429), or that failed ``max_attempts`` times, moves to the
``dead/`` folder of the spool, is counted and logged, and is never sent again by itself.

Storage (:class:`Spool`): one folder (``logs.spool.binpb/``, ``traces.spool.binpb/``, mode 0700), one file
per export request in the ``otelcol-contrib`` file exporter's ``proto`` format (the message preceded by its
length, 4 bytes big-endian), mode 0600 since manifests hold prompts; ``run-identity verify`` reads the
folder as it is. Every entry is written whole or not at all: a temporary file, written to the end (short
writes continued), fsynced, renamed into place, then the folder fsynced; no path component inside the
spool is followed as a symbolic link. Size cap: ``max_bytes`` (256 MiB by default) over the entries
waiting; while the spool is full a new batch is *refused* (counted as lost and logged), nothing already
spooled is deleted. A legacy single-file spool found at the folder's path is converted on first use.

Wrappers never raise into the SDK. Their counters (:class:`SpoolStats`) say what failed, what was spooled,
what was sent, what was dead-lettered or lost, and what is still pending.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from run_identity.pipeline._spool_store import (
    DEAD_LETTER_DIR,
    DrainResult,
    Send,
    SendResult,
    Spool,
    SpoolFullError,
    classify_status,
)
from run_identity.pipeline.senders import OtlpHttpSender, exporter_sender

__all__ = [
    "DEAD_LETTER_DIR",
    "LOGS_SPOOL",
    "TRACES_SPOOL",
    "DrainResult",
    "OtlpHttpSender",
    "SendResult",
    "Spool",
    "SpoolFullError",
    "SpoolStats",
    "SpoolingLogExporter",
    "SpoolingSpanExporter",
    "classify_status",
    "exporter_sender",
    "flush_spool_dir",
    "spooling_otlp_exporters",
]

_logger = logging.getLogger("run_identity.spool")

LOGS_SPOOL = "logs.spool.binpb"
TRACES_SPOOL = "traces.spool.binpb"
@dataclass
class SpoolStats:
    """Counters of one spooling exporter (read them any time; they only grow, except ``pending``)."""

    exports: int = 0
    export_failures: int = 0
    spooled_batches: int = 0
    spooled_records: int = 0
    spool_write_failures: int = 0
    #: Records neither delivered nor spooled (spool full or unwritable).
    lost_records: int = 0
    #: Spooled batches delivered later.
    replayed_batches: int = 0
    replay_failures: int = 0
    #: Spooled batches moved to the dead-letter folder.
    dead_lettered: int = 0
    #: Batches (export requests) waiting in the spool, as this exporter last saw it.
    pending: int = 0


T = TypeVar("T")


class _Spooling(Generic[T]):
    """What the span and log wrappers share: spool on failure, replay in the background."""

    def __init__(
        self,
        exporter: object,
        spool: Spool | str | os.PathLike[str],
        resend: Send | None,
        *,
        replay_at_start: bool,
        cooldown: float,
    ) -> None:
        self.spool = spool if isinstance(spool, Spool) else Spool(spool)
        self.stats = SpoolStats()
        self._resend = resend if resend is not None else exporter_sender(exporter)
        self._cooldown = cooldown
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._replay_thread: threading.Thread | None = None
        try:
            self.stats.pending = self.spool.pending()
        except OSError as exc:
            _logger.error("cannot read spool %s: %s", self.spool.path, exc)
        if replay_at_start and self.stats.pending:
            self._start_replayer()

    def _encode(self, batch: Sequence[T]) -> bytes:
        raise NotImplementedError

    def _start_replayer(self) -> None:
        if self._resend is None or self._closed:
            return
        with self._lock:
            if self._replay_thread is None:
                self._replay_thread = threading.Thread(
                    target=self._replay_loop, name="run-identity-spool", daemon=True
                )
                self._replay_thread.start()
        self._wake.set()

    def _replay_loop(self) -> None:
        while not self._closed:
            sent, left, _, _ = self.replay()
            if self._closed:
                return
            try:
                due = self.spool.next_due()
            except OSError:
                due = self._cooldown
            if due is None:
                wait = 60.0  # nothing waits: sleep until a new entry wakes us
            else:
                wait = max(due, 0.05, self._down_until - time.monotonic())
                if left and not sent and due == 0:
                    wait = max(wait, min(self._cooldown, 1.0))
            self._wake.wait(wait)
            self._wake.clear()

    def replay(self, *, deadline: float | None = None, ignore_backoff: bool = False) -> DrainResult:
        """Send what is due in the spool now (everything with ``ignore_backoff``); returns (sent, left,
        dead-lettered)."""
        if self._resend is None:
            return DrainResult(0, self.stats.pending, 0)
        try:
            result = self.spool.drain(self._resend, deadline=deadline, ignore_backoff=ignore_backoff)
        except OSError as exc:
            _logger.error("cannot replay spool %s: %s", self.spool.path, exc)
            return DrainResult(0, self.stats.pending, 0)
        with self._lock:
            self.stats.replayed_batches += result.sent
            self.stats.dead_lettered += result.dead_lettered
            if result.sent:
                self._down_until = 0.0
            elif result.failed:
                self.stats.replay_failures += 1
                self._down_until = max(self._down_until, time.monotonic() + self._cooldown)
            self.stats.pending = self._count_pending(result.left)
        return result

    def _count_pending(self, fallback: int) -> int:
        try:
            return self.spool.pending()
        except OSError:
            return fallback

    def _spool(self, batch: Sequence[T]) -> bool:
        try:
            self.spool.append(self._encode(batch))
        except Exception as exc:  # never raise into the SDK; count the loss
            _logger.error("cannot spool %d records to %s: %s", len(batch), self.spool.path, exc)
            with self._lock:
                self.stats.spool_write_failures += 1
                self.stats.lost_records += len(batch)
            return False
        with self._lock:
            self.stats.spooled_batches += 1
            self.stats.spooled_records += len(batch)
            self.stats.pending = self._count_pending(self.stats.pending + 1)
        self._start_replayer()
        return True

    def _export(self, batch: Sequence[T], inner: Callable[[Sequence[T]], bool]) -> bool:
        """Send ``batch`` now (never behind the spool); spool it when that fails. True when delivered or
        durably spooled, False when lost."""
        if not batch:
            return True
        with self._lock:
            self.stats.exports += 1
            skip = time.monotonic() < self._down_until
        if not skip:
            try:
                ok = inner(batch)
            except Exception as exc:  # exporters should not raise; if one does, spool
                _logger.error("exporter raised: %s", exc)
                ok = False
            if ok:
                if self.stats.pending:
                    with self._lock:
                        self._down_until = 0.0
                    self._start_replayer()  # the destination is back: wake the replays
                return True
            with self._lock:
                self.stats.export_failures += 1
                self._down_until = time.monotonic() + self._cooldown
        # Within the cooldown after a failure: spool at once instead of blocking the export thread for another
        # full retry window while the SDK's queue fills up.
        return self._spool(batch)

    def _final_replay(self, timeout_s: float) -> bool:
        """Stop the replayer and try the spool once more; False when this was done already."""
        if self._closed:
            return False
        self._closed = True
        self._wake.set()
        if self._replay_thread is not None:
            self._replay_thread.join(timeout_s)
        if self.stats.pending:
            self.replay(deadline=time.monotonic() + timeout_s, ignore_backoff=True)
        return True


class SpoolingLogExporter(_Spooling[ReadableLogRecord], LogRecordExporter):
    """Wraps a log exporter: a batch it fails to deliver goes to ``spool`` and is sent again by ``resend``.

    ``resend`` posts one serialized ``ExportLogsServiceRequest``; by default the wrapped exporter's own
    OTLP/HTTP client (:func:`exporter_sender`); without one the spool is only written (flush it with
    ``run-identity spool flush``). After a failure, batches go straight to the spool for ``cooldown``
    seconds. ``export`` reports SUCCESS when the batch was delivered or durably spooled.
    """

    def __init__(
        self,
        exporter: LogRecordExporter,
        spool: Spool | str | os.PathLike[str],
        *,
        resend: Send | None = None,
        replay_at_start: bool = True,
        cooldown: float = 5.0,
    ) -> None:
        self.exporter = exporter
        super().__init__(exporter, spool, resend, replay_at_start=replay_at_start, cooldown=cooldown)

    def _encode(self, batch: Sequence[ReadableLogRecord]) -> bytes:
        return encode_logs(batch).SerializeToString()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self._export(batch, lambda b: self.exporter.export(b) == LogRecordExportResult.SUCCESS)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self) -> None:
        if self._final_replay(5.0):
            self.exporter.shutdown()  # type: ignore[no-untyped-call]


class SpoolingSpanExporter(_Spooling[ReadableSpan], SpanExporter):
    """Wraps a span exporter like :class:`SpoolingLogExporter` (``resend`` posts to ``…/v1/traces``)."""

    def __init__(
        self,
        exporter: SpanExporter,
        spool: Spool | str | os.PathLike[str],
        *,
        resend: Send | None = None,
        replay_at_start: bool = True,
        cooldown: float = 5.0,
    ) -> None:
        self.exporter = exporter
        super().__init__(exporter, spool, resend, replay_at_start=replay_at_start, cooldown=cooldown)

    def _encode(self, batch: Sequence[ReadableSpan]) -> bytes:
        return encode_spans(batch).SerializeToString()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._export(spans, lambda b: self.exporter.export(b) == SpanExportResult.SUCCESS)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self) -> None:
        if self._final_replay(5.0):
            self.exporter.shutdown()


def spooling_otlp_exporters(
    endpoint: str,
    spool_dir: str | os.PathLike[str],
    *,
    timeout: float = 10.0,
    cooldown: float = 5.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[SpoolingSpanExporter, SpoolingLogExporter]:
    """OTLP/HTTP span and log exporters to ``endpoint`` (a base URL), spooling into ``spool_dir``; replays
    go through each exporter's own client."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    directory = Path(spool_dir)
    extra = dict(headers or {})
    spans = SpoolingSpanExporter(
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout, headers=extra),
        directory / TRACES_SPOOL,
        cooldown=cooldown,
    )
    logs = SpoolingLogExporter(
        OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=timeout, headers=extra),
        directory / LOGS_SPOOL,
        cooldown=cooldown,
    )
    return spans, logs


def flush_spool_dir(
    spool_dir: str | os.PathLike[str],
    endpoint: str,
    *,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> dict[str, DrainResult]:
    """Send ``spool_dir``'s trace and log spools to the OTLP/HTTP ``endpoint``; {name: DrainResult}."""
    base = endpoint.rstrip("/")
    directory = Path(spool_dir)
    out: dict[str, DrainResult] = {}
    for name, signal in ((TRACES_SPOOL, "traces"), (LOGS_SPOOL, "logs")):
        spool = Spool(directory / name, backoff=0.0)
        if spool.path.exists() and spool.pending():
            sender = OtlpHttpSender(f"{base}/v1/{signal}", timeout=timeout, headers=headers)
            out[name] = spool.drain(sender, ignore_backoff=True)
    return out
