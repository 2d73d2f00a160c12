"""Steps 1, 3, 4 and the record-level parts of 5 and 6 for one manifest record, as it streams by.

The content is checked one way only: the manifest is read by :meth:`run_identity.core.manifest.Manifest.from_json`
(which refuses every ambiguous spelling) and recomputed by :meth:`~run_identity.core.manifest.Manifest.recompute`,
as docs/spec.md §12 step 4 says. Only a :class:`ManifestSummary` is kept: the content is dropped once checked.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from run_identity.core.attributes import RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID
from run_identity.core.composition import REQUIRED_COMPONENTS, validate_component, validate_element
from run_identity.core.errors import CompositionError, ManifestError
from run_identity.core.manifest import Manifest, ManifestComponent, ManifestElement
from run_identity.verify._checks import (
    MODEL,
    OPERATION,
    PARAMETER_ATTRS,
    PROVIDER,
    CheckContext,
    Malformed,
    ManifestSummary,
    Telemetry,
    as_tuple,
    binding_hash,
    check_signature,
    run_key,
    telemetry_mismatches,
)
from run_identity.verify._codes import (
    BINDING_MISMATCH,
    CONTENT_UNCHECKED,
    IDENTITY_MISMATCH,
    TELEMETRY_MISMATCH,
    Finding,
)
from run_identity.verify._content import manifest_views
from run_identity.verify._records import ManifestRecord

__all__ = ["composition_problem", "manifest_telemetry", "summarize_manifest", "withheld_parts"]

#: What each withheld component keeps step 6 (and step 8) from checking.
_CHECKS_OF = {
    "model": "gen_ai.request.model and gen_ai.provider.name against the span; the requested model of a receipt",
    "operation": "gen_ai.operation.name against the span",
    "parameters": "gen_ai.request.* parameters against the span",
}


def manifest_telemetry(manifest: Manifest) -> tuple[Telemetry, frozenset[str], str | None]:
    """The manifest's side of step 6, keyed by the span attribute each value is compared with; the
    attributes it cannot speak for (withheld); and the declared model name."""
    pairs: list[tuple[str, Any]] = []
    unknown: set[str] = set()
    model_name = None
    model = manifest.components.get("model")
    if model is not None:
        if model.withheld or type(model.value) is not dict:
            unknown.update((MODEL, PROVIDER))
        else:
            value = model.value
            for attr, member in ((MODEL, "name"), (PROVIDER, "provider")):
                if member in value:
                    pairs.append((attr, as_tuple(value[member])))
            model_name = value["name"] if type(value.get("name")) is str else None
    operation = manifest.components.get("operation")
    if operation is not None:
        if operation.withheld:
            unknown.add(OPERATION)
        else:
            pairs.append((OPERATION, as_tuple(operation.value)))
    parameters = manifest.components.get("parameters")
    if parameters is not None:
        if parameters.withheld or type(parameters.value) is not dict:
            unknown.update(PARAMETER_ATTRS.values())
        else:
            for k, v in parameters.value.items():
                if k in PARAMETER_ATTRS:
                    pairs.append((PARAMETER_ATTRS[k], as_tuple(v)))
    return tuple(pairs), frozenset(unknown), model_name


def withheld_parts(manifest: Manifest) -> tuple[str, ...]:
    """What the manifest withholds: component names, and ``name[i]`` for withheld elements."""
    out: list[str] = []
    for name, c in sorted(manifest.components.items()):
        if c.withheld:
            out.append(name)
        elif c.elements is not None:
            out.extend(f"{name}[{i}]" for i, e in enumerate(c.elements) if e.withheld)
    return tuple(out)


def unchecked_by(withheld: tuple[str, ...]) -> tuple[str, ...]:
    """The checks that withholding ``withheld`` rules out (docs/verify.md, "what verified means")."""
    return tuple(f"{name} withheld: {_CHECKS_OF[name]} not compared" for name in withheld if name in _CHECKS_OF)


def composition_problem(manifest: Manifest) -> str | None:
    """Step 1 on the content: the composition rules of docs/spec.md §2 (required components, member names and
    types, blob base64, no credentials in ``extensions`` or ``model.endpoint``) applied to what the manifest
    reveals; withheld components and elements are not checked (they are digests). None when it complies."""
    for name in REQUIRED_COMPONENTS:
        if name not in manifest.components:
            return f"components: missing required component {name!r} (docs/spec.md §2)"
    for name, c in sorted(manifest.components.items()):
        path = f"components.{name}"
        try:
            if c.withheld:
                continue
            if c.elements is None:
                validate_component(name, c.value, f"{path}.value")
                continue
            for i, e in enumerate(c.elements):
                if not e.withheld:
                    validate_element(name, e.value, f"{path}.elements[{i}].value")
        except CompositionError as exc:
            return f"{exc} (docs/spec.md §2)"
    return None


def _stated_only(manifest: Manifest) -> Manifest:
    """The manifest with all content withheld: what can be checked without the blinding salt."""
    components: dict[str, ManifestComponent] = {}
    for name, c in manifest.components.items():
        if c.elements is not None:
            elements = tuple(ManifestElement(e.digest, None, True) for e in c.elements)
            components[name] = ManifestComponent(name, c.digest, elements=elements)
        else:
            components[name] = ManifestComponent(name, c.digest, withheld=True)
    return Manifest(
        manifest.spec_version, manifest.identity, components, manifest.statement, manifest.signature, manifest.salt_id
    )


def _shape(manifest: Manifest) -> list[Any]:
    """The stated digests and what is withheld: once every digest recomputed, they stand for the content."""
    shape: list[Any] = []
    for name, c in sorted(manifest.components.items()):
        if c.withheld:
            shape.append([name, c.digest, True])
        elif c.elements is None:
            shape.append([name, c.digest])
        else:
            shape.append([name, c.digest, [[e.digest] if e.withheld else e.digest for e in c.elements]])
    return shape


def _hash(doc: Any) -> bytes:
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).digest()[:16]


def summarize_manifest(
    record: ManifestRecord, ctx: CheckContext, source: int, where: str
) -> ManifestSummary | Malformed:
    """Check one manifest record as far as it can be checked alone, and keep only its summary."""
    own_key = run_key(record.trace_id, record.span_id) if record.trace_id and record.span_id else None
    at = (own_key, source, record.position, record.index)
    # 1. Parse.
    body = record.body
    if type(body) is not str:
        return Malformed(*at, "the manifest record's body is not a string")
    try:
        manifest = Manifest.from_json(body, any_signature=True)
    except ManifestError as exc:
        return Malformed(*at, f"manifest: {exc}")
    composed = composition_problem(manifest)
    if composed is not None:
        return Malformed(*at, f"manifest: {composed}")
    statement, signature = manifest.statement, manifest.signature
    findings: list[Finding] = []
    notes: list[str] = []
    # 3. Manifest signature: a missing or non-canonical one is bad_signature, as on the span (step 2).
    found = check_signature(ctx, statement, signature or None, 3, "manifest")
    if found is not None:
        findings.append(Finding(found.code, 3, found.message, where))
    # 4. Content, recomputed; salted content only with its salt.
    checked, salt = manifest, b""
    content_checked = True
    if manifest.salt_id is not None:
        known = ctx.salts.get(manifest.salt_id)
        if known is None:
            checked, content_checked = _stated_only(manifest), False
            message = f"content not recomputed: blinded with salt {manifest.salt_id}, which was not given"
            findings.append(Finding(CONTENT_UNCHECKED, 4, message, where))
        else:
            salt = known
    problems = checked.recompute(salt=salt).problems
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        findings.append(Finding(IDENTITY_MISMATCH, 4, f"{problems[0]}{more}", where))
    telemetry = manifest_telemetry(checked)
    findings.extend(_record_findings(record, own_key, manifest, telemetry, where))
    stated_key = run_key(statement.trace_id, statement.span_id)
    key = own_key if own_key is not None else stated_key
    pairs, unknown, model = telemetry
    claim = _hash([statement.to_json(), signature.hex(), manifest.identity, manifest.salt_id])
    if problems:  # digests that do not stand for the content: compare the content itself
        content: Any = manifest.to_json()
    else:
        content = _shape(manifest)
    # Copies that say the same thing count once: the same signed content, ids and findings (a copy whose
    # record attributes contradict the manifest has findings of its own, so it is kept and judged).
    said = sorted(f"{f.step} {f.code} {f.message}" for f in findings)
    fingerprint = _hash([claim.hex(), content, said, record.trace_id, record.span_id])
    withheld = withheld_parts(manifest)
    return ManifestSummary(
        key,
        source,
        record.position,
        record.index,
        statement.identity if statement.identity == manifest.identity else manifest.identity,
        statement,
        signature,
        binding_hash(statement, signature),
        tuple(findings),
        pairs,
        unknown,
        fingerprint,
        claim,
        model if content_checked and not problems else None,
        key == stated_key,
        withheld,
        content_checked,
        tuple(notes),
        manifest_views(manifest, content_checked=content_checked),
    )


def _record_findings(
    record: ManifestRecord,
    own_key: bytes | None,
    manifest: Manifest,
    telemetry: tuple[Telemetry, frozenset[str], str | None],
    where: str,
) -> list[Finding]:
    """Step 5 and 6 for the log record itself: its ids and attributes must agree with the manifest."""
    statement = manifest.statement
    out = []
    if own_key is None:
        out.append(Finding(BINDING_MISMATCH, 5, "the manifest record carries no trace id or span id", where))
    elif (record.trace_id, record.span_id) != (statement.trace_id, statement.span_id):
        message = (
            f"the manifest record belongs to span {record.trace_id}/{record.span_id} but its statement names "
            f"{statement.trace_id}/{statement.span_id}"
        )
        out.append(Finding(BINDING_MISMATCH, 5, message, where))
    attrs = record.attributes
    for attr, value in ((RUN_IDENTITY_ID, manifest.identity), (RUN_IDENTITY_KEY_ID, statement.key_id)):
        if attr in attrs and (type(attrs[attr]) is not str or attrs[attr] != value):
            message = f"the manifest record has {attr}={attrs[attr]!r}, the manifest says {value!r}"
            out.append(Finding(BINDING_MISMATCH, 5, message, where))
    pairs, unknown, _ = telemetry
    own = tuple((a, as_tuple(attrs[a])) for a in (MODEL, PROVIDER) if a in attrs)
    for message in telemetry_mismatches(own, pairs, unknown, "the manifest record has"):
        out.append(Finding(TELEMETRY_MISMATCH, 6, message, where))
    return out
