"""Steps 2, 5, 6 and 7: spans and manifests joined by (trace id, span id), one verdict per run.

The table keeps per run only small summaries (no content), packed into a few hundred bytes once clean
(:mod:`._compact`), so its memory grows with the number of runs, not with the size of their compositions.
Deliveries that repeat a record (collector retries, re-batching) are recognised and counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar, cast

from run_identity.statement import BindingStatement
from run_identity.verify._checks import (
    CheckContext,
    Malformed,
    ManifestSummary,
    SpanSummary,
    Telemetry,
    binding_hash,
    check_signature,
    telemetry_mismatches,
    typed_key,
)
from run_identity.verify._codes import (
    BINDING_MISMATCH,
    MALFORMED,
    MANIFEST_MISSING,
    SPAN_MISSING,
    TELEMETRY_MISMATCH,
    UNIDENTIFIED,
    VERIFIED,
    Finding,
)
from run_identity.verify._compact import (
    JOINED,
    MANIFEST,
    SPAN,
    Profiles,
    pack_manifest,
    pack_span,
    pack_verified,
    packed_statement,
    same_span,
    unpack_manifest,
    unpack_span,
    unpack_verified,
    verified_view,
)
from run_identity.verify._result import Policy, VerificationResult

__all__ = ["RunTable"]

Locate = Callable[[int, int, int], str]
_T = TypeVar("_T")
_FIELDS = ("identity", "key_id", "declared_at", "spec_version")
_FINGERPRINT = slice(49, 65)  # the manifest fingerprint inside a packed manifest or verified run


class _Run:
    """Everything received for one (trace id, span id), when it does not pack."""

    __slots__ = ("bad", "extra", "manifests", "span", "span_check")

    def __init__(self, span: SpanSummary | None = None, manifests: list[ManifestSummary] | None = None) -> None:
        self.span = span
        self.manifests: list[ManifestSummary] = manifests or []
        self.bad: list[Finding] | None = None
        self.extra: list[Finding] | None = None
        # Step 2's outcome once known (results may be read more than once): False = not yet checked.
        self.span_check: Finding | bool | None = False


@dataclass(frozen=True, slots=True)
class _Loose:
    """A malformed record whose ids are unknown: a result of its own."""

    finding: Finding


class RunTable:
    """Collects summaries in arrival order and turns them into results."""

    def __init__(self, ctx: CheckContext, policy: Policy, locate: Locate) -> None:
        self._ctx = ctx
        self._policy = policy
        self._locate = locate
        self._runs: dict[bytes | int, bytes | _Run | _Loose] = {}
        self._shared: dict[object, object] = {}
        self._profiles = Profiles()
        self._agreed: tuple[Telemetry, Telemetry, frozenset[str]] | None = None

    def __len__(self) -> int:
        return len(self._runs)

    def _share(self, value: _T) -> _T:
        """One object for equal small values (key ids, telemetry, models), to keep per-run memory small."""
        return cast(_T, self._shared.setdefault(value, value))

    def _share_telemetry(self, telemetry: Telemetry) -> Telemetry:
        """One object for equal telemetry of the same types (a span's ``True`` is not a manifest's ``1``)."""
        return cast(Telemetry, self._shared.setdefault(typed_key(telemetry), telemetry))

    def add(self, item: SpanSummary | ManifestSummary | Malformed) -> None:
        """Take one summary from a worker."""
        if isinstance(item, SpanSummary):
            self._add_span(item)
        elif isinstance(item, ManifestSummary):
            self._add_manifest(item)
        else:
            where = self._locate(item.source, item.position, item.index)
            finding = Finding(MALFORMED, 1, item.message, where)
            if item.key is None:
                self._runs[len(self._runs) + (1 << 62)] = _Loose(finding)
                return
            run = self._open(item.key)
            run.bad = [*(run.bad or ()), finding]
            self._runs[item.key] = run

    def _open(self, key: bytes) -> _Run:
        """The run at ``key`` as an object (unpacked if it was packed)."""
        entry = self._runs.get(key)
        if isinstance(entry, _Run):
            return entry
        if entry is None:
            return _Run()
        assert isinstance(entry, bytes)
        if entry[0] == SPAN:
            return _Run(unpack_span(entry, key, self._profiles))
        if entry[0] == MANIFEST:
            return _Run(None, [unpack_manifest(entry, key, self._profiles)])
        span, manifest = unpack_verified(entry, key, self._profiles)
        run = _Run(span, [manifest])
        run.span_check = None  # it verified when packed
        return run

    def _settle(self, key: bytes, run: _Run) -> None:
        """Store ``run``, packed when it is a pending clean record or a cleanly joined run."""
        packed: bytes | None = None
        if run.bad is None and run.extra is None:
            span, manifests = run.span, run.manifests
            if span is not None and not manifests:
                packed = pack_span(span, self._profiles)
            elif span is None and len(manifests) == 1:
                packed = pack_manifest(manifests[0], self._profiles)
            elif span is not None and len(manifests) == 1 and self._clean_join(span, manifests[0]):
                packed = pack_verified(span, manifests[0], self._profiles)
        self._runs[key] = packed if packed is not None else run

    def _clean_join(self, span: SpanSummary, m: ManifestSummary) -> bool:
        return (
            span.statement is not None
            and span.statement == m.statement
            and binding_hash(span.statement, span.signature) == m.binding
            and self._telemetry_agrees(span, m)
        )

    def _telemetry_agrees(self, span: SpanSummary, m: ManifestSummary) -> bool:
        """Step 6 for a join. Telemetry is shared (:meth:`_share`), so runs of one application hand the very
        same objects: the last agreement found is recognised by identity."""
        last = self._agreed
        if last is not None and last[0] is span.telemetry and last[1] is m.telemetry and last[2] is m.unknown:
            return True
        if telemetry_mismatches(span.telemetry, m.telemetry, m.unknown, ""):
            return False
        self._agreed = (span.telemetry, m.telemetry, m.unknown)
        return True

    def _add_span(self, span: SpanSummary) -> None:
        entry = self._runs.get(span.key)
        if not span.checked:
            # A pending manifest checked the very same statement for these ids: it is valid as it stands.
            if not (
                isinstance(entry, bytes)
                and entry[0] == MANIFEST
                and packed_statement(entry, self._profiles) == span.statement
            ):
                span.check()
            span.checked = True
        if (
            isinstance(entry, bytes)
            and entry[0] not in (SPAN, MANIFEST)
            and span.statement is not None
            and same_span(entry, span, self._profiles, binding_hash(span.statement, span.signature))
        ):
            return
        span.telemetry = self._share_telemetry(span.telemetry)
        run = self._open(span.key)
        if run.span is None:
            run.span = span
        elif not run.span.same_as(span):
            where = self._locate(span.source, span.position, span.index)
            message = "another span with the same ids carries different run_identity or GenAI attributes"
            run.extra = [*(run.extra or ()), Finding(BINDING_MISMATCH, 5, message, where)]
        elif entry is not None and not isinstance(entry, _Run):
            return  # a repeated delivery of a packed span
        self._settle(span.key, run)

    def _add_manifest(self, manifest: ManifestSummary) -> None:
        entry = self._runs.get(manifest.key)
        if isinstance(entry, bytes) and entry[0] != SPAN and entry[_FINGERPRINT] == manifest.fingerprint:
            return
        run = self._open(manifest.key)
        for seen in run.manifests:
            if seen.fingerprint == manifest.fingerprint:
                return
        manifest.telemetry = self._share_telemetry(manifest.telemetry)
        manifest.unknown = self._share(manifest.unknown)
        manifest.model = self._share(manifest.model)
        run.manifests.append(manifest)
        self._settle(manifest.key, run)

    def verified_count(self) -> int:
        """How many runs joined cleanly (their results are ``verified``, whatever the policy)."""
        return sum(1 for entry in self._runs.values() if type(entry) is bytes and entry[0] == JOINED)

    def results(self, *, verified: bool = True) -> Iterator[VerificationResult]:
        """One result per run (and per unreadable record), in order of first appearance.

        ``verified=False`` leaves out the runs that joined cleanly (counted by :meth:`verified_count`).
        """
        for key, entry in self._runs.items():
            if isinstance(entry, _Loose):
                findings = (entry.finding,)
                yield VerificationResult(
                    MALFORMED, self._policy.accepts(findings), None, None, None, None, None, None,
                    findings, entry.finding.location, (),
                )  # fmt: skip
                continue
            assert isinstance(key, bytes)
            if isinstance(entry, bytes):
                if entry[0] == JOINED:
                    if verified:
                        yield self._verified(key, entry)
                    continue
                entry = self._open(key)
                self._runs[key] = entry  # keeps step 2's outcome if results are read again
            yield self._result(key, entry)

    def _verified(self, key: bytes, blob: bytes) -> VerificationResult:
        identity, key_id, declared, model, span_at, manifest_at = verified_view(blob, self._profiles)
        return VerificationResult(
            VERIFIED, True, key[:16].hex(), key[16:].hex(), identity, key_id, declared, model, (),
            self._locate(*span_at), (self._locate(*manifest_at),),
        )  # fmt: skip

    def _span_location(self, span: SpanSummary) -> str:
        return self._locate(span.source, span.position, span.index)

    def _manifest_where(self, m: ManifestSummary) -> str:
        return self._locate(m.source, m.position, m.index)

    def _findings(self, key: bytes, run: _Run) -> tuple[list[Finding], ManifestSummary | None]:
        span, manifests = run.span, run.manifests
        span_where = self._span_location(span) if span is not None else None
        # 1. Parse: records of this run that could not be read.
        findings: list[Finding] = list(run.bad or ())
        if span is not None and span.problem is not None:
            findings.append(Finding(MALFORMED, 1, span.problem, span_where))
        # 3-4 (and the record-level parts of 5-6) were checked as each manifest streamed by.
        for m in manifests:
            findings.extend(m.findings)
        passing = [m for m in manifests if m.passes_signature_and_content]
        primary = passing[0] if passing else (manifests[0] if manifests else None)
        # 2. Span signature, over the statement rebuilt from the span alone. A manifest that passed step 3
        #    with the very same statement, ids and signature has already verified these exact bytes.
        if span is not None and span.statement is not None:
            covered = (
                self._ctx.keyring is not None
                and primary is not None
                and primary.bound
                and not any(f.step == 3 for f in primary.findings)
                and primary.binding == binding_hash(span.statement, span.signature)
            )
            if not covered:
                if run.span_check is False:
                    statement = _statement(key, span.statement)
                    found = check_signature(self._ctx, statement, span.signature, 2, "span")
                    run.span_check = None if found is None else Finding(found.code, 2, found.message, span_where)
                if isinstance(run.span_check, Finding):
                    findings.append(run.span_check)
        # 5. Join.
        findings.extend(run.extra or ())
        if len(passing) > 1:
            ids = ", ".join(sorted({m.identity for m in passing}))
            message = f"{len(passing)} different manifests for this span all verify ({ids})"
            findings.append(Finding(BINDING_MISMATCH, 5, message, self._manifest_where(passing[1])))
        if span is None:
            if manifests:
                message = "no span with this trace id and span id in the input (sampled out, or dropped)"
                findings.append(Finding(SPAN_MISSING, 5, message, self._manifest_where(manifests[0])))
        elif not span.identified:
            if manifests:
                message = "the span carries no run_identity attributes, yet a manifest names it"
                findings.append(Finding(BINDING_MISMATCH, 5, message, span_where))
        elif primary is None:
            if not run.bad:
                message = "no manifest for this run in the input"
                findings.append(Finding(MANIFEST_MISSING, 5, message, span_where))
        elif span.statement is not None and span.statement != primary.statement:
            differ = [
                f"{name} {a!r} on the span, {b!r} in the manifest"
                for name, a, b in zip(_FIELDS, span.statement, primary.statement, strict=True)
                if a != b
            ]
            message = "span and manifest statements differ: " + "; ".join(differ)
            findings.append(Finding(BINDING_MISMATCH, 5, message, span_where))
        # 6. Telemetry.
        if span is not None and span.identified and primary is not None:
            mismatches = telemetry_mismatches(span.telemetry, primary.telemetry, primary.unknown, "the span has")
            findings.extend(Finding(TELEMETRY_MISMATCH, 6, message, span_where) for message in mismatches)
        # 7. Coverage.
        if span is not None and not span.identified:
            reason = f": run_identity.error = {span.error}" if span.error else ""
            findings.append(Finding(UNIDENTIFIED, 7, f"a GenAI span without an identity{reason}", span_where))
        findings.sort(key=Finding.sort_key)
        return findings, primary

    def _result(self, key: bytes, run: _Run) -> VerificationResult:
        findings, primary = self._findings(key, run)
        span = run.span
        statement = primary.statement if primary is not None else (span.statement if span is not None else None)
        model = primary.model if primary is not None else None
        if model is None and span is not None:
            model = next((v for a, v in span.telemetry if a == "gen_ai.request.model" and type(v) is str), None)
        return VerificationResult(
            findings[0].code if findings else VERIFIED,
            self._policy.accepts(findings),
            key[:16].hex(),
            key[16:].hex(),
            statement[0] if statement else None,
            statement[1] if statement else None,
            statement[2] if statement else None,
            model,
            tuple(findings),
            self._span_location(span) if span is not None else None,
            tuple(self._manifest_where(m) for m in run.manifests),
            tuple(n for m in run.manifests for n in m.notes),
        )


def _statement(key: bytes, fields: tuple[str, str, str, str]) -> BindingStatement:
    identity, key_id, declared_at, spec_version = fields
    return BindingStatement(identity, key[:16].hex(), key[16:].hex(), key_id, declared_at, spec_version)
