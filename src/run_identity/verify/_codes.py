"""Result codes of verification (docs/spec.md §13), the step that produces each, and their precedence."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BAD_SIGNATURE",
    "BINDING_MISMATCH",
    "CONTENT_UNCHECKED",
    "CONTENT_WITHHELD",
    "FAILURE_CODES",
    "IDENTITY_MISMATCH",
    "LOG_STEP",
    "MALFORMED",
    "MANIFEST_MISSING",
    "MISSING_FROM_EXPORT",
    "MODEL_SUBSTITUTED",
    "NEVER_ALLOWED",
    "NOT_LOGGED",
    "RESULT_CODES",
    "SIGNATURE_UNCHECKED",
    "SPAN_MISSING",
    "TELEMETRY_MISMATCH",
    "UNIDENTIFIED",
    "UNKNOWN_KEY",
    "VERIFIED",
    "Finding",
]

VERIFIED = "verified"
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
IDENTITY_MISMATCH = "identity_mismatch"
BINDING_MISMATCH = "binding_mismatch"
MANIFEST_MISSING = "manifest_missing"
SPAN_MISSING = "span_missing"
TELEMETRY_MISMATCH = "telemetry_mismatch"
UNIDENTIFIED = "unidentified"
#: Content that could not be recomputed (a blinding salt that was not given): nothing vouches for it.
CONTENT_UNCHECKED = "content_unchecked"
#: Content the policy requires (``--require-content``) is withheld.
CONTENT_WITHHELD = "content_withheld"
#: Signatures were not checked (an insecure verifier): no policy accepts this.
SIGNATURE_UNCHECKED = "signature_unchecked"
#: A run receipt reports a model other than the requested one (step 8; a policy may allow it).
MODEL_SUBSTITUTED = "model_substituted"
#: The run's signed statement is not an entry of the transparency log at the checkpoint checked (step 9).
NOT_LOGGED = "not_logged"
#: An entry of the transparency log names a run the export does not hold (step 9): deletion evidence.
MISSING_FROM_EXPORT = "missing_from_export"
#: The step of docs/spec.md §12 that checks the transparency log (``--tlog``).
LOG_STEP = 9

#: Failure codes in precedence order: a run's code is its finding with the lowest step (§12), ties broken
#: by this order.
FAILURE_CODES = (
    MALFORMED,
    UNKNOWN_KEY,
    BAD_SIGNATURE,
    IDENTITY_MISMATCH,
    BINDING_MISMATCH,
    MANIFEST_MISSING,
    SPAN_MISSING,
    TELEMETRY_MISMATCH,
    UNIDENTIFIED,
    MODEL_SUBSTITUTED,
    NOT_LOGGED,
    MISSING_FROM_EXPORT,
    CONTENT_UNCHECKED,
    CONTENT_WITHHELD,
    SIGNATURE_UNCHECKED,
)
#: Codes no policy may accept: the signed claim itself was not established.
NEVER_ALLOWED = frozenset({MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, IDENTITY_MISMATCH, SIGNATURE_UNCHECKED})
#: Every code a run's result can have.
RESULT_CODES = (VERIFIED, *FAILURE_CODES)
_RANK = {code: i for i, code in enumerate(FAILURE_CODES)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check of a run: its result code, the step of docs/spec.md §12, a message for a person.

    ``location`` names the record the finding is about (``manifests.jsonl:12 record 3``) when there is one.
    """

    code: str
    step: int
    message: str
    location: str | None = None

    def sort_key(self) -> tuple[int, int, str, str]:
        """Order of precedence: step first, then the code's place in :data:`FAILURE_CODES` (then the text, so
        the order never depends on the order records arrived in)."""
        return (self.step, _RANK[self.code], self.message, self.location or "")

    def to_json(self) -> dict[str, object]:
        """The finding as a JSON object (docs/verify.md)."""
        return {"code": self.code, "step": self.step, "message": self.message, "location": self.location}
