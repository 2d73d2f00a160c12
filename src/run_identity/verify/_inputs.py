"""Reading exported data: files and folders, their encoding detected, cut into chunks that workers decode.

Encodings (detected from the first bytes of each file, whatever its name):

* ``otlp-json``: OTLP/JSON lines, one ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` per line
  (the ``otelcol-contrib`` file exporter's default ``json`` format, and this project's own file export);
* ``otlp-proto-framed``: the file exporter's ``proto`` format, each serialized request preceded by its length
  as 4 bytes big-endian;
* ``otlp-protobuf``: one serialized export request (traces or logs) filling the whole file.

Chunks end on record boundaries, so each one is decoded on its own, in any process. Positions are line
numbers (JSON lines, from 1) or byte offsets (protobuf).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from run_identity.errors import RunIdentityError
from run_identity.strict_json import StrictJsonError, loads_strict

__all__ = [
    "JSON_DOCUMENT",
    "MANIFEST_DOCUMENT",
    "OTLP_JSON",
    "OTLP_PROTOBUF",
    "OTLP_PROTO_FRAMED",
    "RECEIPT_DOCUMENT",
    "BadRequest",
    "Chunk",
    "InputError",
    "RawRequest",
    "decode_protobuf",
    "discover",
    "plan",
    "read_requests",
]

OTLP_JSON = "otlp-json"
#: The kinds of request a receipt file and a manifest file are read as (``run-identity`` writes both).
RECEIPT_DOCUMENT = "receipt-document"
MANIFEST_DOCUMENT = "manifest-document"
#: Largest file read as one JSON document (larger ones are read line by line, in bounded memory).
MAX_DOCUMENT = 64 << 20
#: One JSON document filling the file, spread over lines (a receipt or manifest file, pretty-printed).
JSON_DOCUMENT = "json-document"
OTLP_PROTO_FRAMED = "otlp-proto-framed"
OTLP_PROTOBUF = "otlp-protobuf"
UNRECOGNIZED = "unrecognized"

_HEAD = 64
_FRAME = 4
_BLOCK = 1 << 20
_SPACE = frozenset(b" \t\r\x0b\x0c")  # what bytes.strip() strips, but newline


class InputError(RunIdentityError):
    """An input path cannot be read at all (missing, unreadable); no record of it can be checked."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A byte range ``[start, end)`` of one file in one encoding, ending on a record boundary."""

    source: int
    path: str
    encoding: str
    start: int
    end: int
    first_line: int = 0

    def location(self, position: int, index: int = 0) -> str:
        """``path:line`` (JSON lines) or ``path@offset`` (protobuf), and the record's index in its request."""
        sep = ":" if self.encoding in (OTLP_JSON, JSON_DOCUMENT) else "@"
        return f"{self.path}{sep}{position}" + (f" record {index}" if index else "")


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A decoded export request: ``kind`` ``traces`` or ``logs``, ``payload`` a dict (OTLP/JSON) or a protobuf
    message."""

    position: int
    kind: str
    payload: object


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A line or frame that is not an export request, with the reason."""

    position: int
    message: str


def discover(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files to read: each file given, and every file below each folder given (sorted, no dotfiles).

    Raises InputError for a path that does not exist.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if found.is_file() and not any(part.startswith(".") for part in rel):
                    files.append(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise InputError(f"{path}: not a regular file or folder")
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def detect(head: bytes) -> str:
    """The encoding of a file from its first bytes (``unrecognized`` when none fits)."""
    stripped = head.lstrip(b" \t\r\n")
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip(b" \t\r\n")
    if stripped[:1] == b"{":
        return OTLP_JSON
    if head[:1] == b"\x0a":
        return OTLP_PROTOBUF
    if len(head) >= _FRAME + 1 and head[_FRAME : _FRAME + 1] == b"\x0a":
        return OTLP_PROTO_FRAMED
    if len(head) == _FRAME and head == b"\x00" * _FRAME:
        return OTLP_PROTO_FRAMED
    return UNRECOGNIZED


def plan(source: int, path: Path, target: int) -> tuple[str, list[Chunk]]:
    """The encoding of ``path`` and its chunks of about ``target`` bytes. Raises InputError if unreadable."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD)
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
        raise InputError(f"{name}: cannot read ({exc.strerror})") from None
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
        head = f.read(_FRAME)
        length = int.from_bytes(head, "big") if len(head) == _FRAME else size
        pos = min(size, pos + _FRAME + length)
        if pos - start >= target:
            bounds.append((start, pos, 0))
            start = pos
    if start < size:
        bounds.append((start, size, 0))
    return bounds


def read_chunk(chunk: Chunk) -> bytes:
    """The bytes of a chunk. Raises InputError."""
    try:
        with open(chunk.path, "rb") as f:
            f.seek(chunk.start)
            return f.read(chunk.end - chunk.start)
    except OSError as exc:
        raise InputError(f"{chunk.path}: cannot read ({exc.strerror})") from None


def read_requests(chunk: Chunk, data: bytes) -> Iterator[RawRequest | BadRequest]:
    """Decode the export requests of a chunk, in order; a bad line or frame does not stop the rest."""
    if chunk.encoding == OTLP_JSON:
        yield from _json_lines(data, chunk.first_line)
    elif chunk.encoding == JSON_DOCUMENT:
        yield _json_request(data, 1)
    elif chunk.encoding == OTLP_PROTO_FRAMED:
        yield from _frames(data, chunk.start)
    elif chunk.encoding == OTLP_PROTOBUF:
        yield decode_protobuf(data, chunk.start)
    else:
        yield BadRequest(chunk.start, "unrecognized file: neither OTLP/JSON lines nor OTLP protobuf")


def _json_lines(data: bytes, first_line: int) -> Iterator[RawRequest | BadRequest]:
    # Lines are found with memchr and decoded in place: no copy of a line, which may be megabytes long.
    view = memoryview(data)
    size = len(data)
    pos, number = 0, first_line
    while pos < size:
        end = data.find(b"\n", pos)
        if end < 0:
            end = size
        start, line = pos, number
        pos, number = end + 1, number + 1
        if line == 1 and data.startswith(b"\xef\xbb\xbf", start):
            start += 3  # a UTF-8 byte order mark some editors add
        if start == end or (data[start] in _SPACE and data[start:end].isspace()):
            continue
        yield _json_request(view[start:end], line)


def _json_request(text: bytes | memoryview, line: int) -> RawRequest | BadRequest:
    """One OTLP/JSON export request, or a receipt or manifest document (a file of its own), from its text."""
    try:
        doc = loads_strict(text)
    except StrictJsonError as exc:
        return BadRequest(line, f"no single JSON reading: {exc}")
    if type(doc) is dict:
        traces = "resourceSpans" in doc or "resource_spans" in doc
        logs = "resourceLogs" in doc or "resource_logs" in doc
        if traces and logs:
            return BadRequest(line, "the line holds both resourceSpans and resourceLogs: it is neither request")
        if traces:
            return RawRequest(line, "traces", doc)
        if logs:
            return RawRequest(line, "logs", doc)
        if "receipt" in doc and "signature" in doc:
            return RawRequest(line, RECEIPT_DOCUMENT, (doc, str(text, "utf-8")))
        if "components" in doc and "statement" in doc:
            return RawRequest(line, MANIFEST_DOCUMENT, (doc, str(text, "utf-8")))
        if not doc:
            return RawRequest(line, "empty", None)
    return BadRequest(line, "not an OTLP/JSON traces or logs export request, a receipt or a manifest")


def _frames(data: bytes, base: int) -> Iterator[RawRequest | BadRequest]:
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        if len(data) - pos < _FRAME:
            yield BadRequest(base + pos, f"truncated: {len(data) - pos} stray byte(s) where a length prefix belongs")
            return
        length = int.from_bytes(view[pos : pos + _FRAME], "big")
        body = view[pos + _FRAME : pos + _FRAME + length]
        if len(body) < length:
            yield BadRequest(base + pos, f"truncated: the frame declares {length} bytes, only {len(body)} remain")
            return
        yield decode_protobuf(bytes(body), base + pos)
        pos += _FRAME + length


def decode_protobuf(data: bytes, position: int) -> RawRequest | BadRequest:
    """Decode one serialized ExportTraceServiceRequest or ExportLogsServiceRequest (which one is detected)."""
    found: list[RawRequest] = []
    for kind, cls in (("traces", ExportTraceServiceRequest), ("logs", ExportLogsServiceRequest)):
        try:
            found.append(RawRequest(position, kind, cls.FromString(data)))
        except (DecodeError, RuntimeError, ValueError):
            continue
    if not found:
        return BadRequest(position, "not a protobuf OTLP traces or logs export request (corrupt or truncated)")
    if len(found) == 2:
        # Bytes that decode both ways: the one that holds records is the request; both holding records is
        # ambiguous (never read one way and drop the other's records).
        traces, logs = found
        spans: Any = traces.payload
        logs_payload: Any = logs.payload
        has_spans = any(ss.spans for rs in spans.resource_spans for ss in rs.scope_spans)
        has_logs = any(sl.log_records for rl in logs_payload.resource_logs for sl in rl.scope_logs)
        if has_spans and has_logs:
            return BadRequest(position, "the bytes decode both as a traces and as a logs request: ambiguous")
        return logs if has_logs else traces
    return found[0]
