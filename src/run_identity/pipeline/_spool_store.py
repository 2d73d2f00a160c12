"""The spool's storage: a folder of length-prefixed OTLP export requests, one file each.

See :mod:`run_identity.pipeline.spool` for the format, the guarantees and the size cap; this module holds the
folder itself (:class:`Spool`) and the outcome of one send (:class:`SendResult`).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import itertools
import logging
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "DEAD_LETTER_DIR",
    "DrainResult",
    "Send",
    "SendResult",
    "Spool",
    "SpoolFullError",
    "classify_status",
]

_logger = logging.getLogger("run_identity.spool")

DEAD_LETTER_DIR = "dead"
_HEADER = struct.Struct(">I")
_SUFFIX = ".binpb"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Consecutive transient failures in one pass that mean "the destination is down": stop the pass there
# instead of charging every entry an attempt (and a timeout) against a collector that is not listening.
_DOWN_AFTER = 3


class SendResult(enum.Enum):
    """What a destination did with one export request."""

    SENT = "sent"
    #: A transient failure (no answer, 408, 429, 5xx): try again later.
    RETRY = "retry"
    #: Refused for good (another 4xx): sending it again cannot help.
    REJECTED = "rejected"


#: Sends one serialized export request; ``True``/``False`` are read as SENT/RETRY.
Send = Callable[[bytes], "SendResult | bool"]


def classify_status(status: int) -> SendResult:
    """The outcome an HTTP status means for OTLP: 2xx sent, 408/429/5xx retry, other 4xx rejected."""
    if 200 <= status < 300:
        return SendResult.SENT
    if status in (408, 429) or status >= 500 or status < 400:
        return SendResult.RETRY
    return SendResult.REJECTED


class SpoolFullError(OSError):
    """The spool holds ``max_bytes`` already: the new entry is refused (see the module docstring)."""


class DrainResult(NamedTuple):
    """What one pass over a spool did."""

    sent: int
    left: int
    dead_lettered: int = 0
    #: Transient failures in this pass (entries that stay, with a backoff).
    failed: int = 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)  # a short write is continued, never taken for the whole
        view = view[written:]


class Spool:
    """A folder of length-prefixed OTLP export requests, one file each (see the module docstring).

    ``max_attempts`` transient failures of one entry move it to the dead-letter folder; between attempts
    an entry waits ``backoff`` seconds, doubled each time up to ``max_backoff``. Raises ValueError for
    bad limits.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_attempts: int = 20,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        if max_bytes <= 0 or max_attempts <= 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError("max_bytes and max_attempts must be positive and 0 <= backoff <= max_backoff")
        self.path = Path(path)
        self.dead_path = self.path / DEAD_LETTER_DIR
        self.max_bytes = max_bytes
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._thread_lock = threading.Lock()
        self._seq = itertools.count()
        # name -> (failed attempts, monotonic time of the next try); in memory, so a restart tries again.
        self._retry: dict[str, tuple[int, float]] = {}

    # -- the folder ----------------------------------------------------------------------------------------

    def _convert_legacy(self) -> None:
        """Turn a single-file spool (the previous format) at ``path`` into entries of the folder."""
        legacy = self.path.with_name(f"{self.path.name}.legacy-{os.getpid()}")
        try:
            os.rename(self.path, legacy)
        except FileNotFoundError:
            return  # another process converted it
        data = legacy.read_bytes()
        os.mkdir(self.path, 0o700)
        pos = 0
        while pos + _HEADER.size <= len(data):
            (size,) = _HEADER.unpack_from(data, pos)
            if pos + _HEADER.size + size > len(data):
                break
            self._write_entry(self.path, data[pos : pos + _HEADER.size + size])
            pos += _HEADER.size + size
        if pos < len(data):
            self._write_entry(self.dead_path, data[pos:], suffix=".torn")
            _logger.error(
                "spool %s ended with %d unreadable bytes, kept in %s", legacy, len(data) - pos, self.dead_path
            )
        legacy.unlink()

    def _dir_fd(self, path: Path) -> int:
        """An fd of the folder ``path`` (created 0700), refusing a symbolic link in its place."""
        if path == self.path and path.is_file() and not path.is_symlink():
            self._convert_legacy()
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC)

    def _write_entry(self, folder: Path, framed: bytes, *, suffix: str = _SUFFIX) -> str:
        """Write ``framed`` as a new entry of ``folder``: temp file, fsync, rename, folder fsync."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}{suffix}"
        tmp = f".tmp-{name}"
        dfd = self._dir_fd(folder)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dfd)
            try:
                _write_all(fd, framed)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise
            os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return name

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The folder's fd, with this spool's passes serialized across threads and processes."""
        with self._thread_lock:
            dfd = self._dir_fd(self.path)
            try:
                lock = os.open(".lock", os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dfd)
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    yield dfd
                finally:
                    os.close(lock)
            finally:
                os.close(dfd)

    def _scan(self) -> list[tuple[str, int]]:
        """(name, size) of the entries waiting, oldest first."""
        try:
            found = [
                (e.name, e.stat(follow_symlinks=False).st_size)
                for e in os.scandir(self.path)
                if e.name.endswith(_SUFFIX) and not e.name.startswith(".") and e.is_file(follow_symlinks=False)
            ]
        except (FileNotFoundError, NotADirectoryError):
            if self.path.is_file():
                return [(self.path.name, self.path.stat().st_size)]  # legacy file, converted on next write
            return []
        return sorted(found)

    # -- public --------------------------------------------------------------------------------------------

    def append(self, payload: bytes) -> None:
        """Add one export request. Raises :class:`SpoolFullError` at the size cap, ``OSError`` when the
        folder cannot be written."""
        framed = _HEADER.pack(len(payload)) + payload
        if self.pending_bytes() + len(framed) > self.max_bytes:
            raise SpoolFullError(f"spool {self.path} is full ({self.max_bytes} bytes)")
        self._write_entry(self.path, framed)

    def pending(self) -> int:
        """How many requests wait in the spool."""
        if self.path.is_file():
            return len(self._legacy_entries())
        return len(self._scan())

    def pending_bytes(self) -> int:
        return sum(size for _, size in self._scan())

    def dead_lettered(self) -> int:
        """How many entries the dead-letter folder holds."""
        try:
            return sum(1 for e in os.scandir(self.dead_path) if not e.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return 0

    def payloads(self) -> list[bytes]:
        """The export requests waiting, oldest first (for inspection and tests)."""
        if self.path.is_file():
            return self._legacy_entries()
        out = []
        for name, _ in self._scan():
            with contextlib.suppress(FileNotFoundError):
                payload = self._unframe((self.path / name).read_bytes())
                if payload is not None:
                    out.append(payload)
        return out

    def _legacy_entries(self) -> list[bytes]:
        data, entries, pos = self.path.read_bytes(), [], 0
        while pos + _HEADER.size <= len(data):
            (size,) = _HEADER.unpack_from(data, pos)
            if pos + _HEADER.size + size > len(data):
                break
            entries.append(data[pos + _HEADER.size : pos + _HEADER.size + size])
            pos += _HEADER.size + size
        return entries

    @staticmethod
    def _unframe(framed: bytes) -> bytes | None:
        if len(framed) < _HEADER.size or _HEADER.unpack_from(framed)[0] != len(framed) - _HEADER.size:
            return None
        return framed[_HEADER.size :]

    def next_due(self) -> float | None:
        """Seconds until the next entry may be tried (0: now), None when nothing waits."""
        names = [name for name, _ in self._scan()]
        if not names:
            return None
        now = time.monotonic()
        return max(0.0, min(self._retry.get(name, (0, now))[1] - now for name in names))

    def _dead_letter(self, dfd: int, name: str, reason: str) -> None:
        ddfd = self._dir_fd(self.dead_path)
        try:
            os.rename(name, name, src_dir_fd=dfd, dst_dir_fd=ddfd)
            os.fsync(ddfd)
            os.fsync(dfd)
        finally:
            os.close(ddfd)
        self._retry.pop(name, None)
        _logger.error("spool %s: entry %s moved to %s: %s", self.path, name, self.dead_path, reason)

    def drain(self, send: Send, *, deadline: float | None = None, ignore_backoff: bool = False) -> DrainResult:
        """Try every entry that is due, oldest first, each on its own; returns what happened.

        A sent entry is removed; a refused one (or one out of attempts) goes to the dead-letter folder; a
        transient failure waits its backoff. After a few transient failures in a row the pass stops (the
        destination is down). ``deadline`` (``time.monotonic()``) ends the pass early; ``ignore_backoff``
        tries entries still waiting their backoff too (at shutdown, by hand).
        """
        sent = dead = failed = 0
        with self._locked() as dfd:
            entries = self._scan()
            failures_in_row = 0
            for name, _ in entries:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                attempts, due = self._retry.get(name, (0, 0.0))
                if due > now and not ignore_backoff:
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
                except FileNotFoundError:
                    self._retry.pop(name, None)
                    continue
                with os.fdopen(fd, "rb") as f:
                    payload = self._unframe(f.read())
                if payload is None:
                    self._dead_letter(dfd, name, "not one length-prefixed request")
                    dead += 1
                    continue
                try:
                    outcome = send(payload)
                except Exception as exc:  # a sender's bug must not lose the spool
                    _logger.error("spool sender failed: %s", exc)
                    outcome = SendResult.RETRY
                if outcome is True or outcome is SendResult.SENT:
                    os.unlink(name, dir_fd=dfd)
                    self._retry.pop(name, None)
                    sent += 1
                    failures_in_row = 0
                elif outcome is SendResult.REJECTED:
                    self._dead_letter(dfd, name, "refused by the destination")
                    dead += 1
                else:
                    attempts += 1
                    failed += 1
                    if attempts >= self.max_attempts:
                        self._dead_letter(dfd, name, f"failed {attempts} times")
                        dead += 1
                    else:
                        wait = min(self.max_backoff, self.backoff * 2 ** min(attempts - 1, 64))  # no float overflow
                        self._retry[name] = (attempts, time.monotonic() + wait * random.uniform(0.8, 1.2))
                    failures_in_row += 1
                    if failures_in_row >= _DOWN_AFTER:
                        break
            if sent:
                os.fsync(dfd)
            left = len(entries) - sent - dead
        return DrainResult(sent, left, dead, failed)
