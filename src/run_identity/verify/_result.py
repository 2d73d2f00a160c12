"""Structured results: one :class:`VerificationResult` per run, and the :class:`Policy` that judges them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from run_identity.core.composition import COMPONENT_NAMES
from run_identity.verify._codes import FAILURE_CODES, NEVER_ALLOWED, VERIFIED, Finding

__all__ = ["Policy", "VerificationResult"]


@dataclass(frozen=True)
class Policy:
    """What a verification accepts. A run passes when every one of its findings has a tolerated code.

    ``Policy()`` tolerates nothing. ``allow`` names tolerated codes (``span_missing`` for manifests whose
    span was sampled out); the codes of :data:`NEVER_ALLOWED` (a signature or content that was not
    established) cannot be tolerated. ``require_content`` names components a run may not withhold
    (``content_withheld`` otherwise). A verification of no run fails unless ``allow_empty``; ``expect``
    fails it unless exactly that many runs were found, ``expect_min`` unless at least that many.
    ``require_identity`` makes every model-call span without an identity a run of its own, ``unidentified``
    (docs/spec.md §12 step 7); by default such a span was simply not declared and is no run.
    Raises ValueError for a code or component that does not exist or cannot be allowed.
    """

    allow: frozenset[str] = frozenset()
    require_content: frozenset[str] = frozenset()
    allow_empty: bool = False
    expect: int | None = None
    expect_min: int | None = None
    require_identity: bool = False

    def __init__(
        self,
        *,
        allow: Iterable[str] = (),
        require_content: Iterable[str] = (),
        allow_empty: bool = False,
        expect: int | None = None,
        expect_min: int | None = None,
        require_identity: bool = False,
    ) -> None:
        codes = frozenset(allow)
        unknown = codes - set(FAILURE_CODES)
        if unknown:
            raise ValueError(f"unknown result code(s) {', '.join(sorted(unknown))} (codes: {', '.join(FAILURE_CODES)})")
        refused = codes & NEVER_ALLOWED
        if refused:
            raise ValueError(
                f"{', '.join(sorted(refused))} cannot be allowed: the run's signed claim was not established"
            )
        required = frozenset(require_content)
        if required - COMPONENT_NAMES:
            names = ", ".join(sorted(required - COMPONENT_NAMES))
            raise ValueError(f"unknown component(s) {names} (components: {', '.join(sorted(COMPONENT_NAMES))})")
        for name, value in (("expect", expect), ("expect_min", expect_min)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name} must be a count of runs (an integer >= 0)")
        object.__setattr__(self, "allow", codes)
        object.__setattr__(self, "require_content", required)
        object.__setattr__(self, "allow_empty", bool(allow_empty))
        object.__setattr__(self, "expect", expect)
        object.__setattr__(self, "expect_min", expect_min)
        object.__setattr__(self, "require_identity", bool(require_identity))

    def accepts(self, findings: Iterable[Finding]) -> bool:
        """True when every finding's code is tolerated (always true without findings)."""
        return all(f.code in self.allow for f in findings)

    def count_problem(self, runs: int) -> str | None:
        """Why ``runs`` runs in all are not acceptable (no run, or not the number expected), or None."""
        if self.expect is not None and runs != self.expect:
            return f"expected exactly {self.expect:,} run(s), found {runs:,}"
        if self.expect_min is not None and runs < self.expect_min:
            return f"expected at least {self.expect_min:,} run(s), found {runs:,}"
        if runs == 0 and not self.allow_empty and self.expect != 0:
            return "no run found: nothing was verified (--allow-empty accepts that)"
        return None


@dataclass(frozen=True)
class VerificationResult:
    """The verdict on one run (or on one unreadable record, whose ids are then None).

    ``code`` is ``verified`` or the code of the first failing check in the order of docs/spec.md §12;
    ``findings`` lists every failed check; ``passed`` says whether the verifier's policy accepts the run.
    ``withheld`` names the content the manifest withholds and ``unchecked`` each check that could not be
    made because of it: a ``verified`` run vouches for nothing listed there.
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
    withheld: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()
    receipt_locations: tuple[str, ...] = ()

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
            "receipt_locations": list(self.receipt_locations),
            "findings": [f.to_json() for f in self.findings],
            "withheld": list(self.withheld),
            "unchecked": list(self.unchecked),
            "notes": list(self.notes),
        }
