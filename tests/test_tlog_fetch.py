"""Reading a published log costs bounded memory and fails with one TlogError, whatever its host serves."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from run_identity.core.tlog import TlogError
from run_identity.core.tlog_fetch import MAX_RESOURCE, fetcher


class _Host(http.server.BaseHTTPRequestHandler):
    """Serves ``bodies[path]`` as (headers, body); ``short`` announces more than it sends."""

    bodies: ClassVar[dict[str, tuple[dict[str, str], bytes]]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        headers, body = self.bodies[self.path.lstrip("/")]
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Host))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_bodies_that_would_blow_up_or_break_are_one_tlog_error(host: str) -> None:
    bomb = gzip.compress(b"\0" * (MAX_RESOURCE + 1024))  # about 16 KB that inflate past any file of a log
    _Host.bodies = {
        "bomb": ({"Content-Encoding": "gzip"}, bomb),
        "truncated-gzip": ({"Content-Encoding": "gzip"}, gzip.compress(b"checkpoint")[:-6]),
        "short": ({"Content-Length": "100"}, b"only part"),
        "big": ({}, b"x" * (MAX_RESOURCE + 1)),
        "fine": ({"Content-Encoding": "gzip"}, gzip.compress(b"a tile")),
    }
    fetch = fetcher(host)
    assert fetch("fine") == b"a tile"
    for path, reason in [
        ("bomb", "decompresses past"),
        ("truncated-gzip", "truncated gzip"),
        ("short", "where the response announced 100"),
        ("big", "larger than any file of a log"),
    ]:
        with pytest.raises(TlogError, match=reason):
            fetch(path)


def test_a_folder_reads_only_regular_files_of_bounded_size(tmp_path: Path) -> None:
    (tmp_path / "tile").mkdir()
    os.mkfifo(tmp_path / "checkpoint")  # opened for reading, a FIFO would wait for a writer forever
    (tmp_path / "tile" / "big").write_bytes(b"x" * (MAX_RESOURCE + 1))
    os.symlink("/dev/zero", tmp_path / "tile" / "zero")
    fetch = fetcher(str(tmp_path))
    with pytest.raises(TlogError, match="not a regular file"):
        fetch("checkpoint")
    with pytest.raises(TlogError, match="not a regular file"):
        fetch("tile/zero")
    with pytest.raises(TlogError, match="larger than any file of a log"):
        fetch("tile/big")
    with pytest.raises(TlogError, match="cannot read"):
        fetch("tile/absent")
