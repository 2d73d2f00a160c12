"""Finding runs in exported data for ``show`` and ``diff``: by identity, trace/span id, or a manifest file.

A run is named by its identity (``sha256:<hex>``, or a unique prefix of at least 8 hex digits), by
``TRACE_ID/SPAN_ID`` (``:`` also accepted), or by a trace id alone when that trace holds one run. The records
found are checked exactly as ``verify`` checks them, so ``show`` reports the same verdict.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from run_identity.attributes import RUN_IDENTITY_ID
from run_identity.errors import ManifestError, RunIdentityError
from run_identity.manifest import Manifest
from run_identity.manifest_proto import manifest_from_proto
from run_identity.verify._checks import (
    CheckContext,
    ManifestSummary,
    run_key,
    summarize_span,
)
from run_identity.verify._inputs import Chunk, discover, plan, read_chunk, read_requests
from run_identity.verify._manifests import summarize_manifest
from run_identity.verify._records import ManifestRecord, SpanRecord, Tally, records
from run_identity.verify._result import Policy, VerificationResult
from run_identity.verify._runs import RunTable

__all__ = ["FoundRun", "RunNotFound", "Selector", "find_runs", "find_runs_of", "load_manifest_file", "parse_selector"]

_IDENTITY = re.compile(r"(?:sha256:)?([0-9a-f]{8,64})")
_RUN = re.compile(r"([0-9a-f]{32})(?:[/:]([0-9a-f]{16}))?")


class RunNotFound(RunIdentityError):
    """A run cannot be found or read."""


@dataclass(frozen=True)
class Selector:
    """What names a run: an identity (prefix) or a trace id and, optionally, a span id."""

    text: str
    identity: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    def matches_key(self, key: bytes) -> bool:
        if self.trace_id is None:
            return False
        if self.span_id is None:
            return key[:16].hex() == self.trace_id
        return key.hex() == self.trace_id + self.span_id

    def matches_identity(self, identity: object) -> bool:
        return self.identity is not None and type(identity) is str and identity.startswith(self.identity)


def parse_selector(text: str) -> Selector | None:
    """The selector ``text`` spells, or None when it is not an identity or a run id."""
    low = text.strip().lower()
    m = _RUN.fullmatch(low)
    if m and (m.group(2) or not low.startswith("sha256:")):
        return Selector(text, trace_id=m.group(1), span_id=m.group(2))
    m = _IDENTITY.fullmatch(low)
    if m:
        return Selector(text, identity="sha256:" + m.group(1))
    return None


@dataclass
class FoundRun:
    """A run found in the data: its manifests (parsed), where they were, and its verdict."""

    key: bytes
    manifests: list[tuple[Manifest, str]] = field(default_factory=list)
    span_location: str | None = None
    span_name: str | None = None
    result: VerificationResult | None = None

    @property
    def run(self) -> str:
        return f"{self.key[:16].hex()}/{self.key[16:].hex()}"


def _iter_records(paths: list[Path]) -> Iterator[tuple[Chunk, SpanRecord | ManifestRecord]]:
    for i, path in enumerate(paths):
        _, chunks = plan(i, path, 8 << 20)
        for chunk in chunks:
            for request in read_requests(chunk, read_chunk(chunk)):
                if hasattr(request, "payload"):
                    for record in records(request, Tally()):  # type: ignore[arg-type]
                        if isinstance(record, (SpanRecord, ManifestRecord)):
                            yield chunk, record


def _record_identity(record: SpanRecord | ManifestRecord, selector: Selector) -> object:
    if isinstance(record, SpanRecord):
        return record.attributes.get(RUN_IDENTITY_ID)
    body = record.body
    if type(body) is not str or (selector.identity is not None and selector.identity[7:] not in body):
        return record.attributes.get(RUN_IDENTITY_ID)
    try:
        return Manifest.from_json(body).identity
    except ManifestError:
        return None


def _key(record: SpanRecord | ManifestRecord) -> bytes | None:
    return run_key(record.trace_id, record.span_id) if record.trace_id and record.span_id else None


def find_runs(inputs: Iterable[str | os.PathLike[str]], selector: Selector, ctx: CheckContext) -> list[FoundRun]:
    """Every run ``selector`` names in ``inputs``, with its manifests and verdict. Raises InputError."""
    return find_runs_of(inputs, [selector], ctx)[0]


def find_runs_of(
    inputs: Iterable[str | os.PathLike[str]], selectors: Sequence[Selector], ctx: CheckContext
) -> list[list[FoundRun]]:
    """:func:`find_runs` for several selectors at once, reading the inputs at most twice in all (once more
    only when a selector is an identity, to learn its runs' ids)."""
    paths = discover(inputs)
    keys: list[set[bytes]] = [set() for _ in selectors]
    by_identity = [(i, s) for i, s in enumerate(selectors) if s.identity is not None]
    if by_identity:
        for _, record in _iter_records(paths):
            key = _key(record)
            if key is None:
                continue
            for i, selector in by_identity:
                if selector.matches_identity(_record_identity(record, selector)):
                    keys[i].add(key)

    def named_by(i: int, key: bytes) -> bool:
        return key in keys[i] or selectors[i].matches_key(key)

    everyone = range(len(selectors))
    chunks: dict[int, Chunk] = {}
    table = RunTable(ctx, Policy(), lambda s, p, i: chunks[s].location(p, i))
    found: dict[bytes, FoundRun] = {}
    for chunk, record in _iter_records(paths):
        key = _key(record)
        if key is None or not any(named_by(i, key) for i in everyone):
            continue
        chunks[chunk.source] = chunk
        run = found.setdefault(key, FoundRun(key))
        if isinstance(record, SpanRecord):
            summary = summarize_span(record, chunk.source)
            run.span_location = chunk.location(record.position, record.index)
            run.span_name = record.name
            if summary is not None:
                table.add(summary)
            continue
        where = chunk.location(record.position, record.index)
        table.add(summarize_manifest(record, ctx, chunk.source, where))
        if type(record.body) is str:
            with contextlib.suppress(ManifestError):
                run.manifests.append((Manifest.from_json(record.body), where))
    for result in table.results():
        if result.trace_id is not None:
            key = bytes.fromhex(result.trace_id + (result.span_id or ""))
            if key in found:
                found[key].result = result
    return [[run for key, run in found.items() if named_by(i, key)] for i in everyone]


def load_manifest_file(path: str, ctx: CheckContext) -> FoundRun:
    """A manifest file (JSON or protobuf form) checked on its own: signature and content; no span.

    Raises ManifestError naming the file for anything that is not a manifest.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RunNotFound(f"{path}: cannot read ({exc.strerror})") from None
    try:
        manifest = Manifest.from_json(data) if data.lstrip()[:1] == b"{" else manifest_from_proto(data)
    except ManifestError as exc:
        raise RunNotFound(f"{path}: not a manifest ({exc})") from None
    st = manifest.statement
    record = ManifestRecord(st.trace_id, st.span_id, {}, manifest.to_json_bytes().decode(), 0, 0)
    summary = summarize_manifest(record, ctx, 0, path)
    key = run_key(st.trace_id, st.span_id)
    run = FoundRun(key, [(manifest, path)])
    table = RunTable(ctx, Policy(), lambda s, p, i: path)
    if isinstance(summary, ManifestSummary):
        table.add(summary)
        run.result = next(iter(table.results()))
    return run
