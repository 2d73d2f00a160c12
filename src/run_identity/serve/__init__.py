"""``run-identity serve``: the independent verifier's OTLP/HTTP endpoint.

An operator's collector exports a copy of its traces and logs here. The receiver takes ``POST /v1/traces``
and ``POST /v1/logs`` (any path ending so, e.g. ``/manifests/v1/logs``) in ``application/x-protobuf`` or
``application/json``, plain or ``Content-Encoding: gzip``, and appends what it receives as OTLP-JSON lines,
the shape of the ``otelcol-contrib`` file exporter (see :mod:`run_identity.export_file`):

* ``traces.jsonl``: every traces request, one ``ExportTraceServiceRequest`` per line;
* ``manifests.jsonl``: the ``run_identity.manifest`` log records of each logs request;
* ``logs.jsonl``: every other log record.

``GET /summary`` returns counts and a verification summary of everything written so far (computed with the
verifier library when a keyring is given); ``GET /healthz`` answers ``ok``.

This module is verifier-side: it imports nothing from the span processor or manifest emission.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from run_identity.attributes import RUN_IDENTITY_ID
from run_identity.errors import RunIdentityError
from run_identity.keys import Keyring
from run_identity.serve._otlp import (
    MAX_BODY,
    RequestError,
    decode_request,
    decompress,
    otlp_json_line,
    split_manifests,
)

__all__ = [
    "LOGS_FILE",
    "MANIFESTS_FILE",
    "TRACES_FILE",
    "OtlpSink",
    "ServeHandle",
    "SinkCounts",
    "decode_request",
    "otlp_json_line",
    "split_manifests",
    "start_server",
    "verification_summarizer",
]

# The same names as run_identity.export_file's (not imported: that module pulls in the OTel SDK).
TRACES_FILE = "traces.jsonl"
MANIFESTS_FILE = "manifests.jsonl"
LOGS_FILE = "logs.jsonl"


@dataclass
class SinkCounts:
    """What the receiver has accepted so far."""

    requests: int = 0
    rejected_requests: int = 0
    spans: int = 0
    run_spans: int = 0
    manifests: int = 0
    other_logs: int = 0
    started_at: float = field(default_factory=time.time)


class _LineWriter:
    """Append-only OTLP-JSON lines file; whole lines, flushed, under the sink's lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def write(self, line: bytes) -> None:
        if self._file is None:
            # Created 0600 (the lines hold prompts); kept open until close().
            self._file = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


Summarizer = Callable[[list[Path]], dict[str, Any]]


def verification_summarizer(
    keyring: Keyring, *, allow: Iterable[str] = (), max_failures: int = 20
) -> Summarizer:
    """A summarizer that verifies the written files with :class:`run_identity.verify.Verifier`.

    ``allow`` are result codes the policy tolerates. The summary is the verifier's summary object plus up
    to ``max_failures`` failed runs. Raises ValueError for an unknown code.
    """
    from run_identity.verify import Policy, Verifier

    verifier = Verifier(keyring, Policy(allow=allow))

    def summarize(paths: list[Path]) -> dict[str, Any]:
        if not paths:
            return {"runs": 0, "passed": True, "counts": {}}
        report = verifier.verify(paths)
        out = report.summary_json()
        out["failures"] = [r.to_json() for r in itertools.islice(report.failures(), max_failures)]
        return out

    return summarize


class OtlpSink:
    """Writes received OTLP requests into ``directory`` and counts them. Thread-safe.

    ``summarize``, when given, computes the verification part of :meth:`summary` from the written files.
    """

    def __init__(self, directory: str | os.PathLike[str], *, summarize: Summarizer | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._traces = _LineWriter(self.directory / TRACES_FILE)
        self._manifests = _LineWriter(self.directory / MANIFESTS_FILE)
        self._logs = _LineWriter(self.directory / LOGS_FILE)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._summarize = summarize
        self.counts = SinkCounts()

    def accept_traces(self, request: ExportTraceServiceRequest) -> None:
        spans = run_spans = 0
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans += len(ss.spans)
                run_spans += sum(1 for s in ss.spans if any(a.key == RUN_IDENTITY_ID for a in s.attributes))
        line = otlp_json_line(request) if spans else b""
        with self._changed:
            if line:
                self._traces.write(line)
            self.counts.requests += 1
            self.counts.spans += spans
            self.counts.run_spans += run_spans
            self._changed.notify_all()

    def accept_logs(self, request: ExportLogsServiceRequest) -> None:
        manifests, others = split_manifests(request)
        n_manifests = sum(len(sl.log_records) for rl in manifests.resource_logs for sl in rl.scope_logs)
        n_others = sum(len(sl.log_records) for rl in others.resource_logs for sl in rl.scope_logs)
        manifest_line = otlp_json_line(manifests) if n_manifests else b""
        other_line = otlp_json_line(others) if n_others else b""
        with self._changed:
            if manifest_line:
                self._manifests.write(manifest_line)
            if other_line:
                self._logs.write(other_line)
            self.counts.requests += 1
            self.counts.manifests += n_manifests
            self.counts.other_logs += n_others
            self._changed.notify_all()

    def reject(self) -> None:
        with self._lock:
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
        return [w.path for w in (self._traces, self._manifests) if w.path.exists()]

    def summary(self) -> dict[str, Any]:
        """Counts, files and (with a summarizer) the verification of everything written so far."""
        with self._lock:
            c = self.counts
            out: dict[str, Any] = {
                "received": {
                    "requests": c.requests,
                    "rejected_requests": c.rejected_requests,
                    "spans": c.spans,
                    "run_spans": c.run_spans,
                    "manifests": c.manifests,
                    "other_logs": c.other_logs,
                },
                "files": {
                    "traces": str(self._traces.path),
                    "manifests": str(self._manifests.path),
                    "logs": str(self._logs.path),
                },
                "uptime_seconds": round(time.time() - c.started_at, 3),
            }
            if self._summarize is not None:
                # Under the lock: no line is half written while the verifier reads the files.
                try:
                    out["verification"] = self._summarize(self.files())
                except RunIdentityError as exc:
                    out["verification"] = {"error": str(exc)}
        return out

    def close(self) -> None:
        with self._lock:
            for writer in (self._traces, self._manifests, self._logs):
                writer.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "run-identity-serve"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/summary":
            self._reply(HTTPStatus.OK, orjson.dumps(self.server.sink.summary()), "application/json")
        elif path == "/healthz":
            self._reply(HTTPStatus.OK, b"ok\n", "text/plain")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        content_type = self.headers.get("Content-Type", "")
        json_reply = content_type.split(";", 1)[0].strip().lower() == "application/json"
        try:
            length = int(self.headers.get("Content-Length", "-1"))
            if length < 0:
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            if length > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            body = decompress(self.rfile.read(length), self.headers.get("Content-Encoding", ""))
            response: Message
            if path.endswith("/v1/traces"):
                traces = ExportTraceServiceRequest()
                decode_request(body, content_type, traces)
                self.server.sink.accept_traces(traces)
                response = ExportTraceServiceResponse()
            elif path.endswith("/v1/logs"):
                logs = ExportLogsServiceRequest()
                decode_request(body, content_type, logs)
                self.server.sink.accept_logs(logs)
                response = ExportLogsServiceResponse()
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no OTLP signal at {path!r}")
        except RequestError as exc:
            self.server.sink.reject()
            if json_reply:
                self._reply(exc.status, orjson.dumps({"code": 3, "message": str(exc)}), "application/json")
            else:
                self._reply(exc.status, str(exc).encode(), "text/plain")
            return
        except ValueError:
            self.server.sink.reject()
            self._reply(HTTPStatus.BAD_REQUEST, b"bad Content-Length\n", "text/plain")
            return
        if json_reply:
            self._reply(HTTPStatus.OK, b"{}", "application/json")
        else:
            self._reply(HTTPStatus.OK, response.SerializeToString(), "application/x-protobuf")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sink: OtlpSink, *, verbose: bool) -> None:
        self.sink = sink
        self.verbose = verbose
        super().__init__(address, _Handler)


class ServeHandle:
    """A receiver serving on a background thread; :meth:`stop` (or leaving ``with``) shuts it down."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.sink = server.sink

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, the OTLP/HTTP endpoint to give exporters (they append ``/v1/traces``, ``/v1/logs``)."""
        return f"http://{self.host}:{self.port}"

    def summary(self) -> dict[str, Any]:
        return self.sink.summary()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self.sink.close()

    def __enter__(self) -> ServeHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    directory: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    summarize: Summarizer | None = None,
    verbose: bool = False,
) -> ServeHandle:
    """Serve OTLP/HTTP on ``host:port`` (0 picks a port) in a background thread, writing into ``directory``.

    Raises ``OSError`` when the address cannot be bound.
    """
    sink = OtlpSink(directory, summarize=summarize)
    server = _Server((host, port), sink, verbose=verbose)
    thread = threading.Thread(target=server.serve_forever, name="run-identity-serve", daemon=True)
    thread.start()
    return ServeHandle(server, thread)
