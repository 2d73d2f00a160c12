"""Finding runs in exported data for ``show`` and ``diff``: by identity, trace/span id, or a manifest file.

A run is named by its identity (``sha256:<hex>``, or a unique prefix of at least 8 hex digits), by
``TRACE_ID/SPAN_ID`` (``:`` also accepted), by a trace id alone when that trace holds one run, or by its
span id alone (16 hex digits, as the demo's table shows it; also read as an identity prefix). The verdict
is the one ``verify`` gives for that run over the same input: it is computed by the same verifier.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from run_identity.core.errors import ManifestError, RunIdentityError
from run_identity.core.manifest import Manifest
from run_identity.core.manifest_proto import manifest_from_proto
from run_identity.core.receipt import Receipt
from run_identity.core.strict_json import StrictJsonError, loads_strict
from run_identity.verify._checks import CheckContext, run_key
from run_identity.verify._inputs import Chunk, chunk_requests, plan
from run_identity.verify._manifests import summarize_manifest
from run_identity.verify._records import ManifestRecord, ReceiptRecord, SpanRecord, Tally, records
from run_identity.verify._requests import UNRECOGNIZED, RawRequest
from run_identity.verify._result import Policy, VerificationResult
from run_identity.verify._runs import RunTable
from run_identity.verify._sources import discover
from run_identity.verify.verifier import Verifier

__all__ = [
    "LABELS_FILE",
    "FoundRun",
    "RunNotFound",
    "Selector",
    "as_verifier",
    "find_runs",
    "find_runs_of",
    "load_manifest_file",
    "parse_selector",
    "run_labels",
]

_IDENTITY = re.compile(r"(?:sha256:)?([0-9a-f]{8,64})")
_RUN = re.compile(r"([0-9a-f]{32})(?:[/:]([0-9a-f]{16}))?")


#: A file beside exported data naming runs by label (``{"label": "TRACE_ID/SPAN_ID"}``), as the demo writes
#: it; a dotfile, so verification never reads it as data.
LABELS_FILE = ".run-labels.json"


def run_labels(inputs: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """The labels of :data:`LABELS_FILE` in the given folders (unreadable or odd files are ignored)."""
    found: dict[str, str] = {}
    for item in inputs:
        path = Path(item) / LABELS_FILE
        try:
            doc = loads_strict(path.read_bytes()) if path.is_file() else None
        except (OSError, StrictJsonError):
            continue
        if type(doc) is dict:
            found.update({k: v for k, v in doc.items() if type(v) is str})
    return found


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
        if self.span_id is not None and self.trace_id is None:
            return key[16:].hex() == self.span_id
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
        # 16 hex digits alone are a span id (as the demo's table shows it) or an identity prefix: both match.
        span_id = m.group(1) if len(m.group(1)) == 16 and not low.startswith("sha256:") else None
        return Selector(text, identity="sha256:" + m.group(1), span_id=span_id)
    return None


@dataclass
class FoundRun:
    """A run found in the data: its manifests and receipts (parsed), where they were, and its verdict."""

    key: bytes
    manifests: list[tuple[Manifest, str]] = field(default_factory=list)
    receipts: list[tuple[Receipt, str]] = field(default_factory=list)
    span_location: str | None = None
    span_name: str | None = None
    result: VerificationResult | None = None

    @property
    def run(self) -> str:
        return f"{self.key[:16].hex()}/{self.key[16:].hex()}"


def _iter_records(paths: list[str]) -> Iterator[tuple[Chunk, SpanRecord | ManifestRecord | ReceiptRecord]]:
    for i, path in enumerate(paths):
        _, chunks = plan(i, path, 8 << 20)
        for chunk in chunks:
            if chunk.encoding == UNRECOGNIZED:
                continue
            for request in chunk_requests(chunk):
                if isinstance(request, RawRequest):
                    for record in records(request, Tally()):
                        if isinstance(record, (SpanRecord, ManifestRecord, ReceiptRecord)):
                            yield chunk, record


def as_verifier(checker: Verifier | CheckContext) -> Verifier:
    """A verifier for ``checker``: itself, or one with a context's keys and salts (insecure without keys)."""
    if isinstance(checker, Verifier):
        return checker
    salts = list(checker.salts.values())
    if checker.keyring is None:
        return Verifier.insecure(Policy(), salts=salts)
    return Verifier(checker.keyring, Policy(), salts=salts)


def find_runs(
    inputs: Iterable[str | os.PathLike[str]], selector: Selector, verifier: Verifier | CheckContext
) -> list[FoundRun]:
    """Every run ``selector`` names in ``inputs``, with its manifests and verdict. Raises InputError."""
    return find_runs_of(inputs, [selector], verifier)[0]


def find_runs_of(
    inputs: Iterable[str | os.PathLike[str]], selectors: Sequence[Selector], verifier: Verifier | CheckContext
) -> list[list[FoundRun]]:
    """:func:`find_runs` for several selectors at once.

    The verdicts are those of ``verifier`` over the whole input: the very results ``verify`` gives (same
    checks, same records, receipts and unreadable records included). The records of the runs named are
    then read once more, to show them.
    """
    paths = discover(inputs)
    report = as_verifier(verifier).verify(paths)
    results: dict[bytes, VerificationResult] = {}
    keys: list[set[bytes]] = [set() for _ in selectors]
    for result in report.results():
        if result.trace_id is None or result.span_id is None:
            continue
        key = run_key(result.trace_id, result.span_id)
        for i, selector in enumerate(selectors):
            if selector.matches_key(key) or selector.matches_identity(result.identity):
                keys[i].add(key)
                results[key] = result
    found: dict[bytes, FoundRun] = {key: FoundRun(key, result=result) for key, result in results.items()}
    for chunk, record in _iter_records(paths):
        if not (record.trace_id and record.span_id):
            continue
        key = run_key(record.trace_id, record.span_id)
        run = found.get(key)
        if run is None:
            continue
        where = chunk.location(record.position, record.index)
        if isinstance(record, SpanRecord):
            run.span_location, run.span_name = where, record.name
        elif type(record.body) is str:
            with contextlib.suppress(ManifestError):
                if isinstance(record, ManifestRecord):
                    run.manifests.append((Manifest.from_json(record.body), where))
                else:
                    run.receipts.append((Receipt.from_json(record.body), where))
    return [[found[key] for key in found if key in keys[i]] for i in range(len(selectors))]


def load_manifest_file(path: str, checker: Verifier | CheckContext) -> FoundRun:
    """A manifest file (JSON or protobuf form) checked on its own, by the checks ``verify`` makes of a
    manifest record: signature and content. No span is there to check (``span_missing``).

    Raises RunNotFound naming the file for anything that is not a manifest.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RunNotFound(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if data.lstrip()[:1] == b"{":
            text = data.decode("utf-8")
            manifest = Manifest.from_json(text)
        else:
            manifest = manifest_from_proto(data)
            text = manifest.to_json_bytes().decode()
    except (ManifestError, UnicodeDecodeError) as exc:
        raise RunNotFound(f"{path}: not a manifest ({exc})") from None
    verifier = as_verifier(checker)
    st = manifest.statement
    record = ManifestRecord(st.trace_id, st.span_id, {}, text, 0, 0)
    summary = summarize_manifest(record, verifier.context, 0, path)
    key = run_key(st.trace_id, st.span_id)
    run = FoundRun(key, [(manifest, path)])
    table = RunTable(verifier.context, verifier.policy, lambda s, p, i: path)
    table.add(summary)
    run.result = next(iter(table.results()))
    return run
