"""Step 9 over the results of steps 1-8: each run's log check, then the log's runs the export lacks.

:class:`LoggedResults` wraps the run table (one process, a process pool or a Dask cluster alike: the
results carry the run's verified statement and signature, ``VerificationResult.signed``), so the log is
read once, on the client, whatever ran the other steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

from run_identity.core.keys import Keyring
from run_identity.core.statement import BindingStatement
from run_identity.verify._checks import run_key
from run_identity.verify._codes import LOG_STEP, MISSING_FROM_EXPORT, NOT_LOGGED, VERIFIED, Finding
from run_identity.verify._result import LogInclusion, Policy, VerificationResult
from run_identity.verify.tlog import INCLUDED, NOT_CHECKED, MissingRun, TransparencyLog

__all__ = ["LoggedResults"]


class _Results(Protocol):
    def results(self) -> Iterator[VerificationResult]: ...

    @property
    def undeclared_spans(self) -> int: ...


class LoggedResults:
    """The results of ``inner`` with the log check of docs/spec.md §12 step 9 added to each run, then one
    ``missing_from_export`` result per run the log holds (in the window) and the export does not."""

    def __init__(self, inner: _Results, log: TransparencyLog, policy: Policy, keyring: Keyring) -> None:
        self._inner = inner
        self.log = log
        self._policy = policy
        self._keyring = keyring
        self._missing: list[MissingRun] | None = None
        self._counts: dict[str, int] | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Runs per log status: included, not_logged, not_checked, missing_from_export."""
        if self._counts is None:
            for _ in self.results():
                pass
        assert self._counts is not None
        return dict(self._counts)

    @property
    def undeclared_spans(self) -> int:
        return self._inner.undeclared_spans

    def results(self) -> Iterator[VerificationResult]:
        """Every run of ``inner`` with its log check, then the runs missing from the export."""
        present: set[bytes] = set()
        included: set[int] = set()  # the log entries the export's verified statements were proven at
        counts = dict.fromkeys((INCLUDED, NOT_LOGGED, NOT_CHECKED, MISSING_FROM_EXPORT), 0)
        for result in self._inner.results():
            if result.trace_id is not None and result.span_id is not None:
                present.add(run_key(result.trace_id, result.span_id))
                result = self._judged(result)
                if result.log is not None:
                    counts[result.log.status] += 1
                    if result.log.status == INCLUDED and result.log.index is not None:
                        included.add(result.log.index)
            yield result
        if self._missing is None:
            self._missing = list(self.log.missing(included, self._keyring.__contains__, self._trusted))
        for run in self._missing:
            counts[MISSING_FROM_EXPORT] += 1
            yield self._missing_result(run, run.key in present)
        self._counts = counts

    def _trusted(self, statement: BindingStatement, signature: bytes) -> bool:
        return statement.key_id in self._keyring and self._keyring.verify(
            statement.key_id, signature, statement.signing_input()
        )

    def _judged(self, result: VerificationResult) -> VerificationResult:
        if result.signed is None:
            reason = "no signature of this run verified, so there is no signed statement to look up in the log"
            return dataclasses.replace(
                result,
                log=LogInclusion(NOT_CHECKED, reason=reason),
                unchecked=(*result.unchecked, f"transparency log: {reason}"),
            )
        statement, signature = result.signed
        found = self.log.inclusion(statement, signature)
        if found.status == INCLUDED:
            return dataclasses.replace(result, log=found)
        if not self.log.trust.in_window(statement.declared_at):
            note = (
                f"transparency log: not in the log ({found.reason}); declared outside the audited window "
                "(--since/--until), so not required"
            )
            return dataclasses.replace(result, log=found, unchecked=(*result.unchecked, note))
        message = f"the run is not in the transparency log: {found.reason}"
        others = self.log.others_for(statement.trace_id, statement.span_id)
        if others:  # e.g. a statement signed again later, with another declared_at or identity
            listed = ", ".join(str(i) for i in others[:5])
            message += f"; the log holds another statement for this span (entry {listed})"
        finding = Finding(NOT_LOGGED, LOG_STEP, message, None)
        return _with_findings(result, (finding,), self._policy, log=found)

    def _missing_result(self, run: MissingRun, span_exported: bool) -> VerificationResult:
        where = self.log.location.rstrip("/")
        held = (
            "the export holds this span, but not with this signed statement (its verified statement, if any, "
            "is another)"
            if span_exported
            else "the export holds no record of it"
        )
        findings = tuple(
            Finding(
                MISSING_FROM_EXPORT,
                LOG_STEP,
                f"the log holds entry {i} for this run (declared_at {s.declared_at}, identity {s.identity}), "
                f"and {held}",
                f"{where} entry {i}",
            )
            for i, s, _sig in run.entries
        )
        first_index, statement, signature = run.entries[0]
        return VerificationResult(
            MISSING_FROM_EXPORT,
            self._policy.accepts(findings),
            run.key[:16].hex(),
            run.key[16:].hex(),
            statement.identity,
            statement.key_id,
            statement.declared_at,
            None,
            findings,
            None,
            (),
            unchecked=(
                ("this entry's span and manifest: the export holds the span's ids only with another statement",)
                if span_exported
                else ("the run's span and manifest: the export holds neither",)
            ),
            signed=(statement, signature),
            log=LogInclusion(MISSING_FROM_EXPORT, first_index, None),
        )

    def summary_json(self) -> dict[str, Any]:
        """The ``tlog`` member of the JSON summary (docs/verify.md)."""
        trust = self.log.trust
        return {
            "location": self.log.location,
            **self.log.checked.to_json(),
            "witness_quorum": trust.quorum,
            "since": trust.since,
            "until": trust.until,
            "entries_in_window": self.log.entries_in_window(),
            "unusable_entries": self.log.unusable_entries,
            "rejected_entries": self.log.rejected_entries,
            "runs": self.counts,
        }


def _with_findings(
    result: VerificationResult, added: tuple[Finding, ...], policy: Policy, **changes: Any
) -> VerificationResult:
    findings = tuple(sorted({*result.findings, *added}, key=Finding.sort_key))
    code = findings[0].code if findings else VERIFIED
    return dataclasses.replace(result, code=code, passed=policy.accepts(findings), findings=findings, **changes)
