"""Compressed inputs of the verifier: gzip (every member) and zstd (every frame), read as streams.

zstd comes from Python 3.14's ``compression.zstd`` where present, else from ``zstandard`` (the ``zstd``
extra); without either a zstd input is one clear error naming the extra.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from typing import Any, BinaryIO, cast

__all__ = ["GZIP", "ZSTD", "ZstdMissing", "compression_of", "decompressing", "decompression_errors"]

GZIP = "gzip"
ZSTD = "zstd"
_MAGIC = ((b"\x1f\x8b", GZIP), (b"\x28\xb5\x2f\xfd", ZSTD))
_BLOCK = 1 << 20


def compression_of(head: bytes) -> str:
    """``gzip`` or ``zstd`` from a file's magic bytes, else ``""``."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return ""


class ZstdMissing(Exception):
    """zstd data, and nothing installed that reads it; the message names the extra."""


def decompressing(raw: BinaryIO, compression: str) -> BinaryIO:
    """A reader of the decompressed bytes of ``raw`` (every gzip member, every zstd frame)."""
    if compression == GZIP:
        import gzip

        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]

        return cast(BinaryIO, zstd.ZstdFile(raw, mode="rb"))
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise ZstdMissing(
            "zstd-compressed: reading it needs Python 3.14 or zstandard (pip install 'ai-run-identity[zstd]')"
        ) from None
    return cast(BinaryIO, _ZstdStream(raw, zstandard.ZstdDecompressor()))


class _ZstdStream(io.RawIOBase):
    """Every zstd frame of ``raw`` decompressed in turn, with an error for data that ends inside a frame
    (zstandard's stream_reader returns nothing for those)."""

    def __init__(self, raw: BinaryIO, decompressor: Any) -> None:
        super().__init__()
        self._raw = raw
        self._dctx = decompressor
        self._obj = decompressor.decompressobj()
        self._fed = 0
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        if self._buf:
            out, self._buf = self._buf, b""
        else:
            out = self._next()
        if 0 <= size < len(out):
            out, self._buf = out[:size], out[size:]
        return out

    def _next(self) -> bytes:
        while True:
            data = self._raw.read(_BLOCK)
            if not data:
                if self._fed:
                    raise EOFError("the zstd data ends inside a frame (truncated)")
                return b""
            out = []
            while data:
                self._fed += len(data)
                out.append(self._obj.decompress(data))
                data = b""
                if self._obj.eof:
                    data = self._obj.unused_data
                    self._obj = self._dctx.decompressobj()
                    self._fed = 0
            joined = b"".join(out)
            if joined:
                return joined

    def read(self, size: int | None = -1) -> bytes:
        parts: list[bytes] = []
        want = -1 if size is None else size
        while want < 0 or want > 0:
            part = self.read1(want)
            if not part:
                break
            parts.append(part)
            if want > 0:
                want -= len(part)
        return b"".join(parts)


def decompression_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error, ValueError]
    with contextlib.suppress(ImportError):
        import zstandard

        errors.append(zstandard.ZstdError)
    with contextlib.suppress(ImportError):
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]

        errors.append(zstd.ZstdError)
    return tuple(errors)
