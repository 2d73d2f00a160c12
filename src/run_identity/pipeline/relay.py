"""``run-identity relay``: a collector hop that keeps what it acknowledged, through ``kill -9`` of either side.

The relay receives OTLP (HTTP, and gRPC with ``grpcio``) like ``run-identity serve`` (the same receiver, with
its limits and back-pressure) and forwards it over OTLP/HTTP, traces to one destination and logs (manifests
and receipts among them) to another. Its guarantee:

* **acknowledged means on disk**: a request is answered with success only once it is written, as one
  export request, into the relay's spool folder and fsynced (:class:`run_identity.pipeline.spool.Spool`: temporary
  file, fsync, rename, folder fsync). A relay killed with SIGKILL loses nothing it acknowledged: the next
  start sends what the spool holds. A request that cannot be made durable (disk full, the spool at its size
  cap) is answered 503 with ``Retry-After`` (``UNAVAILABLE`` over gRPC), which the sender retries.
* **forwarded until the destination says so**: a spooled request leaves the spool only when the destination
  answered 2xx. Every other outcome, a refused connection, a connection reset or closed before the answer
  (the destination killed while the request was in flight), a timeout, 408, 429 or 5xx, keeps it and tries
  again with exponential backoff (``backoff`` up to ``max_backoff`` seconds), for as long as it takes: an
  entry is never given up on for failing (``max_attempts`` is unbounded by default). Only a request the
  destination refuses for good (another 4xx) is moved to the spool's ``dead/`` folder, counted and logged.
  A request may thus arrive twice (sent, then the relay killed before it removed it): the verifier counts
  copies, it never takes one for another run. A request refused for good is split and its halves sent on
  their own, down to single records (``_split.SplittingSender``), so one bad record (a destination such as
  ``tlog serve`` refuses a whole request for it) never takes the good ones of its request down with it:
  only the request as received goes to ``dead/``, its good records having been delivered.

This is the hop where rotel 0.0.1a15 loses data: it acknowledges a batch to the application when it has
it in memory, and drops it when its request to the destination fails other than by a refused connection
(e.g. the destination killed with the request in flight). See the collector configuration's README.

Each signal has its own spool folder (``traces/`` and ``logs/`` under the relay's folder) and forwarding
thread, so one destination being down never holds the other signal up. Entries are sent oldest first,
one request at a time per signal.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from run_identity.pipeline._split import SplittingSender
from run_identity.pipeline._spool_store import Spool, SpoolFullError
from run_identity.pipeline.senders import OtlpHttpSender
from run_identity.pipeline.serve import ServeHandle

__all__ = ["RelayCounts", "RelayHandle", "RelaySink", "start_relay"]

_logger = logging.getLogger("run_identity.relay")

#: Attempts per entry before it is dead-lettered: never, in practice (a relay does not give up on data).
UNBOUNDED_ATTEMPTS = 1 << 62


@dataclass
class RelayCounts:
    """What the relay has done so far."""

    requests: int = 0
    rejected_requests: int = 0
    throttled_requests: int = 0
    spans: int = 0
    log_records: int = 0
    forwarded: dict[str, int] = field(default_factory=lambda: {"traces": 0, "logs": 0})
    failed_sends: dict[str, int] = field(default_factory=lambda: {"traces": 0, "logs": 0})
    dead_lettered: dict[str, int] = field(default_factory=lambda: {"traces": 0, "logs": 0})
    started_at: float = field(default_factory=time.time)


class _Forwarder:
    """Sends one signal's spool to its destination, oldest first, until each entry is taken."""

    def __init__(self, name: str, spool: Spool, url: str, counts: RelayCounts, lock: threading.Lock, timeout: float):
        self.name, self.spool, self.counts, self._lock = name, spool, counts, lock
        self._send = SplittingSender(name, OtlpHttpSender(url, timeout=timeout))
        self.url = url
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"run-identity-relay-{name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent, _, dead, failed = self.spool.drain(self._send)
                due = self.spool.next_due()
            except Exception as exc:  # the forwarding thread must outlive any one failure; entries stay
                _logger.error("relay: cannot forward the %s spool %s: %s", self.name, self.spool.path, exc)
                sent = dead = failed = 0
                due = 1.0
            if sent or dead or failed:
                with self._lock:
                    self.counts.forwarded[self.name] += sent
                    self.counts.dead_lettered[self.name] += dead
                    self.counts.failed_sends[self.name] += failed
            if failed:
                _logger.info(
                    "%s: %d attempt(s) failed (destination %s); the requests stay spooled and are sent again",
                    self.name,
                    failed,
                    self.url,
                )
            # Nothing waiting: sleep until a new request wakes us; else until the next entry is due.
            self._wake.wait(60.0 if due is None else max(due, 0.02))
            self._wake.clear()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)


class RelaySink:
    """The receiver's sink for the relay: each request is spooled durably, then forwarded (thread-safe).

    Offers what :class:`run_identity.pipeline.serve._http.Server` and the gRPC services use of a sink
    (``accept_traces``, ``accept_logs``, ``reject``, ``summary``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        traces_url: str,
        logs_url: str,
        max_bytes: int = 1024 * 1024 * 1024,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        max_attempts: int = UNBOUNDED_ATTEMPTS,
        timeout: float = 10.0,
    ) -> None:
        self.directory = Path(directory)
        self.counts = RelayCounts()
        self._lock = threading.Lock()
        spools = {
            name: Spool(
                self.directory / name,
                max_bytes=max_bytes,
                max_attempts=max_attempts,
                backoff=backoff,
                max_backoff=max_backoff,
            )
            for name in ("traces", "logs")
        }
        self.pending_at_start = {name: spool.pending() for name, spool in spools.items()}
        self._forwarders = {
            "traces": _Forwarder("traces", spools["traces"], traces_url, self.counts, self._lock, timeout),
            "logs": _Forwarder("logs", spools["logs"], logs_url, self.counts, self._lock, timeout),
        }

    def _spool(self, name: str, payload: bytes) -> None:
        try:
            self._forwarders[name].spool.append(payload)  # written and fsynced, or raises
        except SpoolFullError:
            _logger.error("relay: the %s spool is full; answering 503 until it drains", name)
            raise
        self._forwarders[name].wake()

    def accept_traces(self, request: ExportTraceServiceRequest) -> None:
        """Spool a traces request durably; raises OSError when it cannot be (the receiver answers 503)."""
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        if spans:
            self._spool("traces", request.SerializeToString())
        with self._lock:
            self.counts.requests += 1
            self.counts.spans += spans

    def accept_logs(self, request: ExportLogsServiceRequest) -> None:
        """Spool a logs request durably (all its records: the destination routes the manifests)."""
        records = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        if records:
            self._spool("logs", request.SerializeToString())
        with self._lock:
            self.counts.requests += 1
            self.counts.log_records += records

    def reject(self, *, throttled: bool = False) -> None:
        with self._lock:
            if throttled:
                self.counts.throttled_requests += 1
            else:
                self.counts.rejected_requests += 1

    def pending(self) -> dict[str, int]:
        """Requests waiting in each spool now."""
        return {name: f.spool.pending() for name, f in self._forwarders.items()}

    def summary(self) -> dict[str, Any]:
        with self._lock:
            counts = asdict(self.counts)
        started = counts.pop("started_at")
        return {
            "received": counts,
            "pending": self.pending(),
            "pending_at_start": dict(self.pending_at_start),
            "destinations": {name: f.url for name, f in self._forwarders.items()},
            "uptime_seconds": round(time.time() - started, 3),
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop forwarding (what is not yet sent stays in the spool for the next start)."""
        for forwarder in self._forwarders.values():
            forwarder.stop(timeout)


class RelayHandle(ServeHandle):
    """A relay receiving on background threads (serve's receiver, its sink a :class:`RelaySink`); :meth:`stop`
    (or leaving ``with``) shuts it down."""

    @property
    def relay(self) -> RelaySink:
        """The sink, as the relay's own (its spool counts)."""
        return cast(RelaySink, self.sink)


def _signal_url(endpoint: str, path: str) -> str:
    """An OTLP/HTTP base endpoint with the signal's path appended (as OTLP exporters do)."""
    return endpoint.rstrip("/") + path


def start_relay(
    directory: str | os.PathLike[str],
    *,
    traces_endpoint: str,
    logs_endpoint: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    grpc_port: int | None = None,
    backoff: float = 0.25,
    max_backoff: float = 5.0,
    max_bytes: int = 1024 * 1024 * 1024,
    verbose: bool = False,
) -> RelayHandle:
    """Receive OTLP on ``host:port`` (0 picks a port; with ``grpc_port``, OTLP/gRPC too), spool into
    ``directory`` and forward to ``traces_endpoint`` / ``logs_endpoint`` (OTLP/HTTP base URLs; ``/v1/traces``
    and ``/v1/logs`` are appended; logs go to the traces destination when none is given).

    Raises OSError when an address cannot be bound,
    :class:`run_identity.pipeline.serve.GrpcUnavailable` for gRPC without grpcio.
    """
    from run_identity.pipeline.serve._grpc import start_grpc
    from run_identity.pipeline.serve._http import ServeLimits, Server

    sink = RelaySink(
        directory,
        traces_url=_signal_url(traces_endpoint, "/v1/traces"),
        logs_url=_signal_url(logs_endpoint or traces_endpoint, "/v1/logs"),
        max_bytes=max_bytes,
        backoff=backoff,
        max_backoff=max_backoff,
    )
    limits = ServeLimits()
    try:
        server = Server((host, port), sink, verbose=verbose, limits=limits)  # type: ignore[arg-type]
    except BaseException:
        sink.close()
        raise
    grpc_server, bound = None, None
    if grpc_port is not None:
        try:
            grpc_server, bound = start_grpc(sink, host, grpc_port, limits)  # type: ignore[arg-type]
        except BaseException:
            server.server_close()
            sink.close()
            raise
    thread = threading.Thread(target=server.serve_forever, name="run-identity-relay", daemon=True)
    thread.start()
    return RelayHandle(server, thread, grpc_server, bound)
