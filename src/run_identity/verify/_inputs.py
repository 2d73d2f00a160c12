"""Reading exported data: files and folders, their encoding detected, cut into chunks that workers decode.

Encodings (detected from the first bytes of each file, whatever its name):

* ``otlp-json``: OTLP/JSON lines, one ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` per line
  (the ``otelcol-contrib`` file exporter's default ``json`` format, and this project's own file export);
* ``otlp-proto-framed``: the file exporter's ``proto`` format, each serialized request preceded by its length
  as 4 bytes big-endian;
* ``otlp-protobuf``: one serialized export request (traces or logs) filling the whole file.

Each may be gzip- or zstd-compressed (detected by magic bytes too: the collector's exporters compress on
request): a compressed file is one chunk, decompressed as a stream in pieces cut on record boundaries, and its
positions count in the decompressed data.

Inputs are paths or fsspec URLs (``s3://bucket/prefix/``, ``gs://…``, ``file://…``; fsspec and the
filesystem's own package must be installed, e.g. the ``[dask]`` extra); a folder or prefix is read whole, in
whatever layout the exporters wrote (``awss3exporter``'s time-partitioned keys, the file exporter's rotated
files).

Chunks end on record boundaries, so each one is decoded on its own, in any process. Positions are line
numbers (JSON lines, from 1) or byte offsets (protobuf).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from run_identity.core.strict_json import StrictJsonError, loads_strict
from run_identity.verify._compression import ZstdMissing, compression_of, decompressing, decompression_errors
from run_identity.verify._requests import (
    FRAME,
    JSON_DOCUMENT,
    OTLP_JSON,
    OTLP_PROTO_FRAMED,
    OTLP_PROTOBUF,
    UNRECOGNIZED,
    BadRequest,
    RawRequest,
    read_requests,
)
from run_identity.verify._sources import InputError, input_size, is_url, open_input

__all__ = ["Chunk", "chunk_requests", "plan", "read_chunk", "unrecognized_message"]

#: Largest file read as one JSON document (larger ones are read line by line, in bounded memory).
MAX_DOCUMENT = 64 << 20

#: Decompressed bytes handed to the decoder at a time (cut on a record boundary).
_PIECE = 8 << 20

_HEAD = 64
_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Chunk:
    """A byte range ``[start, end)`` of one file in one encoding, ending on a record boundary."""

    source: int
    path: str
    encoding: str
    start: int
    end: int
    first_line: int = 0
    #: ``gzip`` or ``zstd`` for a compressed file (then the chunk is the whole file), else empty.
    compression: str = ""

    def location(self, position: int, index: int = 0) -> str:
        """``path:line`` (JSON lines) or ``path@offset`` (protobuf), and the record's index in its request."""
        sep = ":" if self.encoding in (OTLP_JSON, JSON_DOCUMENT) else "@"
        return f"{self.path}{sep}{position}" + (f" record {index}" if index else "")


def detect(head: bytes) -> str:
    """The encoding of a file from its first bytes (``unrecognized`` when none fits)."""
    stripped = head.lstrip(b" \t\r\n")
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip(b" \t\r\n")
    if stripped[:1] == b"{":
        return OTLP_JSON
    if head[:1] == b"\x0a":
        return OTLP_PROTOBUF
    if len(head) >= FRAME + 1 and head[FRAME : FRAME + 1] == b"\x0a":
        return OTLP_PROTO_FRAMED
    if compression_of(head[FRAME:]):
        return OTLP_PROTO_FRAMED  # the file exporter's compression: each request compressed, length-prefixed
    if len(head) == FRAME and head == b"\x00" * FRAME:
        return OTLP_PROTO_FRAMED
    return UNRECOGNIZED


def plan(source: int, path: str | os.PathLike[str], target: int) -> tuple[str, list[Chunk]]:
    """The encoding of ``path`` and its chunks of about ``target`` bytes. Raises InputError if unreadable.

    A compressed file is one chunk; its encoding is reported as e.g. ``otlp-json+gzip``.
    """
    name = str(path)
    try:
        with open_input(name) as f:
            size = input_size(name) if is_url(name) else os.fstat(f.fileno()).st_size
            head = f.read(_HEAD)
            compression = compression_of(head)
            if compression:
                encoding = _compressed_encoding(f, compression)
                chunk = Chunk(source, name, encoding, 0, size, 1 if encoding == OTLP_JSON else 0, compression)
                return f"{encoding}+{compression}", [chunk]
            encoding = detect(head)
            if size == 0 or (size == len(head) and not head.strip()):
                return OTLP_JSON, []  # empty, or blank lines only: JSON lines without a record
            if encoding == OTLP_JSON and size <= MAX_DOCUMENT and _spread_over_lines(head) and _one_document(f):
                encoding, bounds = JSON_DOCUMENT, [(0, size, 1)]
            elif encoding == OTLP_JSON:
                bounds = _line_bounds(f, target)
            elif encoding == OTLP_PROTO_FRAMED:
                bounds = _frame_bounds(f, size, target)
            else:
                bounds = [(0, size, 0)]
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return encoding, [Chunk(source, name, encoding, a, b, line) for a, b, line in bounds]


def _spread_over_lines(head: bytes) -> bool:
    """Whether a JSON file's first line is only an opening brace: one document over many lines, not lines."""
    first = head.lstrip(b" \t\r\n")
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:].lstrip(b" \t\r\n")
    return first[:1] == b"{" and first[1:].lstrip(b" \t\r")[:1] == b"\n"


def _one_document(f: BinaryIO) -> bool:
    """Whether the whole file is one JSON document (else it is read line by line, each bad line reported)."""
    f.seek(0)
    try:
        loads_strict(f.read())
    except StrictJsonError:
        return False
    return True


def _compressed_encoding(f: BinaryIO, compression: str) -> str:
    """The encoding of the decompressed data (``unrecognized`` if it cannot be decompressed at all)."""
    f.seek(0)
    try:
        head = decompressing(f, compression).read(_HEAD)
    except ZstdMissing:
        return UNRECOGNIZED
    except decompression_errors():
        return UNRECOGNIZED
    return detect(head) if head.strip() else OTLP_JSON


def _line_bounds(f: BinaryIO, target: int) -> list[tuple[int, int, int]]:
    """Cut after the first newline past each ``target`` bytes; count lines so chunks know their first line."""
    bounds = []
    start = pos = newlines = 0
    first_line = 1
    f.seek(0)
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        offset = 0
        while True:
            want = max(offset, start + target - pos)
            i = block.find(b"\n", want) if want < len(block) else -1
            if i < 0:
                break
            cut = i + 1
            newlines += _newlines(block, offset, cut)
            bounds.append((start, pos + cut, first_line))
            first_line += newlines
            newlines = 0
            start = pos + cut
            offset = cut
        newlines += _newlines(block, offset, len(block))
        pos += len(block)
    if start < pos:
        bounds.append((start, pos, first_line))
    return bounds


def _newlines(data: bytes, start: int, end: int) -> int:
    """Newlines in ``data[start:end]``, found one by one (memchr): export lines are long, often megabytes."""
    count = 0
    at = data.find(b"\n", start, end)
    while at >= 0:
        count += 1
        at = data.find(b"\n", at + 1, end)
    return count


def _frame_bounds(f: BinaryIO, size: int, target: int) -> list[tuple[int, int, int]]:
    bounds = []
    start = pos = 0
    while pos < size:
        f.seek(pos)
        head = f.read(FRAME)
        length = int.from_bytes(head, "big") if len(head) == FRAME else size
        pos = min(size, pos + FRAME + length)
        if pos - start >= target:
            bounds.append((start, pos, 0))
            start = pos
    if start < size:
        bounds.append((start, size, 0))
    return bounds


def read_chunk(chunk: Chunk) -> bytes:
    """The bytes of a chunk (of an uncompressed file). Raises InputError."""
    try:
        with open_input(chunk.path) as f:
            f.seek(chunk.start)
            return f.read(chunk.end - chunk.start)
    except OSError as exc:
        raise InputError(f"{chunk.path}: cannot read ({exc.strerror or exc})") from None


def unrecognized_message(chunk: Chunk) -> str:
    """Why a chunk of an ``unrecognized`` file holds no record."""
    if chunk.compression:
        try:
            with open_input(chunk.path) as raw:
                decompressing(raw, chunk.compression).read(_HEAD)
        except ZstdMissing as exc:
            return str(exc)
        except decompression_errors() as exc:
            return f"{chunk.compression}-compressed data that does not decompress: {exc}"
        return f"{chunk.compression}-compressed, but the data does not decompress to OTLP/JSON lines or OTLP protobuf"
    return "unrecognized file: neither OTLP/JSON lines nor OTLP protobuf (plain or length-prefixed)"


def chunk_requests(chunk: Chunk) -> Iterator[RawRequest | BadRequest]:
    """The export requests of a chunk, compressed or not. Raises InputError if the file cannot be opened.

    A compressed chunk is decompressed as a stream, in pieces of about 8 MiB cut on record boundaries; data
    that stops decompressing is one bad request at the position reached, and the records before it count.
    """
    if not chunk.compression:
        return read_requests(chunk.encoding, read_chunk(chunk), chunk.first_line, chunk.start)
    try:
        raw = open_input(chunk.path)
        stream = decompressing(raw, chunk.compression)
    except ZstdMissing as exc:
        return iter([BadRequest(0, str(exc))])
    except OSError as exc:
        raise InputError(f"{chunk.path}: cannot read ({exc.strerror or exc})") from None
    return _decompressed_requests(chunk, raw, stream)


def _decompressed_requests(chunk: Chunk, raw: BinaryIO, stream: BinaryIO) -> Iterator[RawRequest | BadRequest]:
    json_lines = chunk.encoding == OTLP_JSON
    with raw:
        pieces = _pieces(stream, chunk.encoding)
        offset, line = 0, 1
        while True:
            try:
                data = next(pieces, None)
            except decompression_errors() as exc:
                where = line if json_lines else offset
                yield BadRequest(where, f"{chunk.compression} data stops decompressing: {exc}")
                return
            if data is None:
                return
            yield from read_requests(chunk.encoding, data, line, offset)
            offset += len(data)
            if json_lines:
                line += _newlines(data, 0, len(data))


def _pieces(stream: BinaryIO, encoding: str) -> Iterator[bytes]:
    """Decompressed data in pieces of about :data:`_PIECE` bytes, each ending on a record boundary."""
    buf = bytearray()
    # read1: what decompresses before a corrupt or truncated spot is returned before the error is raised.
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            block = read(_BLOCK)
        except decompression_errors():
            cut = _last_boundary(buf, encoding)
            if cut:
                yield bytes(buf[:cut])  # the whole records before the bad spot, then the error
            raise
        if block:
            buf += block
            if len(buf) < _PIECE:
                continue
            cut = _last_boundary(buf, encoding)
        else:
            cut = len(buf)
        if cut:
            yield bytes(buf[:cut])
            del buf[:cut]
        if not block:
            return


def _last_boundary(buf: bytearray, encoding: str) -> int:
    """Where the last whole record of ``buf`` ends (0: none yet, read on)."""
    if encoding == OTLP_JSON:
        return buf.rfind(b"\n") + 1
    if encoding == OTLP_PROTO_FRAMED:
        pos = 0
        while pos + FRAME <= len(buf):
            end = pos + FRAME + int.from_bytes(buf[pos : pos + FRAME], "big")
            if end > len(buf):
                break
            pos = end
        return pos
    return 0  # one protobuf request: the whole file
