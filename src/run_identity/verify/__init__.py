"""Verification of exported runs: a separate party that trusts only the keyring it is given.

    from run_identity.core.keys import Keyring
    from run_identity.verify import Policy, Verifier

    report = Verifier(Keyring.from_jwks("trusted-keys.jwks.json"), Policy()).verify(["export/"])
    for result in report.failures():
        print(result.code, result.run, result.findings[0].message)

Nothing here imports the SDK side (span processor, exporters, ``opentelemetry-sdk``).
"""

from __future__ import annotations

from run_identity.verify._checks import CheckContext
from run_identity.verify._codes import (
    BAD_SIGNATURE,
    BINDING_MISMATCH,
    CONTENT_UNCHECKED,
    CONTENT_WITHHELD,
    FAILURE_CODES,
    IDENTITY_MISMATCH,
    MALFORMED,
    MANIFEST_MISSING,
    MODEL_SUBSTITUTED,
    NEVER_ALLOWED,
    RESULT_CODES,
    SIGNATURE_UNCHECKED,
    SPAN_MISSING,
    TELEMETRY_MISMATCH,
    UNIDENTIFIED,
    UNKNOWN_KEY,
    VERIFIED,
    Finding,
)
from run_identity.verify._result import Policy, VerificationResult
from run_identity.verify._sources import InputError, discover
from run_identity.verify.lookup import LABELS_FILE
from run_identity.verify.verifier import Progress, VerificationReport, Verifier

__all__ = [
    "BAD_SIGNATURE",
    "BINDING_MISMATCH",
    "CONTENT_UNCHECKED",
    "CONTENT_WITHHELD",
    "FAILURE_CODES",
    "IDENTITY_MISMATCH",
    "LABELS_FILE",
    "MALFORMED",
    "MANIFEST_MISSING",
    "MODEL_SUBSTITUTED",
    "NEVER_ALLOWED",
    "RESULT_CODES",
    "SIGNATURE_UNCHECKED",
    "SPAN_MISSING",
    "TELEMETRY_MISMATCH",
    "UNIDENTIFIED",
    "UNKNOWN_KEY",
    "VERIFIED",
    "CheckContext",
    "Finding",
    "InputError",
    "Policy",
    "Progress",
    "VerificationReport",
    "VerificationResult",
    "Verifier",
    "discover",
]
