"""No lost manifests: exporter wrappers that spool undelivered batches to disk and send them again.

OTLP exporters already retry a failed export for a while (``timeout``). When they give up (the collector is
down) or the process ends first, :class:`SpoolingLogExporter` / :class:`SpoolingSpanExporter` append the
batch, encoded as one OTLP export request, to a spool file; at the next start (and after every successful
export) the spool is replayed, oldest first, through a :class:`OtlpHttpSender`, and removed once delivered.
``run-identity spool flush`` does the same by hand.

Spool file format: the ``otelcol-contrib`` file exporter's ``proto`` format, i.e. a sequence of
``ExportLogsServiceRequest`` (``logs.spool.binpb``) or ``ExportTraceServiceRequest`` (``traces.spool.binpb``)
messages, each preceded by its length as 4 bytes big-endian; mode 0600, since manifests hold prompts.
``run-identity verify`` reads it as it is. Appends and replays are serialized across threads and processes
(``fcntl.flock`` on ``<file>.lock``).

Wrappers never raise into the SDK. Their counters (:class:`SpoolStats`) say what failed, what was spooled,
what was replayed and what is still pending.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = [
    "LOGS_SPOOL",
    "TRACES_SPOOL",
    "OtlpHttpSender",
    "Spool",
    "SpoolStats",
    "SpoolingLogExporter",
    "SpoolingSpanExporter",
    "flush_spool_dir",
    "spooling_otlp_exporters",
]

_logger = logging.getLogger(__name__)

LOGS_SPOOL = "logs.spool.binpb"
TRACES_SPOOL = "traces.spool.binpb"
_HEADER = struct.Struct(">I")

Send = Callable[[bytes], bool]


class Spool:
    """Length-prefixed OTLP export requests in one append-only file (mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def append(self, payload: bytes) -> None:
        """Add one request at the end. Raises ``OSError`` when the file cannot be written."""
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, _HEADER.pack(len(payload)) + payload)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read(self) -> tuple[list[bytes], bytes]:
        """(whole entries, unreadable tail) of the file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], b""
        entries, pos = [], 0
        while pos + _HEADER.size <= len(data):
            (size,) = _HEADER.unpack_from(data, pos)
            if pos + _HEADER.size + size > len(data):
                break
            entries.append(data[pos + _HEADER.size : pos + _HEADER.size + size])
            pos += _HEADER.size + size
        return entries, data[pos:]

    def pending(self) -> int:
        """How many requests wait in the spool."""
        with self._locked():
            return len(self._read()[0])

    def drain(self, send: Send) -> tuple[int, int]:
        """Send requests oldest first up to the first refusal, keep the rest; returns (sent, left)."""
        with self._locked():
            entries, tail = self._read()
            if tail:
                # A crash in the middle of an append: keep the bytes aside for a person, never resend them.
                bad = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
                fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with contextlib.closing(os.fdopen(fd, "ab")) as out:
                    out.write(tail)
                _logger.error(
                    "spool %s ended with %d unreadable bytes, kept in %s", self.path, len(tail), bad
                )
            sent = 0
            for payload in entries:
                try:
                    ok = send(payload)
                except Exception:  # a sender's bug must not lose the spool
                    _logger.exception("spool sender failed")
                    ok = False
                if not ok:
                    break
                sent += 1
            left = entries[sent:]
            if sent or tail:
                self._rewrite(left)
            return sent, len(left)

    def _rewrite(self, entries: Sequence[bytes]) -> None:
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for payload in entries:
                out.write(_HEADER.pack(len(payload)) + payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class OtlpHttpSender:
    """Posts serialized OTLP export requests to one OTLP/HTTP signal URL; a 2xx answer is a delivery."""

    def __init__(self, url: str, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = {"Content-Type": "application/x-protobuf", **(headers or {})}

    def __call__(self, payload: bytes) -> bool:
        request = urllib.request.Request(self.url, data=payload, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return 200 <= int(response.status) < 300
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _logger.debug("replay to %s failed: %s", self.url, exc)
            return False


@dataclass
class SpoolStats:
    """Counters of one spooling exporter (read them any time; they only grow, except ``pending``)."""

    exports: int = 0
    export_failures: int = 0
    spooled_batches: int = 0
    spooled_records: int = 0
    spool_write_failures: int = 0
    lost_records: int = 0
    replayed_batches: int = 0
    replay_failures: int = 0
    #: Batches (export requests) waiting in the spool, as this exporter last saw it.
    pending: int = 0


T = TypeVar("T")


class _Spooling(Generic[T]):
    """What the span and log wrappers share: spool on failure, replay when the destination is back."""

    def __init__(
        self,
        spool: Spool | str | os.PathLike[str],
        resend: Send | None,
        *,
        replay_at_start: bool,
        cooldown: float,
    ) -> None:
        self.spool = spool if isinstance(spool, Spool) else Spool(spool)
        self.stats = SpoolStats()
        self._resend = resend
        self._cooldown = cooldown
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._replay_thread: threading.Thread | None = None
        try:
            self.stats.pending = self.spool.pending()
        except OSError as exc:
            _logger.error("cannot read spool %s: %s", self.spool.path, exc)
        if replay_at_start and resend is not None and self.stats.pending:
            self._replay_thread = threading.Thread(target=self.replay, name="run-identity-spool", daemon=True)
            self._replay_thread.start()

    def _encode(self, batch: Sequence[T]) -> bytes:
        raise NotImplementedError

    def replay(self) -> tuple[int, int]:
        """Send what the spool holds now; returns (sent, left)."""
        if self._resend is None:
            return 0, self.stats.pending
        try:
            sent, left = self.spool.drain(self._resend)
        except OSError as exc:
            _logger.error("cannot replay spool %s: %s", self.spool.path, exc)
            return 0, self.stats.pending
        with self._lock:
            self.stats.replayed_batches += sent
            if left:
                self.stats.replay_failures += 1
            self.stats.pending = left
        return sent, left

    def _spool(self, batch: Sequence[T]) -> None:
        try:
            self.spool.append(self._encode(batch))
        except Exception as exc:  # never raise into the SDK; count the loss
            _logger.error("cannot spool %d records to %s: %s", len(batch), self.spool.path, exc)
            with self._lock:
                self.stats.spool_write_failures += 1
                self.stats.lost_records += len(batch)
            return
        with self._lock:
            self.stats.spooled_batches += 1
            self.stats.spooled_records += len(batch)
            self.stats.pending += 1

    def _export(self, batch: Sequence[T], inner: Callable[[Sequence[T]], bool]) -> bool:
        if not batch:
            return True
        with self._lock:
            self.stats.exports += 1
            skip = time.monotonic() < self._down_until
        if skip:
            # The destination failed moments ago: spool now instead of blocking the export thread for another
            # full retry window while the SDK's queue fills up and starts dropping records.
            self._spool(batch)
            return False
        ok = True
        if self.stats.pending and self._resend is not None:
            # Oldest first: the spool goes before this batch; if it cannot, neither can the batch.
            ok = self.replay()[1] == 0
        if ok:
            try:
                ok = inner(batch)
            except Exception as exc:  # exporters should not raise; if one does, spool
                _logger.error("exporter raised: %s", exc)
                ok = False
        if ok:
            return True
        with self._lock:
            self.stats.export_failures += 1
            self._down_until = time.monotonic() + self._cooldown
        self._spool(batch)
        return False

    def _final_replay(self, timeout_s: float) -> None:
        if self._replay_thread is not None:
            self._replay_thread.join(timeout_s)
        if self.stats.pending and self._resend is not None and time.monotonic() >= self._down_until:
            self.replay()


class SpoolingLogExporter(_Spooling[ReadableLogRecord], LogRecordExporter):
    """Wraps a log exporter: a batch it fails to deliver goes to ``spool`` and is sent again by ``resend``.

    ``resend`` posts one serialized ``ExportLogsServiceRequest`` (e.g. :class:`OtlpHttpSender` to
    ``…/v1/logs``); without it the spool is only written (flush it with ``run-identity spool flush``). After a
    failure, batches go straight to the spool for ``cooldown`` seconds.
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
        super().__init__(spool, resend, replay_at_start=replay_at_start, cooldown=cooldown)

    def _encode(self, batch: Sequence[ReadableLogRecord]) -> bytes:
        return encode_logs(batch).SerializeToString()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        ok = self._export(batch, lambda b: self.exporter.export(b) == LogRecordExportResult.SUCCESS)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._final_replay(5.0)
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
        super().__init__(spool, resend, replay_at_start=replay_at_start, cooldown=cooldown)

    def _encode(self, batch: Sequence[ReadableSpan]) -> bytes:
        return encode_spans(batch).SerializeToString()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._export(spans, lambda b: self.exporter.export(b) == SpanExportResult.SUCCESS)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._final_replay(5.0)
        self.exporter.shutdown()


def spooling_otlp_exporters(
    endpoint: str,
    spool_dir: str | os.PathLike[str],
    *,
    timeout: float = 10.0,
    cooldown: float = 5.0,
) -> tuple[SpoolingSpanExporter, SpoolingLogExporter]:
    """OTLP/HTTP span and log exporters to ``endpoint`` (a base URL), spooling into ``spool_dir``."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    directory = Path(spool_dir)
    spans = SpoolingSpanExporter(
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout),
        directory / TRACES_SPOOL,
        resend=OtlpHttpSender(f"{base}/v1/traces", timeout=timeout),
        cooldown=cooldown,
    )
    logs = SpoolingLogExporter(
        OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=timeout),
        directory / LOGS_SPOOL,
        resend=OtlpHttpSender(f"{base}/v1/logs", timeout=timeout),
        cooldown=cooldown,
    )
    return spans, logs


def flush_spool_dir(
    spool_dir: str | os.PathLike[str], endpoint: str, *, timeout: float = 10.0
) -> dict[str, tuple[int, int]]:
    """Send ``spool_dir``'s trace and log spools to the OTLP/HTTP ``endpoint``; {file: (sent, left)}."""
    base = endpoint.rstrip("/")
    directory = Path(spool_dir)
    out: dict[str, tuple[int, int]] = {}
    for name, signal in ((TRACES_SPOOL, "traces"), (LOGS_SPOOL, "logs")):
        spool = Spool(directory / name)
        if spool.path.exists():
            out[name] = spool.drain(OtlpHttpSender(f"{base}/v1/{signal}", timeout=timeout))
    return out
