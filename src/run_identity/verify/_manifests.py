"""Steps 1, 3, 4 and the record-level parts of 5 and 6 for one manifest record, as it streams by.

The content check takes the fast path of :mod:`._fast` when it can vouch for the manifest, and otherwise
the core reader (:class:`run_identity.manifest.Manifest`), which also words the problems. Either way only
a :class:`ManifestSummary` is kept: the content is dropped once checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from run_identity.attributes import RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID
from run_identity.canonical import canonicalize
from run_identity.digest import SPEC_VERSION
from run_identity.errors import CanonicalizationError, ManifestError
from run_identity.manifest import Manifest, ManifestComponent, ManifestElement, reject_repeated_members
from run_identity.statement import BindingStatement, encode_signature
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
    statement_fields,
    telemetry_mismatches,
)
from run_identity.verify._codes import BINDING_MISMATCH, IDENTITY_MISMATCH, TELEMETRY_MISMATCH, Finding
from run_identity.verify._fast import Part, fast_check, fingerprint
from run_identity.verify._records import ManifestRecord
from run_identity.verify._text import read_canonical

__all__ = ["summarize_manifest"]

#: (withheld, value) of a component, as the telemetry extraction reads it; None when absent.
_Part = tuple[bool, Any] | None


def _telemetry(model: _Part, operation: _Part, parameters: _Part) -> tuple[Telemetry, frozenset[str], str | None]:
    """The manifest's side of step 6, keyed by the span attribute each value is compared with."""
    pairs: list[tuple[str, Any]] = []
    unknown: set[str] = set()
    model_name = None
    if model is not None:
        withheld, value = model
        if withheld or type(value) is not dict:
            unknown.update((MODEL, PROVIDER))
        else:
            pairs.extend(
                (attr, as_tuple(value[m])) for attr, m in ((MODEL, "name"), (PROVIDER, "provider")) if m in value
            )
            model_name = value["name"] if type(value.get("name")) is str else None
    if operation is not None:
        if operation[0]:
            unknown.add(OPERATION)
        else:
            pairs.append((OPERATION, as_tuple(operation[1])))
    if parameters is not None:
        withheld, value = parameters
        if withheld or type(value) is not dict:
            unknown.update(PARAMETER_ATTRS.values())
        else:
            for k, v in value.items():
                if k in PARAMETER_ATTRS:
                    pairs.append((PARAMETER_ATTRS[k], as_tuple(v) if type(v) in (list, tuple, dict) else v))
    return tuple(pairs), frozenset(unknown), model_name


#: The last parts read and their telemetry: runs of one application share the very same remembered parts
#: (:mod:`._text`), so consecutive manifests are compared by identity. One tuple, swapped whole (threads).
_LAST: tuple[_Part, _Part, _Part, tuple[Telemetry, frozenset[str], str | None]] | None = None


def _shared_telemetry(parts: Mapping[str, Part]) -> tuple[Telemetry, frozenset[str], str | None]:
    global _LAST
    model, operation, parameters = parts.get("model"), parts.get("operation"), parts.get("parameters")
    last = _LAST
    if last is not None and last[0] is model and last[1] is operation and last[2] is parameters:
        return last[3]
    found = _telemetry(model, operation, parameters)
    _LAST = (model, operation, parameters, found)
    return found


def _manifest_part(manifest: Manifest, name: str) -> _Part:
    c = manifest.components.get(name)
    return None if c is None else (c.withheld, c.value)


def _shape(manifest: Manifest) -> list[Any]:
    """The structure :func:`._fast.fingerprint` hashes, from a parsed manifest."""
    shape: list[Any] = []
    for name, c in manifest.components.items():
        if c.withheld:
            shape.append([name, c.digest, True])
        elif c.elements is None:
            shape.append([name, c.digest])
        else:
            shape.append([name, c.digest, [[e.digest] if e.withheld else e.digest for e in c.elements]])
    return shape


def _stated_only(manifest: Manifest) -> Manifest:
    """The manifest with all content withheld: what can be checked without the blinding salt."""
    components: dict[str, ManifestComponent] = {}
    for name, c in manifest.components.items():
        if c.elements is not None:
            elements = tuple(ManifestElement(e.digest, None, True) for e in c.elements)
            components[name] = ManifestComponent(name, c.digest, elements=elements)
        else:
            components[name] = ManifestComponent(name, c.digest, withheld=True)
    return Manifest(manifest.spec_version, manifest.identity, components, manifest.statement, manifest.signature)


def _canonical_hash(manifest: Manifest, body: str) -> bytes:
    try:
        data = canonicalize(manifest.to_json())
    except CanonicalizationError:
        data = body.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).digest()[:16]


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
    findings: list[Finding] = []
    notes: list[str] = []
    problems: tuple[str, ...] = ()
    # 4. Content, straight from canonical text; else parsed, by the fast path or by the core reader.
    fast = read_canonical(body)
    if fast is None:
        try:
            doc = orjson.loads(body)
            reject_repeated_members(body)
        except orjson.JSONDecodeError as exc:
            return Malformed(*at, f"manifest: not JSON ({exc})")
        except ManifestError as exc:
            return Malformed(*at, f"manifest: {exc}")
        fast = fast_check(doc)
    if fast is not None:
        statement, signature, shape = fast.statement, fast.signature, fast.shape
        telemetry = _shared_telemetry(fast.parts)
        identity = statement.identity
    else:
        try:
            manifest = Manifest.from_json(doc)
        except ManifestError as exc:
            return Malformed(*at, f"manifest: {exc}")
        statement, signature, identity = manifest.statement, manifest.signature, manifest.identity
        if statement.spec_version != SPEC_VERSION:
            return Malformed(
                *at, f"manifest statement: spec version {statement.spec_version!r} is not {SPEC_VERSION!r}"
            )
        checked, salt = manifest, b""
        if manifest.salt_id is not None:
            known = ctx.salts.get(manifest.salt_id)
            if known is None:
                checked = _stated_only(manifest)
                notes.append(f"content not recomputed: blinded with salt {manifest.salt_id}, which was not given")
            else:
                salt = known
        problems = checked.recompute(salt=salt).problems
        if problems or checked is not manifest:
            shape = _canonical_hash(manifest, body)
        else:
            shape = fingerprint(identity, statement, encode_signature(signature), _shape(manifest), manifest.salt_id)
        core_parts = (_manifest_part(manifest, n) for n in ("model", "operation", "parameters"))
        telemetry = _telemetry(*core_parts)
    # 3. Manifest signature.
    found = check_signature(ctx, statement, signature, 3, "manifest")
    if found is not None:
        findings.append(Finding(found.code, 3, found.message, where))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        findings.append(Finding(IDENTITY_MISMATCH, 4, f"{problems[0]}{more}", where))
    findings.extend(_record_findings(record, own_key, statement, identity, telemetry, where))
    stated_key = run_key(statement.trace_id, statement.span_id)
    key = own_key if own_key is not None else stated_key
    pairs, unknown, model = telemetry
    fields = statement_fields(statement)
    return ManifestSummary(
        key,
        source,
        record.position,
        record.index,
        identity,
        fields,
        binding_hash(fields, signature),
        tuple(findings),
        pairs,
        unknown,
        shape,
        model,
        key == stated_key,
        tuple(notes),
    )


def _record_findings(
    record: ManifestRecord,
    own_key: bytes | None,
    statement: BindingStatement,
    identity: str,
    telemetry: tuple[Telemetry, frozenset[str], str | None],
    where: str,
) -> list[Finding]:
    """Step 5 and 6 for the log record itself: its ids and attributes must agree with the manifest."""
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
    for attr, value in ((RUN_IDENTITY_ID, identity), (RUN_IDENTITY_KEY_ID, statement.key_id)):
        if attr in attrs and attrs[attr] != value:
            message = f"the manifest record has {attr}={attrs[attr]!r}, the manifest says {value!r}"
            out.append(Finding(BINDING_MISMATCH, 5, message, where))
    pairs, unknown, _ = telemetry
    own = tuple((a, as_tuple(attrs[a])) for a in (MODEL, PROVIDER) if a in attrs)
    for message in telemetry_mismatches(own, pairs, unknown, "the manifest record has"):
        out.append(Finding(TELEMETRY_MISMATCH, 6, message, where))
    return out
