"""Reading the files of a published log (C2SP tlog-tiles): from a folder or an http(s) URL prefix.

Nothing read here is trusted (:class:`~run_identity.core.tlog.TileReader` checks it against a signed
checkpoint); what is bounded here is what reading may cost: at most :data:`MAX_RESOURCE` bytes a file,
compressed or not, regular files only, and every failure one :class:`~run_identity.core.tlog.TlogError`.
"""

from __future__ import annotations

import http.client
import os
import stat
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from run_identity.core.tlog import MAX_ENTRY_SIZE, TILE_WIDTH, Fetch, TlogError

__all__ = ["MAX_RESOURCE", "fetcher"]

#: The largest file of a published log read: a full entry bundle of the largest entries (a tile is 8 KiB, a
#: checkpoint a few hundred bytes). A larger body, or one that decompresses past it, is refused, not read.
MAX_RESOURCE: Final = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)


def _capped(read: Callable[[int], bytes], where: str) -> bytes:
    data = read(MAX_RESOURCE + 1)
    if len(data) > MAX_RESOURCE:
        raise TlogError(f"{where}: larger than any file of a log ({MAX_RESOURCE:,} bytes)")
    return data


def _gunzip(body: bytes, where: str) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = inflate.decompress(body, MAX_RESOURCE + 1)
    if len(data) > MAX_RESOURCE or inflate.unconsumed_tail:
        raise TlogError(f"{where}: decompresses past the size of any file of a log ({MAX_RESOURCE:,} bytes)")
    if not inflate.eof:
        raise TlogError(f"{where}: a truncated gzip body")
    return data


def fetcher(prefix: str) -> Fetch:
    """A :data:`Fetch` for a folder or an http(s) URL prefix. Reads at most :data:`MAX_RESOURCE` bytes of a
    file (compressed or not), and only regular files; every failure is a TlogError naming the file."""
    if prefix.startswith(("http://", "https://")):
        base = prefix.rstrip("/") + "/"

        def fetch_url(path: str) -> bytes:
            where = base + path
            request = urllib.request.Request(where, headers={"Accept-Encoding": "gzip, identity"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    body = _capped(response.read, where)
                    announced = response.headers.get("Content-Length")
                    if announced is not None and announced.isdigit() and int(announced) != len(body):
                        raise TlogError(f"{where}: {len(body):,} bytes where the response announced {announced}")
                    if response.headers.get("Content-Encoding", "identity") == "gzip":
                        body = _gunzip(body, where)
                    return body
            except urllib.error.HTTPError as exc:
                raise TlogError(f"{where}: HTTP {exc.code}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, EOFError, zlib.error) as exc:
                raise TlogError(f"{where}: cannot fetch ({type(exc).__name__}: {exc})") from None

        return fetch_url
    root = Path(prefix)

    def fetch_file(path: str) -> bytes:
        where = root / path
        try:
            # Non-blocking open: a FIFO put where a tile belongs is refused, not waited on.
            fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise TlogError(f"{where}: cannot read ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise TlogError(f"{where}: not a regular file")
            try:
                return _capped(f.read, str(where))
            except OSError as exc:
                raise TlogError(f"{where}: cannot read ({exc.strerror})") from None

    return fetch_file
