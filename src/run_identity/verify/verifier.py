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

import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from run_identity.digest import SPEC_VERSION, salt_id
from run_identity.keys import Keyring
from run_identity.verify._checks import CheckContext
from run_identity.verify._codes import RESULT_CODES, VERIFIED
from run_identity.verify._inputs import Chunk, discover, plan
from run_identity.verify._pool import run_chunks
from run_identity.verify._receipts import Receipts, ReceiptSummary
from run_identity.verify._records import Tally
from run_identity.verify._result import Policy, VerificationResult
from run_identity.verify._runs import RunTable

__all__ = ["Progress", "VerificationReport", "Verifier"]

#: Called with (bytes done, bytes in all) as the input is read.
Progress = Callable[[int, int], None]
_CHUNK = 8 << 20
_MIN_CHUNK = 256 << 10


class VerificationReport:
    """The results of one verification: per-run results (iterated lazily), counts, and the overall verdict."""

    def __init__(
        self,
        table: RunTable,
        *,
        policy: Policy,
        insecure: bool,
        inputs: list[str],
        tally: Tally,
        encodings: dict[str, str],
        receipts: Receipts | None = None,
    ) -> None:
        self._table = table
        self._receipts = receipts
        self.policy = policy
        self.insecure = insecure
        self.inputs = inputs
        self.encodings = encodings
        self.tally = tally
        self._counts: dict[str, int] | None = None
        self._failed = 0

    def results(self) -> Iterator[VerificationResult]:
        """Every run's result, in order of first appearance in the input."""
        if self._receipts:
            return self._receipts.apply(self._table.results(), self.policy)
        return self._table.results()

    def failures(self) -> Iterator[VerificationResult]:
        """The results the policy does not accept."""
        return (r for r in self.results() if not r.passed)

    def _count(self) -> dict[str, int]:
        if self._counts is None:
            counts = dict.fromkeys(RESULT_CODES, 0)
            failed = 0
            if self._receipts:
                results = self.results()
            else:  # runs that joined cleanly are counted without making their results
                counts[VERIFIED] = self._table.verified_count()
                results = self._table.results(verified=False)
            for r in results:
                counts[r.code] += 1
                failed += not r.passed
            self._counts, self._failed = counts, failed
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
    def passed(self) -> bool:
        """True when the policy accepts every run (the CLI exits 0 only then)."""
        return self.failed == 0

    def summary_json(self) -> dict[str, Any]:
        """The summary object of docs/verify.md."""
        t = self.tally
        return {
            "type": "summary",
            "spec_version": SPEC_VERSION,
            "passed": self.passed,
            "runs": self.runs,
            "failed": self.failed,
            "counts": self.counts,
            "allowed": sorted(self.policy.allow),
            "signatures_checked": not self.insecure,
            "insecure": self.insecure,
            "inputs": [{"path": p, "encoding": self.encodings.get(p, "")} for p in self.inputs],
            "records": {
                "requests": t.requests,
                "spans": t.spans,
                "log_records": t.log_records,
                "ignored_spans": t.ignored_spans,
                "ignored_log_records": t.ignored_log_records,
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
    ) -> VerificationReport:
        """Read every file (and every file under every folder) of ``inputs`` and judge every run.

        Records stream through; only small per-run summaries are kept. Raises InputError for a path that
        does not exist or cannot be read; a bad record inside a file is a ``malformed`` result instead.
        """
        files = discover(inputs)
        paths = [str(p) for p in files]
        sizes = [os.path.getsize(p) for p in files]
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
        receipts = Receipts()
        done = 0
        # Reading creates many containers (decoded requests) and no reference cycles: the cyclic collector
        # would only re-scan them, and the growing run table, over and over. It is off while reading.
        collect = gc.isenabled()
        gc.disable()
        try:
            for result in run_chunks(chunks, self._ctx, jobs):
                tally.add(result.tally)
                for item in result.items:
                    if isinstance(item, ReceiptSummary):
                        receipts.add(item)
                    else:
                        table.add(item)
                done += result.chunk.end - result.chunk.start
                if progress is not None:
                    progress(done, total)
        finally:
            if collect:
                gc.enable()
        return VerificationReport(
            table,
            policy=self.policy,
            insecure=self._ctx.keyring is None,
            inputs=paths,
            tally=tally,
            encodings=encodings,
            receipts=receipts,
        )


def _locate(chunks: Mapping[int, Chunk], source: int, position: int, index: int) -> str:
    chunk = chunks.get(source)
    return chunk.location(position, index) if chunk is not None else f"<input {source}>:{position}"
