"""The verifier: exported spans and manifests in, one verdict per run out (docs/spec.md §12).

Steps, as docs/spec.md numbers them:

1. Parse every record (``._inputs``, ``._records``); unreadable ones are ``malformed`` with their location.
2. Span signature over the statement rebuilt from the span alone (``._runs``, at the join).
3. Manifest signature over the manifest's own statement (``._checks``, as the manifest streams by).
4. Content: digests and identity recomputed from the manifest's content (``._checks``).
5. Join by (trace id, span id); statements must agree member by member (``._runs``).
6. Telemetry: the span's GenAI attributes against the manifest (``._runs``).
7. Coverage: GenAI spans without an identity (``._runs``).
8. Receipts: signature, output digest, bound to the run, resolved model (``._receipts``).

The verifier imports nothing from the SDK side (processor, exporters): it is a separate party.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from run_identity.core.digest import SPEC_VERSION, salt_id
from run_identity.core.keys import Keyring
from run_identity.verify._checks import CheckContext
from run_identity.verify._codes import MALFORMED, RESULT_CODES, Finding
from run_identity.verify._inputs import Chunk, plan
from run_identity.verify._pool import run_chunks
from run_identity.verify._records import Tally
from run_identity.verify._result import Policy, VerificationResult
from run_identity.verify._runs import RunTable
from run_identity.verify._sources import discover, input_size

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Progress", "VerificationReport", "Verifier"]

#: Called with (bytes done, bytes in all) as the input is read.
Progress = Callable[[int, int], None]
_CHUNK = 8 << 20
_MIN_CHUNK = 256 << 10


class _Results(Protocol):
    def results(self) -> Iterator[VerificationResult]: ...

    @property
    def undeclared_spans(self) -> int: ...


class VerificationReport:
    """The results of one verification: per-run results, counts, and the overall verdict."""

    def __init__(
        self,
        table: _Results,
        *,
        policy: Policy,
        insecure: bool,
        inputs: list[str],
        tally: Tally,
        encodings: dict[str, str],
        stats: tuple[dict[str, int], int, int] | None = None,
    ) -> None:
        self._table = table
        self.policy = policy
        self.insecure = insecure
        self.inputs = inputs
        self.encodings = encodings
        self.tally = tally
        self._counts: dict[str, int] | None = None
        self._failed = 0
        self._unchecked = 0
        if stats is not None:  # counted where the results are (a cluster's workers)
            self._counts, self._failed, self._unchecked = stats

    def results(self) -> Iterator[VerificationResult]:
        """Every run's result: in order of first appearance in the input in one process; partition by
        partition (each in order of first appearance) on a Dask cluster."""
        return self._table.results()

    def failures(self) -> Iterator[VerificationResult]:
        """The results the policy does not accept."""
        return (r for r in self.results() if not r.passed)

    def _count(self) -> dict[str, int]:
        if self._counts is None:
            counts = dict.fromkeys(RESULT_CODES, 0)
            failed = unchecked = 0
            for r in self.results():
                counts[r.code] += 1
                failed += not r.passed
                unchecked += bool(r.unchecked)
            self._counts, self._failed, self._unchecked = counts, failed, unchecked
        return self._counts

    @property
    def counts(self) -> dict[str, int]:
        """Number of runs per result code (every code present, zero or not)."""
        return dict(self._count())

    @property
    def runs(self) -> int:
        """Number of results (runs, plus unreadable records without ids)."""
        return sum(self._count().values())

    @property
    def failed(self) -> int:
        """Number of results the policy does not accept."""
        self._count()
        return self._failed

    @property
    def with_unchecked(self) -> int:
        """Number of results that name a check that could not be made (withheld content, no span...)."""
        self._count()
        return self._unchecked

    @property
    def undeclared_spans(self) -> int:
        """GenAI spans that were never declared (no identity, no run_identity.error, named by no manifest): not
        runs unless the policy requires identities (docs/spec.md §12 step 7)."""
        return self._table.undeclared_spans

    @property
    def count_problem(self) -> str | None:
        """Why the number of runs fails the policy (none found, or not as many as expected), or None."""
        return self.policy.count_problem(self.runs)

    @property
    def passed(self) -> bool:
        """True when the policy accepts every run and their number (the CLI exits 0 only then)."""
        return self.failed == 0 and self.count_problem is None

    def summary_json(self) -> dict[str, Any]:
        """The summary object of docs/verify.md."""
        t = self.tally
        return {
            "type": "summary",
            "spec_version": SPEC_VERSION,
            "passed": self.passed,
            "runs": self.runs,
            "failed": self.failed,
            "with_unchecked": self.with_unchecked,
            "count_problem": self.count_problem,
            "counts": self.counts,
            "allowed": sorted(self.policy.allow),
            "required_content": sorted(self.policy.require_content),
            "signatures_checked": not self.insecure,
            "insecure": self.insecure,
            "inputs": [{"path": p, "encoding": self.encodings.get(p, "")} for p in self.inputs],
            "records": {
                "requests": t.requests,
                "spans": t.spans,
                "log_records": t.log_records,
                "ignored_spans": t.ignored_spans,
                "ignored_log_records": t.ignored_log_records,
                "undeclared_spans": self.undeclared_spans,
            },
        }


class Verifier:
    """Verifies exported data against a keyring of trusted keys, under a policy; both are required.

    ``salts`` are blinding salts a deployment shared with the verifier, so that salted manifests' content
    can be recomputed (without them, salted content is checked by its stated digests only, with a note).
    """

    def __init__(self, keyring: Keyring, policy: Policy, *, salts: Iterable[bytes] = ()) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError("Verifier needs a Keyring; Verifier.insecure() skips signature checks explicitly")
        if not isinstance(policy, Policy):
            raise TypeError("Verifier needs a Policy (Policy() tolerates nothing)")
        self._init(keyring, policy, salts)

    def _init(self, keyring: Keyring | None, policy: Policy, salts: Iterable[bytes]) -> None:
        known = {}
        for salt in salts:
            sid = salt_id(salt)
            if sid is not None:
                known[sid] = salt
        self.policy = policy
        self._ctx = CheckContext(keyring, known)

    @classmethod
    def insecure(cls, policy: Policy, *, salts: Iterable[bytes] = ()) -> Verifier:
        """A verifier that checks NO signatures, only internal consistency; it never establishes trust."""
        self = cls.__new__(cls)
        self._init(None, policy, salts)
        return self

    @property
    def checks_signatures(self) -> bool:
        """False for a verifier made by :meth:`insecure`."""
        return self._ctx.keyring is not None

    @property
    def context(self) -> CheckContext:
        """The keys and salts the checks use."""
        return self._ctx

    def verify(
        self,
        inputs: Iterable[str | os.PathLike[str]],
        *,
        jobs: int = 1,
        progress: Progress | None = None,
        chunk_size: int | None = None,
        dask: Client | None = None,
    ) -> VerificationReport:
        """Read every file (and every file under every folder) of ``inputs`` and judge every run.

        Inputs are paths or fsspec URLs (``s3://bucket/prefix/``...), plain, gzip or zstd. Records stream
        through; only small per-run summaries are kept. Raises InputError for a path that does not exist or
        cannot be read; a bad record inside a file is a ``malformed`` result instead.

        ``dask``: a ``distributed.Client``; the work then runs on its cluster (``jobs`` is ignored), runs
        joined through a hash-partitioned shuffle, with the same verdicts. The results stay on the workers
        until read, so keep the client open while the report is used.
        """
        if dask is not None:
            from run_identity.verify.cluster import verify_on_dask

            results, counted, names, kinds = verify_on_dask(
                dask,
                self._ctx,
                self.policy,
                [os.fspath(i) for i in inputs],
                progress=progress,
                chunk_size=chunk_size,
            )
            return VerificationReport(
                results,
                policy=self.policy,
                insecure=self._ctx.keyring is None,
                inputs=names,
                tally=counted,
                encodings=kinds,
                stats=results.stats,
            )
        files = discover(inputs)
        paths = list(files)
        sizes = [input_size(p) for p in files]
        total = sum(sizes)
        target = chunk_size or max(_MIN_CHUNK, min(_CHUNK, total // max(1, jobs * 8)))
        chunks: list[Chunk] = []
        encodings: dict[str, str] = {}
        for i, path in enumerate(files):
            encoding, found = plan(i, path, target)
            encodings[paths[i]] = encoding
            chunks.extend(found)

        def locate(source: int, position: int, index: int) -> str:
            return _locate(chunks_by_source, source, position, index)

        chunks_by_source: Mapping[int, Chunk] = {c.source: c for c in chunks}
        table = RunTable(self._ctx, self.policy, locate)
        tally = Tally()
        done = 0
        for result in run_chunks(chunks, self._ctx, jobs):
            tally.add(result.tally)
            for item in result.items:
                table.add(item)
            if result.first_overflow is not None:
                first = result.first_overflow
                where = locate(first.source, first.position, first.index)
                table.add_loose(first.source, result.overflow, Finding(MALFORMED, 1, first.message, where))
            done += result.chunk.end - result.chunk.start
            if progress is not None:
                progress(done, total)
        return VerificationReport(
            table,
            policy=self.policy,
            insecure=self._ctx.keyring is None,
            inputs=paths,
            tally=tally,
            encodings=encodings,
        )


def _locate(chunks: Mapping[int, Chunk], source: int, position: int, index: int) -> str:
    chunk = chunks.get(source)
    return chunk.location(position, index) if chunk is not None else f"<input {source}>:{position}"
