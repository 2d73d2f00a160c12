"""Steps 2 to 6 on single records: what a span and a manifest say, checked as far as each can be alone.

A span is reduced to a :class:`SpanSummary` (its statement, signature and GenAI telemetry; its signature is
checked later, at the join, where an identical already verified manifest statement spares a second Ed25519
verification). A manifest is fully checked here (signature, content, its record's own ids and attributes)
and reduced to a :class:`ManifestSummary`, so its content is dropped as soon as it has been read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from run_identity.attributes import (
    RUN_IDENTITY_ERROR,
    RUN_IDENTITY_ID,
    RUN_IDENTITY_KEY_ID,
    RUN_IDENTITY_SIGNATURE,
)
from run_identity.canonical import canonicalize
from run_identity.composition import PARAMETER_ATTRIBUTES
from run_identity.digest import SPEC_VERSION
from run_identity.errors import CanonicalizationError, ManifestError
from run_identity.keys import Keyring
from run_identity.manifest import Manifest, ManifestComponent, ManifestElement
from run_identity.statement import BindingStatement, decode_signature
from run_identity.verify._codes import (
    BAD_SIGNATURE,
    BINDING_MISMATCH,
    IDENTITY_MISMATCH,
    MALFORMED,
    TELEMETRY_MISMATCH,
    UNKNOWN_KEY,
    Finding,
)
from run_identity.verify._records import ManifestRecord, SpanRecord

__all__ = [
    "CheckContext",
    "Malformed",
    "ManifestSummary",
    "SpanSummary",
    "check_signature",
    "run_key",
    "statement_fields",
    "summarize_manifest",
    "summarize_span",
    "telemetry_mismatches",
]

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"
#: Span attributes cross-checked against the manifest (docs/spec.md §12 step 6).
TELEMETRY_ATTRIBUTES = (OPERATION, PROVIDER, MODEL, *(a for a in PARAMETER_ATTRIBUTES.values() if a))
_PARAMETER_ATTRS = {k: a for k, a in PARAMETER_ATTRIBUTES.items() if a}
_STATEMENT_FIELDS = ("identity", "key_id", "declared_at", "spec_version")

#: A statement without its ids (the ids are the run's key): identity, key id, declared_at, spec version.
Statement = tuple[str, str, str, str]
Telemetry = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What checks need: trusted keys (None: signatures are not checked) and known blinding salts by id."""

    keyring: Keyring | None
    salts: Mapping[str, bytes]


@dataclass(slots=True)
class SpanSummary:
    """What the join needs from a span. ``statement`` is None for a span without a usable identity."""

    key: bytes
    source: int
    position: int
    index: int
    identified: bool
    statement: Statement | None
    signature: bytes | None
    telemetry: Telemetry
    problem: str | None = None
    error: str | None = None

    def same_as(self, other: SpanSummary) -> bool:
        """Whether two deliveries of a span say the same (a collector retry) or contradict each other."""
        return (
            self.statement == other.statement
            and self.signature == other.signature
            and self.telemetry == other.telemetry
            and self.problem == other.problem
            and self.error == other.error
        )


@dataclass(slots=True)
class ManifestSummary:
    """A manifest after steps 3, 4 and its record-level part of 5 and 6; its content is not kept."""

    key: bytes
    source: int
    position: int
    index: int
    identity: str
    statement: Statement
    signature: bytes
    findings: tuple[Finding, ...]
    telemetry: Telemetry
    unknown: frozenset[str]
    fingerprint: bytes
    model: str | None
    bound: bool
    notes: tuple[str, ...] = ()

    @property
    def passes_signature_and_content(self) -> bool:
        """True when steps 3 and 4 found nothing (the test for "two different manifests both verify")."""
        return not any(f.step in (3, 4) for f in self.findings)


@dataclass(slots=True)
class Malformed:
    """A record that failed step 1; ``key`` is set when its trace and span ids were readable."""

    key: bytes | None
    source: int
    position: int
    index: int
    message: str


def run_key(trace_id: str, span_id: str) -> bytes:
    """The join key of a run: its trace id and span id, as 24 raw bytes."""
    return bytes.fromhex(trace_id + span_id)


def statement_fields(statement: BindingStatement) -> Statement:
    """The statement's members other than its ids."""
    return (statement.identity, statement.key_id, statement.declared_at, statement.spec_version)


def check_signature(
    ctx: CheckContext, statement: BindingStatement, signature: bytes | None, step: int, carrier: str
) -> Finding | None:
    """Steps 2 and 3: the statement's key must be trusted and the signature must verify over its PAE."""
    if ctx.keyring is None:
        return None
    if signature is None:
        return Finding(
            BAD_SIGNATURE, step, f"the {carrier} carries no signature (standard base64 of 64 bytes)"
        )
    if statement.key_id not in ctx.keyring:
        return Finding(
            UNKNOWN_KEY, step, f"the {carrier} is signed by key {statement.key_id}, not in the keyring"
        )
    if not ctx.keyring.verify(statement.key_id, signature, statement.signing_input()):
        return Finding(
            BAD_SIGNATURE, step, f"the {carrier}'s signature does not verify over its binding statement"
        )
    return None


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if type(value) is list or type(value) is tuple else value


def _span_telemetry(attributes: Mapping[str, Any]) -> Telemetry:
    return tuple((a, _as_tuple(attributes[a])) for a in TELEMETRY_ATTRIBUTES if a in attributes)


def summarize_span(record: SpanRecord, source: int) -> SpanSummary | None:
    """Step 1 and the preparation of step 2 for a span; None for a span that is no run and no GenAI call."""
    attrs = record.attributes
    key = run_key(record.trace_id, record.span_id)
    telemetry = _span_telemetry(attrs)
    error = attrs.get(RUN_IDENTITY_ERROR)
    error_text = None if error is None else str(error)
    if RUN_IDENTITY_ID not in attrs:
        if OPERATION not in attrs and error is None:
            return None
        return SpanSummary(
            key, source, record.position, record.index, False, None, None, telemetry, None, error_text
        )
    signature = decode_signature(attrs.get(RUN_IDENTITY_SIGNATURE))
    try:
        statement = BindingStatement.from_span(attrs, record.trace_id, record.span_id)
    except ManifestError as exc:
        problem = f"the span's run_identity attributes do not form a binding statement: {exc}"
        return SpanSummary(
            key, source, record.position, record.index, True, None, signature, telemetry, problem
        )
    if statement.spec_version != SPEC_VERSION:
        problem = (
            f"the span follows spec version {statement.spec_version!r}; this verifier knows {SPEC_VERSION!r}"
        )
        return SpanSummary(
            key, source, record.position, record.index, True, None, signature, telemetry, problem
        )
    fields = statement_fields(statement)
    return SpanSummary(
        key, source, record.position, record.index, True, fields, signature, telemetry, None, error_text
    )


def _manifest_telemetry(manifest: Manifest) -> tuple[Telemetry, frozenset[str], str | None]:
    pairs: list[tuple[str, Any]] = []
    unknown: set[str] = set()
    model_name = None
    model = manifest.components.get("model")
    if model is not None:
        if model.withheld or type(model.value) is not dict:
            unknown.update((MODEL, PROVIDER))
        else:
            for attr, member in ((MODEL, "name"), (PROVIDER, "provider")):
                if member in model.value:
                    pairs.append((attr, _as_tuple(model.value[member])))
            name = model.value.get("name")
            model_name = name if type(name) is str else None
    operation = manifest.components.get("operation")
    if operation is not None:
        if operation.withheld:
            unknown.add(OPERATION)
        else:
            pairs.append((OPERATION, operation.value))
    parameters = manifest.components.get("parameters")
    if parameters is not None:
        if parameters.withheld or type(parameters.value) is not dict:
            unknown.update(_PARAMETER_ATTRS.values())
        else:
            for name, value in parameters.value.items():
                param_attr = _PARAMETER_ATTRS.get(name)
                if param_attr is not None:
                    pairs.append((param_attr, _as_tuple(value)))
    return tuple(pairs), frozenset(unknown), model_name


def same_value(a: Any, b: Any) -> bool:
    """Telemetry equality: numbers by value (1 == 1.0), booleans only with booleans, lists element-wise."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if type(a) in (int, float) and type(b) in (int, float):
        return bool(a == b)
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _show(value: Any) -> str:
    return repr(list(value)) if type(value) is tuple else repr(value)


def telemetry_mismatches(
    span: Telemetry, manifest: Telemetry, unknown: frozenset[str], where: str
) -> list[str]:
    """Step 6: every telemetry attribute of the span that contradicts the manifest, as a sentence each."""
    declared = dict(manifest)
    out = []
    for attr, value in span:
        if attr in unknown:
            continue
        if attr not in declared:
            out.append(f"{where} {attr}={_show(value)}, the manifest declares none")
        elif not same_value(value, declared[attr]):
            out.append(f"{where} {attr}={_show(value)}, the manifest declares {_show(declared[attr])}")
    return out


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
        manifest.spec_version, manifest.identity, components, manifest.statement, manifest.signature
    )


def _fingerprint(manifest: Manifest, clean: bool, body: str) -> bytes:
    """Equal for byte-identical canonical manifests (retries, re-encodings), different otherwise.

    When every stated digest was recomputed from the content, the digests stand for the content, so the
    small structure below is as good as the canonical bytes and much cheaper.
    """
    if clean:
        shape = {
            name: [
                c.digest,
                c.withheld,
                None if c.elements is None else [[e.digest, e.withheld] for e in c.elements],
            ]
            for name, c in manifest.components.items()
        }
        doc = [
            manifest.identity,
            manifest.statement.to_json(),
            manifest.signature.hex(),
            manifest.salt_id,
            shape,
        ]
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).digest()[:16]
    try:
        data = canonicalize(manifest.to_json())
    except CanonicalizationError:
        data = body.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).digest()[:16]


def summarize_manifest(
    record: ManifestRecord, ctx: CheckContext, source: int, where: str
) -> ManifestSummary | Malformed:
    """Steps 1, 3, 4 and the record's own part of steps 5 and 6 for one manifest record."""
    own_key = run_key(record.trace_id, record.span_id) if record.trace_id and record.span_id else None
    # 1. Parse.
    body = record.body
    if type(body) is not str:
        return Malformed(
            own_key, source, record.position, record.index, "the manifest record's body is not a string"
        )
    try:
        manifest = Manifest.from_json(body)
    except ManifestError as exc:
        return Malformed(own_key, source, record.position, record.index, f"manifest: {exc}")
    statement = manifest.statement
    if statement.spec_version != SPEC_VERSION:
        message = f"manifest statement: spec version {statement.spec_version!r} is not {SPEC_VERSION!r}"
        return Malformed(own_key, source, record.position, record.index, message)
    findings: list[Finding] = []
    notes: list[str] = []
    # 3. Manifest signature.
    found = check_signature(ctx, statement, manifest.signature, 3, "manifest")
    if found is not None:
        findings.append(Finding(found.code, 3, found.message, where))
    # 4. Content.
    checked = manifest
    salt = b""
    if manifest.salt_id is not None:
        known = ctx.salts.get(manifest.salt_id)
        if known is None:
            checked = _stated_only(manifest)
            notes.append(f"content not recomputed: blinded with salt {manifest.salt_id}, which was not given")
        else:
            salt = known
    problems = checked.recompute(salt=salt).problems
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        findings.append(Finding(IDENTITY_MISMATCH, 4, f"{problems[0]}{more}", where))
    # 5. The record's own ids and attributes must name the statement's span and identity.
    if own_key is None:
        findings.append(
            Finding(BINDING_MISMATCH, 5, "the manifest record carries no trace id or span id", where)
        )
    elif (record.trace_id, record.span_id) != (statement.trace_id, statement.span_id):
        message = (
            f"the manifest record belongs to span {record.trace_id}/{record.span_id} but its statement names "
            f"{statement.trace_id}/{statement.span_id}"
        )
        findings.append(Finding(BINDING_MISMATCH, 5, message, where))
    for attr, value in ((RUN_IDENTITY_ID, manifest.identity), (RUN_IDENTITY_KEY_ID, statement.key_id)):
        if attr in record.attributes and record.attributes[attr] != value:
            message = (
                f"the manifest record has {attr}={record.attributes[attr]!r}, the manifest says {value!r}"
            )
            findings.append(Finding(BINDING_MISMATCH, 5, message, where))
    # 6. The record's own GenAI attributes must agree with the manifest.
    telemetry, unknown, model = _manifest_telemetry(manifest)
    own = tuple((a, _as_tuple(record.attributes[a])) for a in (MODEL, PROVIDER) if a in record.attributes)
    for message in telemetry_mismatches(own, telemetry, unknown, "the manifest record has"):
        findings.append(Finding(TELEMETRY_MISMATCH, 6, message, where))
    clean = not problems and checked is manifest
    stated_key = run_key(statement.trace_id, statement.span_id)
    key = own_key if own_key is not None else stated_key
    return ManifestSummary(
        key,
        source,
        record.position,
        record.index,
        manifest.identity,
        statement_fields(statement),
        manifest.signature,
        tuple(findings),
        telemetry,
        unknown,
        _fingerprint(manifest, clean, body),
        model,
        key == stated_key,
        tuple(notes),
    )


def malformed_finding(message: str, where: str) -> Finding:
    """A step 1 finding."""
    return Finding(MALFORMED, 1, message, where)
