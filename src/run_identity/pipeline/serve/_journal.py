"""A per-batch journal for ``run-identity serve --journal FILE``: where a delivery loses data.

One line per request and stage, appended and flushed at once (so a line survives ``kill -9`` of serve:
it is in the kernel's page cache), tab-separated::

    <unix time>  <pid>  <ticket>  received|durable|failed  traces|logs  <records>  <run span ids, comma-separated>

``received``: the request was decoded and is about to be written; ``durable``: it was fsynced and is about
to be answered with success; ``failed``: it could not be made durable (answered 503 / UNAVAILABLE). A
batch with ``received`` but no ``durable`` line was in flight when the process died: its sender got no
answer. The ids are the span ids of the run spans (traces) or of the manifests' runs (logs), so a run that
is missing at the end can be traced to the batch, and the stage, where it was last seen.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BatchJournal"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class BatchJournal:
    """Appends journal lines to ``path`` (created 0600); thread-safe; never raises into ingestion."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def ticket(self) -> int:
        with self._lock:
            return next(self._tickets)

    def note(self, ticket: int, stage: str, signal: str, records: int, ids: Iterable[str]) -> None:
        line = f"{time.time():.6f}\t{self._pid}\t{ticket}\t{stage}\t{signal}\t{records}\t{','.join(ids)}\n"
        with contextlib.suppress(OSError):
            os.write(self._fd, line.encode())  # one write of an O_APPEND file: lines never interleave

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
