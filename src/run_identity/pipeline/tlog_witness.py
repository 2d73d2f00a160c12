"""A C2SP tlog-witness (c2sp.org/tlog-witness): cosigns a log's checkpoints that extend what it saw before.

``POST /add-checkpoint`` takes ``old <size>``, a consistency proof and a signed checkpoint. The witness
verifies the checkpoint under the log key it trusts for that origin, checks that ``old`` is the size it last
cosigned (409 with that size otherwise) and that the proof leads from its stored root to the new one, stores
the new checkpoint durably, and answers with its cosignature/v1 line. ``GET /<sha256(origin) hex>/checkpoint``
serves the latest checkpoint it cosigned, with its cosignature. One file per log in the state folder; the
check and the store happen under one lock, so a request can never roll a log back (the race the spec names).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from run_identity.core.merkle import EMPTY_ROOT, ProofError, verify_consistency
from run_identity.core.note import Checkpoint, NoteError, NoteSigner, NoteVerifier, parse_note
from run_identity.core.tlog import TlogError, parse_add_checkpoint

__all__ = ["SIZE_TYPE", "Witness", "WitnessReply", "request_cosignature", "serve_witness"]

#: The Content-Type of a 409 reply: the size the witness last cosigned.
SIZE_TYPE = "text/x.tlog.size"
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class WitnessReply:
    """An HTTP status, its body and content type."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, message: str) -> WitnessReply:
    return WitnessReply(status, (message + "\n").encode("utf-8"))


class Witness:
    """Cosigns checkpoints of the logs whose keys it is given; state (the latest cosigned checkpoint of each
    log) lives in ``directory``. ``clock`` gives the POSIX time of a cosignature."""

    def __init__(
        self,
        signer: NoteSigner,
        logs: Sequence[NoteVerifier],
        directory: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self._logs = {key.name: key for key in logs}
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()

    def _path(self, origin: str) -> Path:
        return self._dir / (hashlib.sha256(origin.encode("utf-8")).hexdigest() + ".checkpoint")

    def latest(self, origin: str) -> bytes | None:
        """The latest checkpoint cosigned for ``origin`` (with the log's signature and the cosignature)."""
        try:
            return self._path(origin).read_bytes()
        except FileNotFoundError:
            return None

    def _stored(self, origin: str) -> tuple[int, bytes]:
        data = self.latest(origin)
        if data is None:
            return 0, EMPTY_ROOT
        checkpoint = Checkpoint.from_text(parse_note(data).text)
        return checkpoint.size, checkpoint.root_hash

    def _store(self, origin: str, data: bytes) -> None:
        """Write durably: a temporary file, fsync, rename over the old one, fsync the folder."""
        path = self._path(origin)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def add_checkpoint(self, body: bytes) -> WitnessReply:
        """Handle one add-checkpoint request body (the statuses of c2sp.org/tlog-witness)."""
        try:
            old_size, proof, note_bytes = parse_add_checkpoint(body)
            note = parse_note(note_bytes)
            checkpoint = Checkpoint.from_text(note.text)
        except (TlogError, NoteError) as exc:
            return _text(400, f"bad request: {exc}")
        log_key = self._logs.get(checkpoint.origin)
        if log_key is None:
            return _text(404, f"unknown log origin {checkpoint.origin!r}")
        try:
            Checkpoint.open(note_bytes, log_key)
        except NoteError as exc:
            return _text(403, f"the checkpoint is not signed by the log's key: {exc}")
        if old_size > checkpoint.size:
            return _text(400, f"old size {old_size} is larger than the checkpoint's size {checkpoint.size}")
        if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
            return _text(422, "a checkpoint of size 0 must have the empty tree's root")
        if old_size == 0 and proof:
            return _text(422, "a consistency proof from size 0 must be empty")
        with self._lock:
            stored_size, stored_root = self._stored(checkpoint.origin)
            if old_size != stored_size:
                return WitnessReply(409, f"{stored_size}\n".encode("ascii"), SIZE_TYPE)
            try:
                verify_consistency(old_size, checkpoint.size, stored_root, checkpoint.root_hash, proof)
            except ProofError as exc:
                return _text(422, f"the checkpoint does not extend the one cosigned before: {exc}")
            line = self.signer.sign(note.text, timestamp=max(1, int(self._clock()))).line()
            self._store(checkpoint.origin, note_bytes.rstrip(b"\n") + b"\n" + line.encode("utf-8"))
        return WitnessReply(200, line.encode("utf-8"))


class _Handler(http.server.BaseHTTPRequestHandler):
    witness: Witness
    protocol_version = "HTTP/1.1"

    def _reply(self, reply: WitnessReply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/add-checkpoint":
            self._reply(_text(404, "not found: POST /add-checkpoint"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._reply(_text(400, f"the body must be between 1 byte and {MAX_BODY} bytes"))
            return
        self._reply(self.witness.add_checkpoint(self.rfile.read(length)))

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[1] == "checkpoint":
            for origin in self.witness._logs:
                if hashlib.sha256(origin.encode("utf-8")).hexdigest() == parts[0]:
                    data = self.witness.latest(origin)
                    if data is not None:
                        self._reply(WitnessReply(200, data))
                        return
        self._reply(_text(404, "not found"))

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_witness(witness: Witness, host: str = "127.0.0.1", port: int = 4322) -> http.server.ThreadingHTTPServer:
    """An HTTP server for ``witness`` bound to ``host:port`` (0: any free port); call ``serve_forever``."""
    handler = type("WitnessHandler", (_Handler,), {"witness": witness})
    return http.server.ThreadingHTTPServer((host, port), handler)


def request_cosignature(url: str, body: bytes, *, timeout: float = 10.0) -> WitnessReply:
    """POST an add-checkpoint ``body`` to the witness at ``url`` (its submission prefix); its reply."""
    request = urllib.request.Request(url.rstrip("/") + "/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return WitnessReply(response.status, response.read(), response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        return WitnessReply(exc.code, exc.read(), exc.headers.get("Content-Type", ""))
