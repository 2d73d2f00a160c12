"""Running the per-record checks over chunks, in this process or in a pool of worker processes."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from run_identity.core.keys import Keyring
from run_identity.verify._checks import CheckContext, Malformed, ManifestSummary, SpanSummary, summarize_span
from run_identity.verify._content import ContentSummary, summarize_content
from run_identity.verify._inputs import Chunk, chunk_requests, unrecognized_message
from run_identity.verify._manifests import summarize_manifest
from run_identity.verify._receipts import ReceiptSummary, summarize_receipt
from run_identity.verify._records import (
    BadRecord,
    ContentRecord,
    ManifestRecord,
    ReceiptRecord,
    SpanRecord,
    Tally,
    records,
)
from run_identity.verify._requests import UNRECOGNIZED, BadRequest
from run_identity.verify._runs import MAX_LOOSE_PER_SOURCE
from run_identity.verify._sources import InputError

__all__ = ["ChunkResult", "ContextSpec", "context_from_spec", "context_spec", "process_chunk", "run_chunks"]

Summary = SpanSummary | ManifestSummary | ReceiptSummary | ContentSummary | Malformed
#: A CheckContext as it travels to worker processes: the keyring as JWKS text (None: insecure), the salts.
ContextSpec = tuple[str | None, tuple[tuple[str, bytes], ...]]


@dataclass(slots=True)
class ChunkResult:
    """The summaries of one chunk, in record order, with what was read."""

    chunk: Chunk
    items: list[Summary]
    tally: Tally
    #: Unreadable records without ids past the first :data:`MAX_LOOSE_PER_SOURCE` of the chunk: how many,
    #: and the first of them (their details are not kept, so memory stays bounded on a file of garbage).
    overflow: int = 0
    first_overflow: Malformed | None = None

    def add_loose(self, item: Malformed) -> None:
        """Keep an unreadable record without ids, or only count it once the chunk kept enough of them."""
        self.loose += 1
        if self.loose <= MAX_LOOSE_PER_SOURCE:
            self.items.append(item)
        else:
            self.overflow += 1
            if self.first_overflow is None:
                self.first_overflow = item

    loose: int = 0


def process_chunk(chunk: Chunk, ctx: CheckContext) -> ChunkResult:
    """Steps 1 to 6 as far as single records go, for every record of ``chunk``."""
    tally = Tally()
    items: list[Summary] = []
    if chunk.encoding == UNRECOGNIZED:
        message = unrecognized_message(chunk)
        return ChunkResult(chunk, [Malformed(None, chunk.source, chunk.start, 0, message)], tally)
    try:
        requests = chunk_requests(chunk)
    except InputError as exc:
        return ChunkResult(chunk, [Malformed(None, chunk.source, chunk.start, 0, str(exc))], tally)
    result = ChunkResult(chunk, items, tally)
    for request in requests:
        if isinstance(request, BadRequest):
            result.add_loose(Malformed(None, chunk.source, request.position, 0, request.message))
            continue
        for record in records(request, tally):
            if isinstance(record, SpanRecord):
                span = summarize_span(record, chunk.source)
                if span is None:
                    tally.ignored_spans += 1
                else:
                    items.append(span)
            elif isinstance(record, ManifestRecord):
                where = chunk.location(record.position, record.index)
                items.append(summarize_manifest(record, ctx, chunk.source, where))
            elif isinstance(record, ReceiptRecord):
                where = chunk.location(record.position, record.index)
                items.append(summarize_receipt(record, ctx, chunk.source, where))
            elif isinstance(record, ContentRecord):
                items.append(summarize_content(record, chunk.source))
            else:
                key = _bad_key(record)
                bad = Malformed(key, chunk.source, record.position, record.index, record.message)
                if key is None:
                    result.add_loose(bad)
                else:
                    items.append(bad)
    return result


def _bad_key(record: BadRecord) -> bytes | None:
    if record.trace_id and record.span_id:
        return bytes.fromhex(record.trace_id + record.span_id)
    return None


_WORKER_CTX: CheckContext | None = None
_CONTEXTS: dict[ContextSpec, CheckContext] = {}


def context_spec(ctx: CheckContext) -> ContextSpec:
    """What a worker process needs to rebuild ``ctx`` (keys as JWKS text: Keyring objects stay here)."""
    jwks = None if ctx.keyring is None else json.dumps(ctx.keyring.to_jwks(), sort_keys=True)
    return jwks, tuple(sorted(ctx.salts.items()))


def context_from_spec(spec: ContextSpec) -> CheckContext:
    """The CheckContext of ``spec``, built once per process."""
    ctx = _CONTEXTS.get(spec)
    if ctx is None:
        jwks, salts = spec
        keyring = None if jwks is None else Keyring.from_jwks_text(jwks, source="<keyring>")
        ctx = _CONTEXTS[spec] = CheckContext(keyring, dict(salts))
    return ctx


def _init_worker(jwks: str | None, salts: Mapping[str, bytes]) -> None:
    global _WORKER_CTX
    _WORKER_CTX = context_from_spec((jwks, tuple(sorted(salts.items()))))


def _work(chunk: Chunk) -> ChunkResult:
    assert _WORKER_CTX is not None
    return process_chunk(chunk, _WORKER_CTX)


def run_chunks(chunks: Sequence[Chunk], ctx: CheckContext, jobs: int) -> Iterator[ChunkResult]:
    """Process ``chunks`` and yield their results in order; ``jobs`` > 1 uses that many processes."""
    if jobs <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield process_chunk(chunk, ctx)
        return
    jwks = None if ctx.keyring is None else json.dumps(ctx.keyring.to_jwks())
    # spawn, not fork: the caller may run threads (an OpenTelemetry SDK exporting in the background).
    mp = multiprocessing.get_context("spawn")
    with mp.Pool(min(jobs, len(chunks)), initializer=_init_worker, initargs=(jwks, dict(ctx.salts))) as pool:
        yield from pool.imap(_work, chunks)
