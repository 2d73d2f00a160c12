"""``run-identity tlog serve``: the transparency log's OTLP/HTTP endpoint, run by a party other than the producer.

``POST <any path ending in>/v1/logs`` takes OTLP logs requests (``application/x-protobuf`` or
``application/json``, plain, gzip or deflate), as a collector forwards them. Every ``run_identity.manifest``
record must hold a manifest whose ``statement`` (§8) and ``signature`` parse strictly and whose signature
verifies under a key of the log's keyring (the producers it accepts); one bad record refuses the whole request
with 400 and nothing of it is appended. Other records are ignored. Optionally (``max_age``) a statement
declared too long before it arrives is refused too, so the log's acceptance bounds how far a producer can
back-date ``declared_at``. The entries (docs/spec.md §15) of a good request are appended (idempotent by leaf
hash) and durable before the 200.

A publisher thread signs a new checkpoint, with its tiles, whenever entries arrived (every ``interval``
seconds at most); with witnesses, it first asks each for a cosignature (c2sp.org/tlog-witness
``add-checkpoint``, with a consistency proof from the size that witness last cosigned) and publishes the
checkpoint with the cosignatures that verify. ``GET`` serves the log folder's public files
(``checkpoint``, ``log.vkey``, ``tile/...``) as a static server would.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from run_identity.core.errors import RunIdentityError
from run_identity.core.keys import Keyring
from run_identity.core.note import Checkpoint, Note, NoteError, NoteSignature, NoteVerifier, open_note
from run_identity.core.tlog import TileReader, TlogError, format_add_checkpoint
from run_identity.core.tlog_fetch import fetcher
from run_identity.pipeline.serve._http import CappedHTTPServer, read_body
from run_identity.pipeline.serve._otlp import MAX_BODY, RequestError, decode_request, decompress
from run_identity.pipeline.tlog_entries import entries_of_request
from run_identity.pipeline.tlog_store import LogStore, StoreError

__all__ = ["LogServer", "Witness", "entries_of_request", "start_log_server"]

_logger = logging.getLogger("run_identity.tlog")
#: Seconds a checkpoint waits for the witnesses' cosignatures before it is published without the missing ones
#: (a checkpoint at least every second); a slower answer still counts for the witness's next submission.
WITNESS_WAIT = 0.4
#: Seconds before one add-checkpoint request is abandoned.
WITNESS_TIMEOUT = 10.0
#: Requests handled at once; beyond, 503 with Retry-After (OTLP exporters retry).
MAX_CONCURRENT = 16
#: Seconds a connection may stay silent before it is closed.
READ_TIMEOUT = 30.0
#: Seconds to receive one whole request body, however it trickles in (a request holds a slot meanwhile).
BODY_TIMEOUT = 15.0
#: Open connections (each holds a thread); past it a new one is answered 503 at once, without a thread.
MAX_CONNECTIONS = 256
_PUBLIC = re.compile(r"(checkpoint|log\.vkey|tile/(entries|[0-9]{1,2})/(x[0-9]{3}/)*[0-9]{3}(\.p/[0-9]{1,3})?)")


@dataclass(frozen=True)
class Witness:
    """A witness to ask for cosignatures: its submission prefix (``<url>/add-checkpoint``) and its key."""

    url: str
    verifier: NoteVerifier


class _Handler(BaseHTTPRequestHandler):
    server: LogServer
    protocol_version = "HTTP/1.1"
    server_version = "run-identity-tlog"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(READ_TIMEOUT)  # a silent client is let go

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _reply(
        self, status: HTTPStatus, body: bytes, content_type: str, *, close: bool = False, cache: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if cache:
            self.send_header("Cache-Control", cache)
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "1")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        if path == "healthz":
            self._reply(HTTPStatus.OK, b"ok\n", "text/plain")
            return
        if not _PUBLIC.fullmatch(path):
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        try:
            data = (self.server.store.directory / path).read_bytes()
        except OSError:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        if path.startswith("tile/"):  # immutable (tlog-tiles): a tile path names its content
            self._reply(HTTPStatus.OK, data, "application/octet-stream", cache="public, max-age=31536000, immutable")
        else:
            self._reply(HTTPStatus.OK, data, "text/plain; charset=utf-8", cache="no-cache")

    def _read_body(self, length: int) -> bytes:
        return read_body(self.rfile, length, self.server.body_timeout)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        content_type = self.headers.get("Content-Type", "")
        json_reply = content_type.split(";", 1)[0].strip().lower() == "application/json"
        body_read = False
        if not self.server.slots.acquire(blocking=False):
            self._reply(
                HTTPStatus.SERVICE_UNAVAILABLE, b"too many requests at once; retry later\n", "text/plain", close=True
            )
            return
        try:
            try:
                length = int(self.headers.get("Content-Length", "-1"))
            except ValueError:
                raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
            if length < 0:
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            if length > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            if not path.endswith("/v1/logs"):
                raise RequestError(HTTPStatus.NOT_FOUND, f"no OTLP logs endpoint at {path!r}")
            raw = self._read_body(length)
            body_read = True
            body = decompress(raw, self.headers.get("Content-Encoding", ""))
            request = ExportLogsServiceRequest()
            decode_request(body, content_type, request)
            entries = entries_of_request(request, self.server.keyring, max_age=self.server.max_age)
            self.server.store.append(entries)
        except RequestError as exc:
            self.server.count("rejected")
            self._reply(exc.status, (str(exc) + "\n").encode(), "text/plain", close=not body_read)
            return
        except StoreError as exc:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, (str(exc) + "\n").encode(), "text/plain")
            return
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        finally:
            self.server.slots.release()
        self.server.count("accepted", len(entries))
        if json_reply:
            self._reply(HTTPStatus.OK, b"{}", "application/json")
        else:
            self._reply(HTTPStatus.OK, ExportLogsServiceResponse().SerializeToString(), "application/x-protobuf")


class LogServer(CappedHTTPServer):
    """The log's HTTP server with its publisher and witness threads; stop with :meth:`stop`."""

    def __init__(
        self,
        address: tuple[str, int],
        store: LogStore,
        keyring: Keyring,
        *,
        witnesses: Sequence[Witness] = (),
        interval: float = 0.5,
        max_age: float | None = None,
        verbose: bool = False,
    ) -> None:
        self.store = store
        self.max_age = max_age
        self.keyring = keyring
        self.witnesses = list(witnesses)
        self.interval = interval
        self.verbose = verbose
        self.counts = {"accepted": 0, "rejected": 0}
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self.body_timeout = BODY_TIMEOUT
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._witness_sizes = {w.url: 0 for w in self.witnesses}
        self._witness_busy = {w.url: threading.Lock() for w in self.witnesses}
        self._asking = ThreadPoolExecutor(max(1, len(self.witnesses)), thread_name_prefix="tlog-witness")
        super().__init__(address, _Handler, max_connections=MAX_CONNECTIONS)
        self._workers = [
            threading.Thread(target=self.serve_forever, name="tlog-http", daemon=True),
            threading.Thread(target=self._publish_loop, name="tlog-publish", daemon=True),
        ]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def count(self, what: str, n: int = 1) -> None:
        with self._count_lock:
            self.counts[what] += n

    def start(self) -> LogServer:
        for thread in self._workers:
            thread.start()
        return self

    def _publish_loop(self) -> None:
        cosign = self._cosign if self.witnesses else None
        while not self._stop.wait(self.interval):
            try:
                self.store.publish(cosign)
            except (OSError, RunIdentityError) as exc:
                _logger.error("tlog: cannot publish a checkpoint: %s", exc)

    def _cosign(self, checkpoint: Checkpoint, note: Note) -> list[NoteSignature]:
        """The witnesses' verified cosignatures of a checkpoint about to be published, asked in parallel and
        awaited :data:`WITNESS_WAIT` seconds. A witness that fails or is late costs its cosignature, not the
        checkpoint; one still busy with an earlier checkpoint is skipped."""
        asked = {}
        for witness in self.witnesses:
            if self._witness_busy[witness.url].acquire(blocking=False):
                asked[self._asking.submit(self._ask_once, witness, checkpoint, note.to_bytes())] = witness
        done, _ = wait(asked, timeout=WITNESS_WAIT)
        return [line for future in done for line in future.result()]

    def _ask_once(self, witness: Witness, checkpoint: Checkpoint, note: bytes) -> list[NoteSignature]:
        try:
            return self._ask(witness, checkpoint, note)
        except (OSError, ValueError, RunIdentityError) as exc:
            _logger.warning("tlog: witness %s: %s", witness.url, exc)
            return []
        finally:
            self._witness_busy[witness.url].release()

    def _ask(self, witness: Witness, checkpoint: Checkpoint, note: bytes) -> list[NoteSignature]:
        """One add-checkpoint exchange (c2sp.org/tlog-witness), retried once with the size a 409 names."""
        for _ in range(2):
            old = self._witness_sizes[witness.url]
            if old > checkpoint.size:
                raise TlogError(f"the witness has seen size {old}, beyond this checkpoint's {checkpoint.size}")
            reader = TileReader(fetcher(str(self.store.directory)), checkpoint.size)
            body = format_add_checkpoint(old, reader.consistency_proof(old), note)
            request = urllib.request.Request(witness.url.rstrip("/") + "/add-checkpoint", data=body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=WITNESS_TIMEOUT) as response:
                    returned: bytes = response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == HTTPStatus.CONFLICT:
                    size = exc.read().decode("ascii", "replace").strip()
                    if not size.isdigit():
                        raise TlogError(f"add-checkpoint answered 409 without a tree size ({size[:40]!r})") from None
                    self._witness_sizes[witness.url] = int(size)
                    continue
                raise TlogError(f"add-checkpoint answered HTTP {exc.code}") from None
            try:
                cosigned, _ = open_note(checkpoint.text().encode() + b"\n" + returned, [witness.verifier])
            except NoteError as exc:
                raise TlogError(f"no valid cosignature returned: {exc}") from None
            self._witness_sizes[witness.url] = checkpoint.size
            key = (witness.verifier.name, witness.verifier.key_id)
            return [s for s in cosigned.signatures if (s.name, s.key_id) == key]
        raise TlogError("add-checkpoint answered 409 twice")

    def stop(self) -> None:
        """Stop serving, publish what is durable, release the folder."""
        self._stop.set()
        self.shutdown()
        self.server_close()
        for thread in self._workers[1:]:
            thread.join(timeout=15)
        try:
            self.store.publish(self._cosign if self.witnesses else None)
        finally:
            self._asking.shutdown(wait=False, cancel_futures=True)
            self.store.close()


def start_log_server(
    store: LogStore,
    keyring: Keyring,
    *,
    host: str = "127.0.0.1",
    port: int = 4320,
    witnesses: Sequence[Witness] = (),
    interval: float = 0.5,
    max_age: float | None = None,
    verbose: bool = False,
) -> LogServer:
    """Listen on ``host:port`` (0: any free port) and start the publisher (and witness) threads."""
    server = LogServer(
        (host, port), store, keyring, witnesses=witnesses, interval=interval, max_age=max_age, verbose=verbose
    )
    return server.start()
