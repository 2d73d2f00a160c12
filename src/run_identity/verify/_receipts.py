"""Step 8 (docs/spec.md §12): run receipts, checked alone as they stream by, then against their run.

A ``run_identity.receipt`` log record is reduced to a :class:`ReceiptSummary` (signature, the output it
carries against its digest, the record's own ids). :class:`Receipts` keeps the summaries by run and, once
the runs are judged, adds the receipts' findings to each run's result: the receipt must name the run's
identity, two receipts of one run must agree, and a resolved model that is not the requested one (nor a
dated snapshot of it, see :func:`run_identity.receipt.model_resolution`) is ``model_substituted``.
A receipt whose run has neither span nor manifest in the input is ``manifest_missing``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from run_identity.errors import CanonicalizationError, ManifestError
from run_identity.receipt import Receipt, ReceiptStatement, model_resolution, output_digest
from run_identity.verify._checks import CheckContext, Malformed, run_key
from run_identity.verify._codes import (
    BAD_SIGNATURE,
    BINDING_MISMATCH,
    IDENTITY_MISMATCH,
    MANIFEST_MISSING,
    MODEL_SUBSTITUTED,
    UNKNOWN_KEY,
    Finding,
)
from run_identity.verify._records import ReceiptRecord
from run_identity.verify._result import Policy, VerificationResult

__all__ = ["STEP", "ReceiptRecord", "ReceiptSummary", "Receipts", "summarize_receipt"]

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
    notes: list[str] = []
    if ctx.keyring is not None:
        if s.key_id not in ctx.keyring:
            findings.append(
                Finding(UNKNOWN_KEY, STEP, f"the receipt is signed by key {s.key_id}, not in the keyring", where)
            )
        elif not ctx.keyring.verify(s.key_id, receipt.signature, s.signing_input()):
            findings.append(
                Finding(BAD_SIGNATURE, STEP, "the receipt's signature does not verify over its statement", where)
            )
    if receipt.output is not None:
        salt = b"" if s.salt_id is None else ctx.salts.get(s.salt_id)
        if salt is None:
            notes.append(f"receipt output not recomputed: blinded with salt {s.salt_id}, which was not given")
        else:
            try:
                found = output_digest(receipt.output, salt)
            except CanonicalizationError as exc:
                found = f"no canonical form ({exc})"
            if found != s.output_digest:
                message = f"the receipt's output digests to {found}, its statement signs {s.output_digest}"
                findings.append(Finding(IDENTITY_MISMATCH, STEP, message, where))
    stated = run_key(s.trace_id, s.span_id)
    if own_key is not None and own_key != stated:
        message = (
            f"the receipt record belongs to span {record.trace_id}/{record.span_id}, "
            f"its statement names {s.trace_id}/{s.span_id}"
        )
        findings.append(Finding(BINDING_MISMATCH, STEP, message, where))
    fingerprint = hashlib.sha256(s.canonical() + receipt.signature).digest()[:16]
    return ReceiptSummary(stated, where, s, tuple(findings), fingerprint, tuple(notes))


class Receipts:
    """The receipts of a verification, by run; applied to the runs' results at the end."""

    def __init__(self) -> None:
        self._by_run: dict[bytes, list[ReceiptSummary]] = {}

    def __len__(self) -> int:
        return len(self._by_run)

    def add(self, summary: ReceiptSummary) -> None:
        """Keep one receipt (a byte-identical repeat counts once)."""
        seen = self._by_run.setdefault(summary.key, [])
        if all(r.fingerprint != summary.fingerprint for r in seen):
            seen.append(summary)

    def _findings(
        self, receipts: list[ReceiptSummary], identity: str | None, model: str | None
    ) -> tuple[list[Finding], list[str]]:
        findings: list[Finding] = []
        notes: list[str] = []
        for r in receipts:
            findings.extend(r.findings)
            notes.extend(r.notes)
            s = r.statement
            if identity is not None and s.identity != identity:
                findings.append(
                    Finding(
                        BINDING_MISMATCH,
                        STEP,
                        f"the receipt names identity {s.identity}, the run has {identity}",
                        r.where,
                    )
                )
            requested = model if model is not None else s.request_model
            resolution = model_resolution(requested, s.response_model)
            if resolution == "substituted":
                message = f"requested model {requested!r}, the provider reports {s.response_model!r}"
                findings.append(Finding(MODEL_SUBSTITUTED, STEP, message, r.where))
            elif resolution == "resolved":
                notes.append(f"model {requested} resolved to {s.response_model}")
            notes.append(f"receipt: output {s.output_digest}, finish {', '.join(s.finish_reasons) or '-'}")
        if len({r.statement.output_digest for r in receipts}) > 1:
            findings.append(
                Finding(
                    BINDING_MISMATCH,
                    STEP,
                    f"{len(receipts)} receipts of this run name different outputs",
                    receipts[1].where,
                )
            )
        return findings, notes

    def apply(self, results: Iterator[VerificationResult], policy: Policy) -> Iterator[VerificationResult]:
        """The results with their receipts' findings and notes; then one result per receipt without a run."""
        seen: set[bytes] = set()
        for result in results:
            key = bytes.fromhex(result.trace_id + result.span_id) if result.trace_id and result.span_id else None
            receipts = self._by_run.get(key) if key is not None else None
            if key is None or not receipts:
                yield result
                continue
            seen.add(key)
            extra, notes = self._findings(receipts, result.identity, result.model)
            yield _with(result, extra, notes, policy)
        for key, receipts in self._by_run.items():
            if key in seen:
                continue
            extra, notes = self._findings(receipts, None, None)
            message = "a receipt names a run that has neither span nor manifest in the input"
            extra.append(Finding(MANIFEST_MISSING, STEP, message, receipts[0].where))
            s = receipts[0].statement
            empty = VerificationResult(
                MANIFEST_MISSING,
                False,
                s.trace_id,
                s.span_id,
                s.identity,
                s.key_id,
                None,
                s.request_model,
                (),
                None,
                (),
            )
            yield _with(empty, extra, notes, policy)


def _with(result: VerificationResult, extra: list[Finding], notes: list[str], policy: Policy) -> VerificationResult:
    findings = sorted([*result.findings, *extra], key=Finding.sort_key)
    code = findings[0].code if findings else result.code
    return dataclasses.replace(
        result,
        code=code,
        passed=policy.accepts(findings),
        findings=tuple(findings),
        notes=(*result.notes, *notes),
    )
