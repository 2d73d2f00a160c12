"""The HTTP side of ``run-identity serve``: limits, the request handler and the threaded server.

See :mod:`run_identity.pipeline.serve` for what the receiver promises; this module enforces it per request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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

from run_identity.pipeline.serve._otlp import MAX_BODY, RequestError, decode_request, decompress
from run_identity.pipeline.serve._sink import OtlpSink

__all__ = ["WORK_FACTOR", "CappedHTTPServer", "ServeLimits", "Server", "read_body"]

_logger = logging.getLogger("run_identity.serve")


@dataclass(frozen=True)
class ServeLimits:
    """How much the receiver takes at once; beyond it a request is answered 503 or 429 with
    ``Retry-After``, which OTLP exporters retry.

    ``read_timeout``: seconds a connection may stay silent (headers or body) before it is closed;
    ``body_timeout``: seconds to receive one whole body; ``max_concurrent``: requests decoded and written
    at once; ``max_bytes``: memory for requests being handled, estimated as ``WORK_FACTOR`` times the bytes
    of each body (compressed, then decompressed): decoding and re-encoding a body takes about that much (a
    request that alone needs more is refused with 413);
    ``max_connections``: open connections (each holds a thread); ``backlog``: the listen queue.
    """

    read_timeout: float = 30.0
    body_timeout: float = 120.0
    max_concurrent: int = 16
    max_bytes: int = 256 * 1024 * 1024
    max_connections: int = 512
    backlog: int = 1024
    retry_after: int = 1

    def __post_init__(self) -> None:
        if (
            min(self.read_timeout, self.body_timeout) <= 0
            or min(self.max_concurrent, self.max_bytes, self.max_connections, self.backlog, self.retry_after) <= 0
        ):
            raise ValueError("serve limits must be positive")


#: Memory needed to handle a request, per byte of its body: the body, the decoded protobuf, the JSON tree
#: and the JSON line (measured here: 8 posts of 60 MB at once peaked at about 4.5 bytes per body byte).
WORK_FACTOR = 4


class _Budget:
    """Memory reserved by requests being handled, at most ``limit``; reservations never wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


class _Busy(Exception):
    """The receiver is at one of its limits: answer ``status`` with Retry-After."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        self.status = status
        super().__init__(message)


def read_body(rfile: Any, length: int, timeout: float) -> bytes:
    """``length`` bytes of a request body from ``rfile``, all within ``timeout`` seconds however slowly they
    come (TimeoutError otherwise; ConnectionError when the client closes first)."""
    deadline = time.monotonic() + timeout
    chunks, left = [], length
    while left:
        if time.monotonic() > deadline:
            raise TimeoutError("the body was not received in time")
        chunk = rfile.read1(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the connection closed in the middle of the body")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "run-identity-serve"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.read_timeout)  # a silent client is let go

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(
        self, status: HTTPStatus, body: bytes, content_type: str, *, close: bool = False, retry_after: int = 0
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after:
            self.send_header("Retry-After", str(retry_after))
        if close:
            # The body was not read: closing is the only way it is not parsed as the next request.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, *, json_reply: bool, close: bool, retry: int = 0) -> None:
        if json_reply:
            body, media = orjson.dumps({"code": 14 if retry else 3, "message": message}), "application/json"
        else:
            body, media = (message + "\n").encode(), "text/plain"
        self._reply(status, body, media, close=close, retry_after=retry)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/summary":
            self._reply(HTTPStatus.OK, orjson.dumps(self.server.sink.summary()), "application/json")
        elif path == "/healthz":
            self._reply(HTTPStatus.OK, b"ok\n", "text/plain")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _read_body(self, length: int) -> bytes:
        return read_body(self.rfile, length, self.server.limits.body_timeout)

    def _discard_body(self, length: int) -> bool:
        """Read ``length`` bytes and drop them; False when the client stopped sending in time."""
        deadline = time.monotonic() + self.server.limits.body_timeout
        left = length
        try:
            while left:
                if time.monotonic() > deadline:
                    return False
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    return False
                left -= len(chunk)
        except OSError:
            return False
        return True

    def do_POST(self) -> None:
        server = self.server
        path = self.path.split("?", 1)[0].rstrip("/")
        content_type = self.headers.get("Content-Type", "")
        json_reply = content_type.split(";", 1)[0].strip().lower() == "application/json"
        body_read = False
        held = 0
        slot = False
        try:
            try:
                length = int(self.headers.get("Content-Length", "-1"))
            except ValueError:
                raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
            if length < 0:
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            if length > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            if not path.endswith(("/v1/traces", "/v1/logs")):
                raise RequestError(HTTPStatus.NOT_FOUND, f"no OTLP signal at {path!r}")
            if length * WORK_FACTOR > server.budget.limit:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body larger than the memory cap")
            slot = server.slots.acquire(blocking=False)
            if not slot:
                raise _Busy(HTTPStatus.SERVICE_UNAVAILABLE, "too many requests at once; retry later")
            if not server.budget.take(length * WORK_FACTOR):
                raise _Busy(HTTPStatus.TOO_MANY_REQUESTS, "receiver memory is full; retry later")
            held = length * WORK_FACTOR
            raw = self._read_body(length)
            body_read = True
            encoding = self.headers.get("Content-Encoding", "")
            body = decompress(raw, encoding)
            if len(body) > length:
                more = (len(body) - length) * WORK_FACTOR
                if held + more > server.budget.limit:
                    raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "decompressed body over the memory cap")
                if not server.budget.take(more):
                    raise _Busy(HTTPStatus.TOO_MANY_REQUESTS, "receiver memory is full; retry later")
                held += more
            del raw
            response: Message
            if path.endswith("/v1/traces"):
                traces = ExportTraceServiceRequest()
                decode_request(body, content_type, traces)
                server.sink.accept_traces(traces)
                response = ExportTraceServiceResponse()
            else:
                logs = ExportLogsServiceRequest()
                decode_request(body, content_type, logs)
                server.sink.accept_logs(logs)
                response = ExportLogsServiceResponse()
        except RequestError as exc:
            server.sink.reject()
            self._error(exc.status, str(exc), json_reply=json_reply, close=not body_read)
            return
        except _Busy as exc:
            server.sink.reject(throttled=True)
            if not body_read:
                # Read the body into nothing (no memory held) so the client sees the answer and its
                # Retry-After instead of a connection reset in the middle of its upload.
                body_read = self._discard_body(length)
            self._error(
                exc.status, str(exc), json_reply=json_reply, close=not body_read, retry=server.limits.retry_after
            )
            return
        except RecursionError:
            server.sink.reject()
            self._error(HTTPStatus.BAD_REQUEST, "request nested too deeply", json_reply=json_reply, close=False)
            return
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # a client that stops sending: let its thread go
            return
        except OSError as exc:  # the data could not be made durable: not acknowledged, the exporter retries
            _logger.error("serve: cannot write: %s", exc)
            server.sink.reject(throttled=True)
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "cannot store the request",
                json_reply=json_reply,
                close=not body_read,
                retry=server.limits.retry_after,
            )
            return
        finally:
            if held:
                server.budget.give(held)
            if slot:
                server.slots.release()
        if json_reply:
            self._reply(HTTPStatus.OK, b"{}", "application/json")
        else:
            self._reply(HTTPStatus.OK, response.SerializeToString(), "application/x-protobuf")


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 24\r\nConnection: close\r\n\r\ntoo many connections now\n"
)


class CappedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that caps its open connections: every connection holds a thread, so past
    ``max_connections`` a new one is answered 503 with ``Retry-After`` at once, without a thread
    (:meth:`refused` is told). Used by ``serve`` (and the relay) and by ``tlog serve``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, *, max_connections: int) -> None:
        self._connections = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def refused(self) -> None:
        """A connection was turned away at the cap."""

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_BUSY)
            self.refused()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


class Server(CappedHTTPServer):
    def __init__(self, address: tuple[str, int], sink: OtlpSink, *, verbose: bool, limits: ServeLimits) -> None:
        self.sink = sink
        self.verbose = verbose
        self.limits = limits
        self.request_queue_size = limits.backlog  # bursts of connections wait in the kernel, not reset
        self.slots = threading.BoundedSemaphore(limits.max_concurrent)
        self.budget = _Budget(limits.max_bytes)
        super().__init__(address, _Handler, max_connections=limits.max_connections)

    def refused(self) -> None:
        self.sink.reject(throttled=True)
