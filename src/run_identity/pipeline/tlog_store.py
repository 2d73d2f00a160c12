"""The transparency log's storage: durable append-only entries, and the tiles and checkpoint published from them.

Layout of the log folder ``DIR`` (everything but ``.tlog-state/`` is C2SP tlog-tiles, servable as static files):

* ``checkpoint``: the latest signed checkpoint, with the witness cosignatures gathered before it was written;
* ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``: hash tiles and entry bundles;
* ``log.vkey``: the log's verifier key;
* ``.tlog-state/entries``: the entries in log order, each ``u16be length || SHA-256 leaf hash || entry``;
  ``.tlog-state/lock``: held (flock) by the one process that appends.

Durability: :meth:`LogStore.append` returns once its entries are written and ``fsync``-ed (group commit: one
thread writes and syncs everything queued before it started, the others wait for it). A checkpoint only ever
covers entries that were durable before it was signed, and its tiles are written (temporary file, fsync,
rename, folder fsync) before it is. At start, a torn last record (a crash mid-write) is cut off, and the
published checkpoint is checked against the entries: its size must be held and its root recomputed, else the
store refuses to open. So a crash (kill -9) never forks the log: whatever was acknowledged or checkpointed is
there, in the same order, and the tree extends the last checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from run_identity.core.errors import RunIdentityError
from run_identity.core.merkle import EMPTY_ROOT, CompactRange
from run_identity.core.note import Checkpoint, Note, NoteError, NoteSignature, NoteSigner, sign_note
from run_identity.core.tlog import (
    MAX_ENTRY_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    TlogError,
    encode_bundle,
    entries_path,
    tile_path,
)

__all__ = ["CHECKPOINT_FILE", "STATE_DIR", "VKEY_FILE", "Cosign", "LogStore", "StoreError", "write_atomically"]

_logger = logging.getLogger("run_identity.tlog")

CHECKPOINT_FILE = "checkpoint"
VKEY_FILE = "log.vkey"
STATE_DIR = ".tlog-state"
_ENTRIES = "entries"
_HEAD = 2 + 32
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

#: ``cosign(checkpoint, signed note) -> signature lines`` to publish with the checkpoint (witness cosignatures).
Cosign = Callable[[Checkpoint, Note], Sequence[NoteSignature]]


class StoreError(RunIdentityError):
    """The log folder cannot be opened or written, or does not agree with its checkpoint; says which and why."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, sync_folder: bool = True) -> None:
    """Replace ``path`` by ``data``: temporary file, fsync, rename, folder fsync (readers see old or new).
    Without ``sync_folder`` the caller fsyncs the folder (once for many files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_folder:
        _fsync_dir(path.parent)


class LogStore:
    """One log folder, opened by one process. Thread-safe: :meth:`append` from any thread, :meth:`publish` from
    one. Raises StoreError when the folder is held by another process or disagrees with its checkpoint."""

    def __init__(self, directory: str | os.PathLike[str], signer: NoteSigner, *, origin: str | None = None) -> None:
        self.directory = Path(directory)
        self.signer = signer
        self.origin = signer.name if origin is None else origin
        self._cond = threading.Condition()
        self._publish_lock = threading.Lock()
        self._index: dict[bytes, int] = {}  # leaf hash -> index, for every entry durable or queued
        self._queued: list[tuple[bytes, bytes]] = []  # (leaf hash, entry) not yet written
        self._flushing = False
        self._assigned = 0  # indexes given so far: durable, being written, or queued
        self._failed: str | None = None
        self._compact = CompactRange()
        self._levels: list[bytearray] = [bytearray()]  # hashes of tile level L: tree level 8L
        self._tail: list[bytes] = []  # entries from the first bundle not yet published full
        self._tail_start = 0
        self._fd = self._lock_fd = -1
        try:
            self._open()
        except OSError as exc:
            self.close()
            raise StoreError(f"{self.directory}: cannot open the log ({exc.strerror or exc})") from None
        except BaseException:
            self.close()
            raise

    # --- opening and recovery ----------------------------------------------------------------------------------

    def _open(self) -> None:
        state = self.directory / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{self.directory}: another process is serving this log") from None
        vkey_path = self.directory / VKEY_FILE
        vkey = self.signer.verifier.vkey() + "\n"
        if vkey_path.exists() and vkey_path.read_text(encoding="utf-8") != vkey:
            raise StoreError(f"{vkey_path}: this log folder belongs to another key ({vkey_path.read_text().strip()})")
        published = self._read_checkpoint()
        path = state / _ENTRIES
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _CLOEXEC, 0o644)
        _fsync_dir(state)  # a new entries file (and state folder) survive a power cut, not only their contents
        _fsync_dir(self.directory)
        self._recover(path, published)
        if not vkey_path.exists():
            write_atomically(vkey_path, vkey.encode())
        if published is None:
            published = self._write_and_sign(0, 0, EMPTY_ROOT, [])
        self.published = published

    def _read_checkpoint(self) -> Checkpoint | None:
        path = self.directory / CHECKPOINT_FILE
        if not path.exists():
            return None
        try:
            checkpoint, _, _ = Checkpoint.open(path.read_bytes(), self.signer.verifier, origin=self.origin)
        except NoteError as exc:
            raise StoreError(f"{path}: not a checkpoint of this log: {exc}") from None
        return checkpoint

    def _recover(self, path: Path, published: Checkpoint | None) -> None:
        size = os.fstat(self._fd).st_size
        with contextlib.ExitStack() as stack:
            # Mapped, not read: a million entries are ~370 MB, of which only the tail is kept in memory.
            data: bytes | mmap.mmap = b""
            if size:
                data = stack.enter_context(mmap.mmap(self._fd, size, access=mmap.ACCESS_READ))
            target = published.size if published is not None else 0
            self._tail_start = (target // TILE_WIDTH) * TILE_WIDTH
            position, published_root = 0, self._compact.root()
            while position + _HEAD <= size:
                length = int.from_bytes(data[position : position + 2], "big")
                end = position + _HEAD + length
                if end > size:
                    break
                leaf, entry = data[position + 2 : position + _HEAD], data[position + _HEAD : end]
                if hashlib.sha256(b"\x00" + entry).digest() != leaf:
                    break
                if self._compact.size >= self._tail_start:
                    self._tail.append(entry)
                self._add_durable(leaf, entry)
                position = end
                if self._compact.size == target:
                    published_root = self._compact.root()
            torn = bytes(data[position:size])
        if published is not None:
            if published.size > self._compact.size:
                raise StoreError(
                    f"{self.directory}: the checkpoint covers {published.size} entries but only "
                    f"{self._compact.size} are stored: entries were lost; refusing to fork the log"
                )
            if published_root != published.root_hash:
                raise StoreError(
                    f"{self.directory}: the stored entries do not hash to the checkpoint's root at size "
                    f"{published.size}; refusing to fork the log"
                )
        if torn:
            # A record torn by a crash (or damaged after the checkpoint): kept aside, then cut off.
            aside = path.with_name(f"{_ENTRIES}.cut-{time.time_ns()}")
            write_atomically(aside, torn, mode=0o600)
            _logger.warning("tlog: %s: %d bytes after the last whole record moved to %s", path, len(torn), aside)
            os.ftruncate(self._fd, position)
            os.fsync(self._fd)
        self._assigned = self._compact.size

    def _add_durable(self, leaf: bytes, entry: bytes) -> None:
        self._index[leaf] = self._compact.size
        for level, _, node in self._compact.append(leaf):
            if level % TILE_HEIGHT == 0:
                tile_level = level // TILE_HEIGHT
                if tile_level == len(self._levels):
                    self._levels.append(bytearray())
                self._levels[tile_level] += node

    # --- appending ---------------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Entries durable now."""
        return self._compact.size

    def append(self, entries: Sequence[bytes]) -> list[int]:
        """Append entries not yet in the log; the index of each (an entry already there keeps its index).
        Returns once all of them are durable. Raises StoreError when the log cannot be written."""
        for entry in entries:
            if len(entry) > MAX_ENTRY_SIZE:
                raise TlogError(f"an entry of {len(entry)} bytes does not fit an entry bundle")
        leaves = [hashlib.sha256(b"\x00" + entry).digest() for entry in entries]
        with self._cond:
            indexes = []
            for leaf, entry in zip(leaves, entries, strict=True):
                index = self._index.get(leaf)
                if index is None:
                    index = self._assigned  # after every entry durable, being written or queued
                    self._assigned += 1
                    self._index[leaf] = index
                    self._queued.append((leaf, entry))
                indexes.append(index)
            needed = max(indexes, default=-1) + 1
            while self._compact.size < needed:
                if self._failed is not None:
                    raise StoreError(self._failed)
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flush()
        return indexes

    def _flush(self) -> None:
        """Write and sync everything queued; called holding the condition, which it releases meanwhile."""
        batch, self._queued = self._queued, []
        self._flushing = True
        self._cond.release()
        error = None
        try:
            buffer = bytearray()
            for leaf, entry in batch:
                buffer += len(entry).to_bytes(2, "big") + leaf + entry
            view = memoryview(buffer)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            error = f"{self.directory}: cannot write entries ({exc.strerror or exc}); the log stopped appending"
        finally:
            self._cond.acquire()
            self._flushing = False
            if error is None:
                for leaf, entry in batch:
                    self._add_durable(leaf, entry)
                    self._tail.append(entry)
            else:
                # Appending after a failed write could leave a hole; stop until an operator restarts the log,
                # whose recovery cuts whatever part of the batch reached the file.
                self._failed = error
                _logger.error("tlog: %s", error)
            self._cond.notify_all()

    # --- publishing ----------------------------------------------------------------------------------------------

    def publish(self, cosign: Cosign | None = None) -> Checkpoint | None:
        """Write the tiles and a new signed checkpoint for every durable entry; None when nothing is new.

        ``cosign(checkpoint, note)``, called once the tiles are written and before the checkpoint is, returns
        signature lines to publish with it (the witnesses' cosignatures, already verified)."""
        with self._publish_lock:
            with self._cond:
                size, root = self._compact.size, self._compact.root()
                tail = list(self._tail)
            if size == self.published.size:
                return None
            self.published = self._write_and_sign(self.published.size, size, root, tail, cosign)
            return self.published

    def _write_and_sign(
        self, old_size: int, size: int, root: bytes, tail: Sequence[bytes], cosign: Cosign | None = None
    ) -> Checkpoint:
        self._write_tiles(old_size, size, tail)
        checkpoint = Checkpoint(self.origin, size, root)
        note = sign_note(checkpoint.text(), [self.signer])
        if cosign is not None:
            note = Note(note.text, (*note.signatures, *cosign(checkpoint, note)))
        write_atomically(self.directory / CHECKPOINT_FILE, note.to_bytes())
        with self._cond:
            drop = (size // TILE_WIDTH) * TILE_WIDTH - self._tail_start
            if drop > 0:
                del self._tail[:drop]
                self._tail_start += drop
        return checkpoint

    def _write_tiles(self, old_size: int, size: int, tail: Sequence[bytes]) -> None:
        folders: set[Path] = set()

        def write(path: Path, data: bytes) -> None:
            write_atomically(path, data, sync_folder=False)
            folders.add(path.parent)

        level, count_old, count = 0, old_size, size
        while count:
            hashes = self._levels[level]
            for n in range(count_old // TILE_WIDTH, (count - 1) // TILE_WIDTH + 1):
                width = min(TILE_WIDTH, count - n * TILE_WIDTH)
                write(self.directory / tile_path(level, n, width), bytes(hashes[n * 8192 : n * 8192 + width * 32]))
                if level == 0:
                    start = n * TILE_WIDTH - self._tail_start
                    write(self.directory / entries_path(n, width), encode_bundle(tail[start : start + width]))
            level += 1
            count_old >>= TILE_HEIGHT
            count >>= TILE_HEIGHT
        # Every folder written in, and its parents up to the log folder (new tile folders are entries of theirs),
        # deepest first; all before the checkpoint names the tiles.
        chain = set(folders)
        for folder in folders:
            chain.update(p for p in folder.parents if self.directory in p.parents or p == self.directory)
        for folder in sorted(chain, key=lambda p: len(p.parts), reverse=True):
            _fsync_dir(folder)

    def checkpoint_note(self) -> bytes:
        """The published checkpoint note, as served."""
        return (self.directory / CHECKPOINT_FILE).read_bytes()

    def close(self) -> None:
        """Release the folder (entries already appended stay durable)."""
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
