"""Structured results: one :class:`VerificationResult` per run, and the :class:`Policy` that judges them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from run_identity.verify._codes import FAILURE_CODES, VERIFIED, Finding

__all__ = ["Policy", "VerificationResult"]


@dataclass(frozen=True)
class Policy:
    """Which failure codes are tolerated. A run passes when every one of its findings has a tolerated code.

    ``Policy()`` tolerates nothing; ``Policy(allow={"span_missing"})`` accepts manifests whose span was
    sampled out. Raises ValueError for a code that does not exist.
    """

    allow: frozenset[str] = frozenset()

    def __init__(self, *, allow: Iterable[str] = ()) -> None:
        codes = frozenset(allow)
        unknown = codes - set(FAILURE_CODES)
        if unknown:
            raise ValueError(f"unknown result code(s) {', '.join(sorted(unknown))} (codes: {', '.join(FAILURE_CODES)})")
        object.__setattr__(self, "allow", codes)

    def accepts(self, findings: Iterable[Finding]) -> bool:
        """True when every finding's code is tolerated (always true without findings)."""
        return all(f.code in self.allow for f in findings)


@dataclass(frozen=True)
class VerificationResult:
    """The verdict on one run (or on one unreadable record, whose ids are then None).

    ``code`` is ``verified`` or the code of the first failing check in the order of docs/spec.md §12;
    ``findings`` lists every failed check; ``passed`` says whether the verifier's policy accepts the run.
    """

    code: str
    passed: bool
    trace_id: str | None
    span_id: str | None
    identity: str | None
    key_id: str | None
    declared_at: str | None
    model: str | None
    findings: tuple[Finding, ...]
    span_location: str | None
    manifest_locations: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """True when every check passed."""
        return self.code == VERIFIED

    @property
    def run(self) -> str:
        """``trace_id/span_id``, or ``-`` for a record without ids."""
        return f"{self.trace_id}/{self.span_id}" if self.trace_id else "-"

    def to_json(self) -> dict[str, Any]:
        """The result as the JSON object of docs/verify.md."""
        return {
            "type": "run",
            "code": self.code,
            "passed": self.passed,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "identity": self.identity,
            "key_id": self.key_id,
            "declared_at": self.declared_at,
            "model": self.model,
            "span_location": self.span_location,
            "manifest_locations": list(self.manifest_locations),
            "findings": [f.to_json() for f in self.findings],
            "notes": list(self.notes),
        }
