"""Verification on a Dask cluster (``dask.distributed``): the same checks, spread over worker processes.

One verification path: workers run :func:`run_identity.verify._pool.process_chunk` on chunks and
:class:`run_identity.verify._runs.RunTable` on partitions, exactly the code a single process runs.

1. Plan: one task per input file finds its encoding and its chunks (on the workers, which read the data).
2. Map: one task per chunk turns its records into summaries, then splits them by a hash of their 24-byte key
   (trace id + span id) into P buckets, each pickled into one compact blob.
3. Shuffle and reduce: partition ``p`` takes bucket ``p`` of every chunk, in chunk order (so every run sees
   its records in the order a single process sees them), builds its own ``RunTable`` and keeps its results.
   A worker holds its map outputs and its partitions, never the whole input; Dask spills to disk past its
   memory limit.
4. Unreadable records without ids (at most a few per chunk, the rest counted) come back to the client in
   chunk order, into one table there: the same results, counted the same way, as in a single process.

Results stay on the workers until read: :meth:`VerificationReport.results` fetches one partition at a time,
so the client never holds them all, and the client (cluster) must stay open while the report is used.
"""

from __future__ import annotations

import pickle
import re
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from run_identity.verify._checks import CheckContext, Malformed
from run_identity.verify._codes import MALFORMED, RESULT_CODES, Finding
from run_identity.verify._inputs import Chunk, plan
from run_identity.verify._pool import ContextSpec, Summary, context_from_spec, context_spec, process_chunk
from run_identity.verify._records import Tally
from run_identity.verify._result import Policy, VerificationResult
from run_identity.verify._runs import RunTable
from run_identity.verify._sources import InputError, discover, input_size

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskResults", "Stats", "connect", "parse_scheduler", "verify_on_dask"]

_LOCAL = re.compile(r"^local:([0-9]+)$")
#: Partitions per worker thread: a few, so that partitions balance and each one stays small.
_PARTITIONS_PER_THREAD = 4
_CHUNK = 8 << 20
_MIN_CHUNK = 1 << 20

Progress = Callable[[int, int], None]
Stats = tuple[dict[str, int], int, int]


def parse_scheduler(scheduler: str) -> int | str:
    """``local:N`` as the number of workers N, else the scheduler address; raises ValueError."""
    m = _LOCAL.match(scheduler)
    if m is not None:
        n = int(m.group(1))
        if not 1 <= n <= 1024:
            raise ValueError(f"{scheduler}: local:N needs 1 to 1024 workers")
        return n
    if "://" not in scheduler or scheduler.startswith("local"):
        raise ValueError(f"{scheduler}: give local:N (a local cluster of N worker processes) or tcp://HOST:PORT")
    return scheduler


def connect(scheduler: str) -> tuple[Client, Callable[[], None]]:
    """A client for ``local:N`` (a new local cluster of N single-threaded worker processes) or a scheduler
    address such as ``tcp://host:8786``, and the function that closes what was opened."""
    import logging

    from distributed import Client, LocalCluster  # optional: the [dask] extra

    target = parse_scheduler(scheduler)
    if isinstance(target, int):
        cluster = LocalCluster(
            n_workers=target,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # None still binds 8787 (its HTTP routes); any free port
            host="127.0.0.1",
            silence_logs=logging.CRITICAL,  # not the heartbeats that race the shutdown
        )
        client = Client(cluster)

        def close_local() -> None:
            client.close()
            cluster.close()

        return client, close_local
    client = Client(target, timeout="20s")
    return client, client.close


# --- tasks (run on the workers) -------------------------------------------------------------------------


def _plan_task(source: int, path: str, target: int) -> tuple[str, list[Chunk]] | str:
    try:
        return plan(source, path, target)
    except InputError as exc:
        return str(exc)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a run: a hash of its (trace id, span id) that every process computes alike."""
    return zlib.crc32(key) % partitions


@dataclass(slots=True)
class _MapOut:
    buckets: list[bytes]
    side: _Side


@dataclass(slots=True)
class _Side:
    """What the client needs of a chunk: its tally, its unreadable records without ids, its size."""

    tally: Tally
    loose: list[Malformed] = field(default_factory=list)
    overflow: int = 0
    first_overflow: Malformed | None = None
    size: int = 0


def _map_task(chunk: Chunk, spec: ContextSpec, partitions: int) -> _MapOut:
    result = process_chunk(chunk, context_from_spec(spec))
    buckets: list[list[Summary]] = [[] for _ in range(partitions)]
    side = _Side(result.tally, [], result.overflow, result.first_overflow, chunk.end - chunk.start)
    for item in result.items:
        if item.key is None:
            side.loose.append(item)  # only Malformed has no key
        else:
            buckets[partition_of(item.key, partitions)].append(item)
    return _MapOut([pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL) for b in buckets], side)


def _bucket_task(out: _MapOut, p: int) -> bytes:
    return out.buckets[p]


def _side_task(out: _MapOut) -> _Side:
    return out.side


@dataclass(slots=True)
class _Partition:
    results: list[VerificationResult]
    stats: Stats
    undeclared: int = 0


def _reduce_task(spec: ContextSpec, policy: Policy, locations: Mapping[int, Chunk], *buckets: bytes) -> _Partition:
    ctx = context_from_spec(spec)
    table = RunTable(ctx, policy, lambda s, p, i: _locate(locations, s, p, i))
    for blob in buckets:
        for item in pickle.loads(blob):
            table.add(item)
    results = list(table.results())
    return _Partition(results, _stats(results), table.undeclared_spans)


def _stats_task(part: _Partition) -> tuple[Stats, int]:
    return part.stats, part.undeclared


def _stats(results: Sequence[VerificationResult]) -> Stats:
    counts = dict.fromkeys(RESULT_CODES, 0)
    failed = unchecked = 0
    for r in results:
        counts[r.code] += 1
        failed += not r.passed
        unchecked += bool(r.unchecked)
    return counts, failed, unchecked


def _locate(chunks: Mapping[int, Chunk], source: int, position: int, index: int) -> str:
    chunk = chunks.get(source)
    return chunk.location(position, index) if chunk is not None else f"<input {source}>:{position}"


# --- the client side ------------------------------------------------------------------------------------


class DaskResults:
    """The results of a verification on a cluster: partitions held by the workers, plus the unreadable
    records without ids (held here). Iterating fetches one partition at a time."""

    def __init__(
        self, client: Client, partitions: list[Any], loose: RunTable, stats: Stats, undeclared_spans: int = 0
    ) -> None:
        self._client = client
        self._partitions = partitions
        self._loose = loose
        self.stats = stats
        #: GenAI spans never declared, summed over the partitions (docs/spec.md §12 step 7).
        self.undeclared_spans = undeclared_spans

    def results(self) -> Iterator[VerificationResult]:
        """Every run's result, partition by partition, then the unreadable records without ids."""
        for part in self._partitions:
            fetched: _Partition = part.result()
            yield from fetched.results
            del fetched
        yield from self._loose.results()


def verify_on_dask(
    client: Client,
    ctx: CheckContext,
    policy: Policy,
    inputs: Sequence[str],
    *,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    partitions: int | None = None,
) -> tuple[DaskResults, Tally, list[str], dict[str, str]]:
    """Verify ``inputs`` on the cluster of ``client``: the results, the tally, the files and their encodings.

    Raises InputError for an input that does not exist or cannot be read (as :meth:`Verifier.verify`).
    """
    from distributed import as_completed  # optional: the [dask] extra

    paths = discover(inputs)
    total = sum(input_size(p) for p in paths)
    threads = max(1, sum(client.nthreads().values()))
    target = chunk_size or max(_MIN_CHUNK, min(_CHUNK, total // max(1, threads * 8)))
    nparts = partitions or threads * _PARTITIONS_PER_THREAD
    tag = uuid.uuid4().hex[:12]
    spec = context_spec(ctx)

    planned = client.map(_plan_task, range(len(paths)), paths, [target] * len(paths), key=_keys("plan", tag, paths))
    chunks: list[Chunk] = []
    encodings: dict[str, str] = {}
    for path, found in zip(paths, client.gather(planned), strict=True):
        if isinstance(found, str):
            raise InputError(found)
        encoding, cs = found
        encodings[path] = encoding
        chunks.extend(cs)
    del planned

    locations: dict[int, Chunk] = {}
    for chunk in chunks:
        locations.setdefault(chunk.source, chunk)
    [located] = client.scatter([locations], broadcast=True, hash=False)
    [spec_future] = client.scatter([spec], broadcast=True, hash=False)

    maps = [
        client.submit(_map_task, chunk, spec_future, nparts, key=f"ri-map-{tag}-{i}") for i, chunk in enumerate(chunks)
    ]
    sides = [client.submit(_side_task, m, key=f"ri-side-{tag}-{i}") for i, m in enumerate(maps)]
    parts = []
    for p in range(nparts):
        buckets = [client.submit(_bucket_task, m, p, key=f"ri-bucket-{tag}-{i}-{p}") for i, m in enumerate(maps)]
        parts.append(client.submit(_reduce_task, spec_future, policy, located, *buckets, key=f"ri-part-{tag}-{p}"))
        del buckets
    del maps  # map outputs are released once their buckets and sides are consumed

    # The client's share: tallies, and the unreadable records without ids, fed in chunk order.
    by_index: dict[int, _Side] = {}
    done = 0
    index = {s.key: i for i, s in enumerate(sides)}
    for future in as_completed(sides):
        side: _Side = future.result()
        by_index[index[future.key]] = side
        done += side.size
        if progress is not None:
            progress(done, total)
    del sides
    if progress is not None and not by_index:
        progress(0, total)
    tally = Tally()
    loose = RunTable(ctx, policy, lambda s, p, i: _locate(locations, s, p, i))
    for i in range(len(by_index)):
        side = by_index[i]
        tally.add(side.tally)
        for item in side.loose:
            loose.add(item)
        if side.first_overflow is not None:
            first = side.first_overflow
            where = _locate(locations, first.source, first.position, first.index)
            loose.add_loose(first.source, side.overflow, Finding(MALFORMED, 1, first.message, where))
    del by_index

    counts = dict.fromkeys(RESULT_CODES, 0)
    failed = unchecked = undeclared = 0
    for (part_counts, part_failed, part_unchecked), part_undeclared in client.gather(
        [client.submit(_stats_task, part, pure=False) for part in parts]
    ):
        for code, n in part_counts.items():
            counts[code] += n
        failed += part_failed
        unchecked += part_unchecked
        undeclared += part_undeclared
    loose_counts, loose_failed, loose_unchecked = _stats(list(loose.results()))
    for code, n in loose_counts.items():
        counts[code] += n
    stats = (counts, failed + loose_failed, unchecked + loose_unchecked)
    return DaskResults(client, parts, loose, stats, undeclared), tally, paths, encodings


def _keys(stage: str, tag: str, items: Sequence[object]) -> list[str]:
    return [f"ri-{stage}-{tag}-{i}" for i in range(len(items))]
