"""Steps 2, 5, 6, 7 and 8: records joined by (trace id, span id), one verdict per run.

The table keeps per run only small summaries (no content), so its memory grows with the number of runs,
not with the size of their compositions. Repeated deliveries (collector retries, re-batching) that say the
same thing count once; copies that differ are all kept and all judged, so a verdict never depends on the
order records arrive in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from run_identity.core.statement import BindingStatement
from run_identity.verify._checks import (
    MODEL,
    CheckContext,
    Malformed,
    ManifestSummary,
    SpanSummary,
    binding_hash,
    check_signature,
    share_signed,
    statement_difference,
    telemetry_mismatches,
    typed_key,
)
from run_identity.verify._codes import (
    BINDING_MISMATCH,
    CONTENT_WITHHELD,
    MALFORMED,
    MANIFEST_MISSING,
    SPAN_MISSING,
    TELEMETRY_MISMATCH,
    UNIDENTIFIED,
    VERIFIED,
    Finding,
)
from run_identity.verify._content import ContentSummary, ambiguous_findings, content_findings
from run_identity.verify._manifests import unchecked_by
from run_identity.verify._receipts import ReceiptSummary, judge_receipts
from run_identity.verify._result import Policy, VerificationResult

__all__ = ["MAX_LOOSE_PER_SOURCE", "RunTable"]

Locate = Callable[[int, int, int], str]
#: Unreadable records without ids kept as results of their own, per input file; the rest are counted.
MAX_LOOSE_PER_SOURCE = 20


class _Run:
    """Everything received for one (trace id, span id): every distinct copy of every record.

    Memory per run is what bounds a verification of millions of runs, and most runs have one span and one
    manifest: each kind is held as the record itself, and as a dict by what the copy says only once a second
    copy arrives (so any number of copies is collected in linear time).
    """

    __slots__ = ("_contents", "_manifests", "_receipts", "_spans", "bad", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._spans: SpanSummary | dict[Any, SpanSummary] | None = None
        self._manifests: ManifestSummary | dict[bytes, ManifestSummary] | None = None
        self._receipts: ReceiptSummary | dict[bytes, ReceiptSummary] | None = None
        self._contents: ContentSummary | dict[bytes, ContentSummary] | None = None
        self.bad: list[Finding] | None = None

    @property
    def spans(self) -> list[SpanSummary]:
        return _listed(self._spans)

    @property
    def manifests(self) -> list[ManifestSummary]:
        return _listed(self._manifests)

    @property
    def receipts(self) -> list[ReceiptSummary]:
        return _listed(self._receipts)

    @property
    def contents(self) -> list[ContentSummary]:
        return _listed(self._contents)

    def undeclared_only(self, require_identity: bool = False) -> bool:
        """True when all the run holds is GenAI spans that were never declared (and log records of captured
        content, which make no run): no run (spec §12 step 7)."""
        if self._manifests is not None or self._receipts is not None or self.bad is not None:
            return False
        spans = self.spans
        if require_identity and any(s.model_call for s in spans):
            return False
        return all(not s.identified and s.error is None and s.problem is None for s in spans)

    def add_span(self, span: SpanSummary) -> None:
        self._spans = _added(self._spans, span, SpanSummary.same_key)

    def add_manifest(self, manifest: ManifestSummary) -> None:
        self._manifests = _added(self._manifests, manifest, _fingerprint)

    def add_receipt(self, receipt: ReceiptSummary) -> None:
        self._receipts = _added(self._receipts, receipt, _fingerprint)

    def add_content(self, content: ContentSummary) -> None:
        self._contents = _added(self._contents, content, _fingerprint)


def _fingerprint(item: ManifestSummary | ReceiptSummary | ContentSummary) -> bytes:
    return item.fingerprint


_Item = TypeVar("_Item")


def _listed(held: _Item | dict[Any, _Item] | None) -> list[_Item]:
    if held is None:
        return []
    return list(held.values()) if type(held) is dict else [held]  # type: ignore[list-item]


def _added(held: _Item | dict[Any, _Item] | None, item: _Item, key: Callable[[_Item], Any]) -> Any:
    """``held`` with ``item`` added unless a copy saying the same is there (one item, or a dict by ``key``)."""
    if held is None:
        return item
    if type(held) is not dict:
        held = {key(held): held}  # type: ignore[arg-type,dict-item]
    held.setdefault(key(item), item)
    return held if len(held) > 1 else next(iter(held.values()))


@dataclass(slots=True)
class _Loose:
    """Unreadable records whose ids are unknown: the first as a result, then how many more like it."""

    finding: Finding
    more: int = 0


class RunTable:
    """Collects summaries in arrival order and turns them into results."""

    def __init__(self, ctx: CheckContext, policy: Policy, locate: Locate) -> None:
        self._ctx = ctx
        self._policy = policy
        self._locate = locate
        self._runs: dict[bytes, _Run] = {}
        self._loose: list[_Loose] = []
        self._loose_by_source: dict[int, int] = {}
        self._overflow: dict[int, _Loose] = {}
        # One object for equal small values of many runs (telemetry, withheld-attribute sets): per table, so
        # nothing outlives the verification.
        self._shared: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._runs) + len(self._loose)

    def add(self, item: SpanSummary | ManifestSummary | ReceiptSummary | ContentSummary | Malformed) -> None:
        """Take one summary from a worker."""
        if isinstance(item, Malformed):
            self._add_malformed(item)
            return
        run = self._runs.get(item.key)
        if run is None:
            run = self._runs[item.key] = _Run(item.key)
        item.key = run.key  # one object for the run's key, not one per record
        if isinstance(item, SpanSummary):
            item.telemetry = self._shared.setdefault(typed_key(item.telemetry), item.telemetry)
            for m in run.manifests:
                share_signed(item, m)
            run.add_span(item)
        elif isinstance(item, ManifestSummary):
            item.telemetry = self._shared.setdefault(typed_key(item.telemetry), item.telemetry)
            item.unknown = self._shared.setdefault(item.unknown, item.unknown)
            if item.content_views:  # instructions and tools recur from run to run; messages seldom do
                messages, *rest = item.content_views
                item.content_views = (messages, *(self._shared.setdefault(v, v) for v in rest))
            for span in run.spans:
                share_signed(span, item)
            run.add_manifest(item)
        elif isinstance(item, ContentSummary):
            run.add_content(item)
        else:
            run.add_receipt(item)

    @property
    def undeclared_spans(self) -> int:
        """GenAI spans never declared and named by no record: no run (docs/spec.md §12 step 7)."""
        require = self._policy.require_identity
        return sum(len(run.spans) for run in self._runs.values() if run.undeclared_only(require))

    def add_loose(self, source: int, count: int, finding: Finding) -> None:
        """Count ``count`` unreadable records of ``source`` beyond those kept (a worker's overflow)."""
        over = self._overflow.get(source)
        if over is None:
            self._overflow[source] = _Loose(finding, count - 1)
        else:
            over.more += count

    def _add_malformed(self, item: Malformed) -> None:
        where = self._locate(item.source, item.position, item.index)
        finding = Finding(MALFORMED, 1, item.message, where)
        if item.key is not None:
            run = self._runs.get(item.key)
            if run is None:
                run = self._runs[item.key] = _Run(item.key)
            run.bad = [*(run.bad or ()), finding]
            return
        kept = self._loose_by_source.get(item.source, 0)
        if kept < MAX_LOOSE_PER_SOURCE:
            self._loose_by_source[item.source] = kept + 1
            self._loose.append(_Loose(finding))
        else:
            self.add_loose(item.source, 1, finding)

    def results(self) -> Iterator[VerificationResult]:
        """One result per run, then one per unreadable record without ids (the first of each file, then one
        that counts the rest)."""
        for key, run in self._runs.items():
            if run.undeclared_only(self._policy.require_identity):
                continue
            yield self._result(key, run)
        for loose in self._loose:
            yield self._loose_result(loose.finding)
        for source, over in self._overflow.items():
            message = f"{over.more + 1:,} more unreadable records in this file (the first: {over.finding.message})"
            where = over.finding.location.rsplit(":", 1)[0] if over.finding.location else f"<input {source}>"
            yield self._loose_result(Finding(MALFORMED, 1, message, where))

    def _loose_result(self, finding: Finding) -> VerificationResult:
        findings = (finding,)
        return VerificationResult(
            MALFORMED, self._policy.accepts(findings), None, None, None, None, None, None,
            findings, finding.location, (),
        )  # fmt: skip

    def _where(self, item: SpanSummary | ManifestSummary | ContentSummary) -> str:
        return self._locate(item.source, item.position, item.index)

    def _findings(
        self, run: _Run, notes: list[str]
    ) -> tuple[list[Finding], ManifestSummary | None, list[str], tuple[BindingStatement, bytes] | None]:
        spans = sorted(run.spans, key=lambda s: (s.source, s.position, s.index))
        manifests = sorted(run.manifests, key=lambda m: (len(m.withheld), m.fingerprint))
        unchecked: list[str] = []
        # 1. Parse: records of this run that could not be read.
        findings: list[Finding] = list(run.bad or ())
        for span in spans:
            if span.problem is not None:
                findings.append(Finding(MALFORMED, 1, span.problem, self._where(span)))
            findings.extend(ambiguous_findings(span.content, self._where(span)))
        contents = sorted(run.contents, key=lambda c: (c.source, c.position, c.index))
        for c in contents:
            findings.extend(ambiguous_findings(c.captures, self._where(c)))
        # 3-4 (and the record-level parts of 5-6) were checked as each manifest streamed by.
        for m in manifests:
            findings.extend(m.findings)
        passing = [m for m in manifests if m.passes_signature_and_content]
        # The manifest held against the span: a passing one, the one the span's statement names if any, the
        # fullest copy; the order of arrival never decides.
        bound = {s.statement for s in spans if s.statement is not None}
        passing.sort(key=lambda m: m.statement not in bound)
        primary = passing[0] if passing else (manifests[0] if manifests else None)
        # 2. Span signature, over the statement rebuilt from the span alone. A manifest that passed step 3
        #    with the very same statement and signature has already verified these exact bytes.
        verified_bindings = {m.binding for m in manifests if m.bound and not any(f.step == 3 for f in m.findings)}
        # The signed statement of the run (its transparency-log entry, step 9): the held manifest's when its
        # signature verified, else the first span's that did.
        signed: tuple[BindingStatement, bytes] | None = None
        if primary is not None and self._ctx.keyring is not None and not any(f.step == 3 for f in primary.findings):
            signed = (primary.statement, primary.signature)
        for span in spans:
            if span.statement is None:
                continue
            if self._ctx.keyring is not None and binding_hash(span.statement, span.signature) in verified_bindings:
                continue
            found = check_signature(self._ctx, span.statement, span.signature, 2, "span")
            if found is not None:
                findings.append(Finding(found.code, 2, found.message, self._where(span)))
            elif signed is None and span.signature is not None:
                signed = (span.statement, span.signature)
        # 5. Join.
        if len(spans) > 1:
            message = f"{len(spans)} spans with these ids carry different run_identity or GenAI attributes"
            findings.append(Finding(BINDING_MISMATCH, 5, message, self._where(spans[1])))
        claims = {m.claim for m in passing}
        if len(claims) > 1:
            ids = ", ".join(sorted({m.identity for m in passing}))
            message = f"{len(claims)} different signed manifests for this span all verify ({ids})"
            findings.append(Finding(BINDING_MISMATCH, 5, message, self._where(passing[1])))
        if not spans:
            if manifests:
                message = "no span with this trace id and span id in the input (sampled out, or dropped)"
                findings.append(Finding(SPAN_MISSING, 5, message, self._where(manifests[0])))
            else:
                unchecked.append("no span: the span's statement and telemetry were not checked")
        for span in spans:
            where = self._where(span)
            if not span.identified:
                if manifests:
                    message = "the span carries no run_identity.id, yet a manifest names it"
                    findings.append(Finding(BINDING_MISMATCH, 5, message, where))
                # 7. Coverage: run_identity.error says a declaration lost its identity; a model call without
                #    any run_identity attribute was not declared, a finding only when the policy requires it.
                if span.error is not None:
                    message = f"a GenAI span whose declared identity was lost: run_identity.error = {span.error}"
                    findings.append(Finding(UNIDENTIFIED, 7, message, where))
                elif span.model_call and self._policy.require_identity:
                    message = "a model call without an identity (the policy requires one on every model call)"
                    findings.append(Finding(UNIDENTIFIED, 7, message, where))
                continue
            if primary is None:
                if not run.bad and span.problem is None:
                    findings.append(Finding(MANIFEST_MISSING, 5, "no manifest for this run in the input", where))
                continue
            if span.statement is not None and span.statement != primary.statement:
                findings.append(Finding(BINDING_MISMATCH, 5, statement_difference(span.statement, primary), where))
            # 6. Telemetry, and the captured content on the span and its events.
            for message in telemetry_mismatches(span.telemetry, primary.telemetry, primary.unknown, "the span has"):
                findings.append(Finding(TELEMETRY_MISMATCH, 6, message, where))
            findings.extend(content_findings(span.content, primary.content_views, where, unchecked))
        if primary is not None:
            for c in contents:  # 6. Captured content in the run's log records.
                findings.extend(content_findings(c.captures, primary.content_views, self._where(c), unchecked))
            unchecked.extend(unchecked_by(primary.withheld))
            required = sorted(self._policy.require_content & {w.split("[")[0] for w in primary.withheld})
            if required:
                message = f"the manifest withholds {', '.join(required)}, which the policy requires"
                findings.append(Finding(CONTENT_WITHHELD, 4, message, self._where(primary)))
        # 8. Receipts.
        findings.extend(judge_receipts(run.receipts, primary, bool(spans), unchecked, notes))
        findings = sorted(set(findings), key=Finding.sort_key)
        return findings, primary, unchecked, signed

    def _result(self, key: bytes, run: _Run) -> VerificationResult:
        notes = [n for m in run.manifests for n in m.notes]
        notes.extend(n for r in sorted(run.receipts, key=lambda r: r.fingerprint) for n in r.notes)
        findings, primary, unchecked, signed = self._findings(run, notes)
        spans = sorted(run.spans, key=lambda s: (s.source, s.position, s.index))
        statement: BindingStatement | None = primary.statement if primary is not None else None
        if statement is None:
            statement = next((s.statement for s in spans if s.statement is not None), None)
        model = primary.model if primary is not None else None
        if model is None and primary is None:
            model = next((v for s in spans for a, v in s.telemetry if a == MODEL and type(v) is str), None)
        if model is None and run.receipts:
            model = min(run.receipts, key=lambda r: r.fingerprint).statement.request_model
        return VerificationResult(
            findings[0].code if findings else VERIFIED,
            self._policy.accepts(findings),
            key[:16].hex(),
            key[16:].hex(),
            statement.identity if statement else None,
            statement.key_id if statement else None,
            statement.declared_at if statement else None,
            model,
            tuple(findings),
            self._where(spans[0]) if spans else None,
            tuple(sorted(self._where(m) for m in run.manifests)),
            tuple(dict.fromkeys(notes)),
            primary.withheld if primary is not None else (),
            tuple(dict.fromkeys(unchecked)),
            tuple(sorted(r.where for r in run.receipts)),
            signed,
        )

