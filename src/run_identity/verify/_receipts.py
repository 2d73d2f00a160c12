"""Step 8 (docs/spec.md §12): run receipts, checked alone as they stream by, then against their run.

A ``run_identity.receipt`` log record is reduced to a :class:`ReceiptSummary` (signature, the output it
carries against its digest, the record's own ids). The run table (:mod:`._runs`) judges it against its run:
the receipt must name the run's identity, two receipts of one run must agree, and a resolved model that is
not the requested one (nor a dated snapshot of it, see :func:`run_identity.core.receipt.model_resolution`) is
``model_substituted``. A receipt whose run has neither span nor manifest in the input is
``manifest_missing``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from run_identity.core.attributes import RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID
from run_identity.core.errors import CanonicalizationError, ManifestError
from run_identity.core.receipt import Receipt, ReceiptStatement, output_digest
from run_identity.verify._checks import CheckContext, Malformed, run_key
from run_identity.verify._codes import (
    BAD_SIGNATURE,
    BINDING_MISMATCH,
    CONTENT_UNCHECKED,
    IDENTITY_MISMATCH,
    SIGNATURE_UNCHECKED,
    UNKNOWN_KEY,
    Finding,
)
from run_identity.verify._records import ReceiptRecord

__all__ = ["STEP", "ReceiptRecord", "ReceiptSummary", "summarize_receipt"]

#: The step of docs/spec.md §12 that checks receipts.
STEP = 8


@dataclass(slots=True)
class ReceiptSummary:
    """A receipt after its own checks; the output it carried is not kept."""

    key: bytes
    where: str
    statement: ReceiptStatement
    findings: tuple[Finding, ...]
    fingerprint: bytes
    notes: tuple[str, ...] = ()
    #: Checks of this receipt that could not be made (named in the run's report).
    unchecked: tuple[str, ...] = ()


def summarize_receipt(record: ReceiptRecord, ctx: CheckContext, source: int, where: str) -> ReceiptSummary | Malformed:
    """Check one receipt record alone: its form, signature, output digest and the record's ids."""
    own_key = run_key(record.trace_id, record.span_id) if record.trace_id and record.span_id else None
    if type(record.body) is not str:
        return Malformed(own_key, source, record.position, record.index, "the receipt record's body is not a string")
    try:
        receipt = Receipt.from_json(record.body)
    except ManifestError as exc:
        return Malformed(own_key, source, record.position, record.index, f"receipt: {exc}")
    s = receipt.statement
    findings: list[Finding] = []
    finish = ", ".join(s.finish_reasons) or "-"
    notes = [f"receipt: output {s.output_digest}, served model {s.response_model!r}, finish {finish}"]
    if ctx.keyring is None:
        message = "the receipt's signature was not checked (no keyring)"
        findings.append(Finding(SIGNATURE_UNCHECKED, STEP, message, where))
    else:
        if s.key_id not in ctx.keyring:
            findings.append(
                Finding(UNKNOWN_KEY, STEP, f"the receipt is signed by key {s.key_id}, not in the keyring", where)
            )
        elif not ctx.keyring.verify(s.key_id, receipt.signature, s.signing_input()):
            findings.append(
                Finding(BAD_SIGNATURE, STEP, "the receipt's signature does not verify over its statement", where)
            )
    unchecked: list[str] = []
    if receipt.output is None:
        unchecked.append("receipt output: the receipt carries no output, so its digest was not recomputed")
    else:
        salt = b"" if s.salt_id is None else ctx.salts.get(s.salt_id)
        if salt is None:
            message = f"the receipt's output is blinded with salt {s.salt_id}, which was not given: not recomputed"
            findings.append(Finding(CONTENT_UNCHECKED, STEP, message, where))
        else:
            try:
                found = output_digest(receipt.output, salt)
            except CanonicalizationError as exc:
                found = f"no canonical form ({exc})"
            if found != s.output_digest:
                message = f"the receipt's output digests to {found}, its statement signs {s.output_digest}"
                findings.append(Finding(IDENTITY_MISMATCH, STEP, message, where))
    if s.response_model is None:
        unchecked.append("model substitution: the receipt names no response model")
    stated = run_key(s.trace_id, s.span_id)
    if own_key is None:
        message = "the receipt record carries no trace id or span id"
        findings.append(Finding(BINDING_MISMATCH, STEP, message, where))
    for attr, value in ((RUN_IDENTITY_ID, s.identity), (RUN_IDENTITY_KEY_ID, s.key_id)):
        if attr in record.attributes and record.attributes[attr] != value:
            message = f"the receipt record has {attr}={record.attributes[attr]!r}, the receipt says {value!r}"
            findings.append(Finding(BINDING_MISMATCH, STEP, message, where))
    if own_key is not None and own_key != stated:
        message = (
            f"the receipt record belongs to span {record.trace_id}/{record.span_id}, "
            f"its statement names {s.trace_id}/{s.span_id}"
        )
        findings.append(Finding(BINDING_MISMATCH, STEP, message, where))
    # Copies that say the same thing count once: the same signed statement and the same findings (a copy
    # whose carried output or record ids disagree has findings of its own, so it is kept and judged).
    said = "\x00".join(sorted(f"{f.step} {f.code} {f.message}" for f in findings)).encode()
    fingerprint = hashlib.sha256(s.canonical() + receipt.signature + b"\x00" + said).digest()[:16]
    return ReceiptSummary(stated, where, s, tuple(findings), fingerprint, tuple(notes), tuple(unchecked))
