"""What the join keeps of each record, the span's side of steps 1 and 2, and the shared checks.

A span is reduced to a :class:`SpanSummary` (its statement, signature and GenAI telemetry); its signature is
checked at the join, where an already verified manifest with the very same statement and signature spares
a second Ed25519 verification. Manifests are checked in :mod:`._manifests` and reduced to a
:class:`ManifestSummary`. :func:`check_signature` (steps 2 and 3) and :func:`telemetry_mismatches` (step 6)
serve both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from run_identity.core.attributes import (
    RUN_IDENTITY_ERROR,
    RUN_IDENTITY_ID,
    RUN_IDENTITY_SIGNATURE,
)
from run_identity.core.composition import PARAMETER_ATTRIBUTES
from run_identity.core.digest import SPEC_VERSION
from run_identity.core.errors import ManifestError
from run_identity.core.keys import Keyring
from run_identity.core.statement import BindingStatement, decode_signature
from run_identity.verify._codes import (
    BAD_SIGNATURE,
    SIGNATURE_UNCHECKED,
    UNKNOWN_KEY,
    Finding,
)
from run_identity.verify._content import Capture, ContentViews, captures_of
from run_identity.verify._records import SpanRecord

__all__ = [
    "MODEL_CALL_OPERATIONS",
    "CheckContext",
    "Malformed",
    "ManifestSummary",
    "SpanSummary",
    "binding_hash",
    "check_signature",
    "run_key",
    "share_signed",
    "statement_difference",
    "summarize_span",
    "telemetry_mismatches",
]

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"
#: Span attributes cross-checked against the manifest (docs/spec.md §12 step 6).
TELEMETRY_ATTRIBUTES = (OPERATION, PROVIDER, MODEL, *(a for a in PARAMETER_ATTRIBUTES.values() if a))
PARAMETER_ATTRS = {k: a for k, a in PARAMETER_ATTRIBUTES.items() if a}
#: The ``gen_ai.operation.name`` values of the GenAI semantic conventions that are a call to a model (docs/spec.md
#: §12 step 7); ``invoke_agent``, ``create_agent`` and ``execute_tool`` spans are not.
MODEL_CALL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_ABSENT = object()
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
    statement: BindingStatement | None
    signature: bytes | None
    telemetry: Telemetry
    problem: str | None = None
    error: str | None = None
    #: True for a span whose gen_ai.operation.name is a model call (MODEL_CALL_OPERATIONS).
    model_call: bool = False
    #: A run span's captured content, on the span and on its events (docs/spec.md §12 step 6).
    content: tuple[Capture, ...] = ()

    def same_key(self) -> tuple[Any, ...]:
        """Equal for two deliveries that say the same (a collector retry), typed: ``False`` is not ``0``."""
        content = tuple((c.carrier, c.attribute, c.raw) for c in self.content)
        return (
            self.identified,
            self.statement,
            self.signature,
            typed_key(self.telemetry),
            self.problem,
            self.error,
            content,
        )


@dataclass(slots=True)
class ManifestSummary:
    """A manifest after steps 3, 4 and its record-level part of 5 and 6; its content is not kept.

    ``content_checked`` says every revealed digest was recomputed from content (False when a salt was
    missing); ``withheld`` names what the manifest withholds; ``model`` is the declared model name, read
    only from content that was checked. ``fingerprint`` is equal for two copies that say the same thing,
    record attributes included; ``claim`` for two copies of one signed claim (withheld parts aside).
    """

    key: bytes
    source: int
    position: int
    index: int
    identity: str
    statement: BindingStatement
    signature: bytes
    binding: bytes
    findings: tuple[Finding, ...]
    telemetry: Telemetry
    unknown: frozenset[str]
    fingerprint: bytes
    claim: bytes
    model: str | None
    bound: bool
    withheld: tuple[str, ...] = ()
    content_checked: bool = True
    notes: tuple[str, ...] = ()
    #: The views of messages, instructions and tools that captured content is held against (step 6).
    content_views: ContentViews = ()

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


def binding_hash(statement: BindingStatement, signature: bytes | None) -> bytes:
    """16 bytes that differ when the statement or the signature differ.

    Equal hashes on a span and a manifest of the same run mean the very same signed bytes, so a manifest
    signature that verified also verifies the span's.
    """
    return hashlib.sha256(statement.canonical() + b"\x00" + (signature or b"")).digest()[:16]


def run_key(trace_id: str, span_id: str) -> bytes:
    """The join key of a run: its trace id and span id, as 24 raw bytes."""
    return bytes.fromhex(trace_id + span_id)


def check_signature(
    ctx: CheckContext, statement: BindingStatement, signature: bytes | None, step: int, carrier: str
) -> Finding | None:
    """Steps 2 and 3: the statement's key must be trusted and the signature must verify over its PAE."""
    if ctx.keyring is None:
        return Finding(SIGNATURE_UNCHECKED, step, f"the {carrier}'s signature was not checked (no keyring)")
    if signature is None:
        return Finding(BAD_SIGNATURE, step, f"the {carrier} carries no signature (standard base64 of 64 bytes)")
    if statement.key_id not in ctx.keyring:
        return Finding(UNKNOWN_KEY, step, f"the {carrier} is signed by key {statement.key_id}, not in the keyring")
    if not ctx.keyring.verify(statement.key_id, signature, statement.signing_input()):
        return Finding(BAD_SIGNATURE, step, f"the {carrier}'s signature does not verify over its binding statement")
    return None


class JsonObject:
    """An object (an OTLP ``kvlistValue`` or a JSON object) as a telemetry value: hashable, equal only to
    another object with the same members, shown like a dict."""

    __slots__ = ("items",)

    def __init__(self, items: tuple[tuple[str, Any], ...]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return type(other) is JsonObject and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return show_value(self)


#: Telemetry values nested deeper than this are not compared member by member (no GenAI attribute is).
MAX_TELEMETRY_DEPTH = 32


class TooDeep:
    """What stands for a value nested past :data:`MAX_TELEMETRY_DEPTH`: equal to nothing, itself included,
    so it always disagrees (and never recurses)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "…"


def as_tuple(value: Any, depth: int = 0) -> Any:
    """A telemetry value made hashable, recursively: lists as tuples, objects as :class:`JsonObject`, and
    anything nested too deeply as :class:`TooDeep`."""
    if type(value) is list or type(value) is tuple:
        if depth >= MAX_TELEMETRY_DEPTH:
            return TooDeep()
        return tuple([as_tuple(v, depth + 1) for v in value])
    if isinstance(value, Mapping):
        if depth >= MAX_TELEMETRY_DEPTH:
            return TooDeep()
        items = sorted(((str(k), as_tuple(v, depth + 1)) for k, v in value.items()), key=lambda kv: kv[0])
        return JsonObject(tuple(items))
    return value


def _types(value: Any) -> Any:
    if type(value) is tuple:
        flat = tuple(map(type, value))
        if tuple in flat or JsonObject in flat:
            return tuple([_types(v) for v in value])
        return flat
    if type(value) is JsonObject:
        return JsonObject, tuple(_types(v) for _, v in value.items)
    return type(value)


def typed_key(telemetry: Telemetry) -> tuple[Telemetry, Any]:
    """A key under which telemetry may share one object: equal values of the same types only (``True == 1``
    and ``1 == 1.0`` in Python, but step 6 tells booleans from numbers)."""
    return telemetry, tuple(_types(v) for _, v in telemetry)


_CONTAINERS = (list, tuple, dict)
_FROZEN = (tuple, JsonObject)


def _span_telemetry(attributes: Mapping[str, Any]) -> Telemetry:
    out = []
    for a in TELEMETRY_ATTRIBUTES:
        if a in attributes:
            value = attributes[a]
            out.append((a, as_tuple(value) if type(value) in _CONTAINERS else value))
    return tuple(out)


def summarize_span(record: SpanRecord, source: int) -> SpanSummary | None:
    """Step 1 and the preparation of step 2 for a span (one with run_identity.* or gen_ai.* attributes)."""
    attrs = record.attributes
    key = run_key(record.trace_id, record.span_id)
    telemetry = _span_telemetry(attrs)
    error = attrs.get(RUN_IDENTITY_ERROR)
    error_text = None if error is None else str(error)
    at = (key, source, record.position, record.index)
    if RUN_IDENTITY_ID not in attrs:
        # Records keep only spans with run_identity.* or gen_ai.* attributes: such a span is kept even without
        # an operation, so one stripped of its identity at a manifest's ids is not taken for a missing span.
        model_call = type(attrs.get(OPERATION)) is str and attrs[OPERATION] in MODEL_CALL_OPERATIONS
        return SpanSummary(*at, False, None, None, telemetry, None, error_text, model_call)
    signature = decode_signature(attrs.get(RUN_IDENTITY_SIGNATURE))
    content = captures_of("the span", attrs)
    for name, event_attrs in record.events:
        content += captures_of(f"the span's event {name[:80]!r}", event_attrs)
    if error is not None:
        both = "the span carries both run_identity.id and run_identity.error: which one holds is ambiguous"
        return SpanSummary(*at, True, None, signature, telemetry, both, content=content)
    statement, problem = _span_statement(attrs, record.trace_id, record.span_id)
    return SpanSummary(*at, True, statement, signature, telemetry, problem, content=content)


def _span_statement(
    attrs: Mapping[str, Any], trace_id: str, span_id: str
) -> tuple[BindingStatement | None, str | None]:
    """The statement rebuilt from a span's attributes alone, or why there is none."""
    try:
        statement = BindingStatement.from_span(attrs, trace_id, span_id)
    except ManifestError as exc:
        return None, f"the span's run_identity attributes do not form a binding statement: {exc}"
    except TypeError:
        return None, "the span's run_identity attributes do not form a binding statement"
    if statement.spec_version != SPEC_VERSION:
        return None, f"the span follows spec version {statement.spec_version!r}; this verifier knows {SPEC_VERSION!r}"
    return statement, None


def same_value(a: Any, b: Any) -> bool:
    """Telemetry equality: numbers by value (1 == 1.0), booleans only with booleans, lists element-wise."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if type(a) in (int, float) and type(b) in (int, float):
        return bool(a == b)
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is JsonObject and type(b) is JsonObject:
        return [k for k, _ in a.items] == [k for k, _ in b.items] and all(
            same_value(x, y) for (_, x), (_, y) in zip(a.items, b.items, strict=True)
        )
    return type(a) is type(b) and bool(a == b)


def show_value(value: Any, depth: int = 0) -> str:
    """A telemetry value as JSON-like text (tuples as lists), nested values past the fourth level as …."""
    if type(value) is tuple:
        inner = "…" if depth >= 4 and value else ", ".join(show_value(v, depth + 1) for v in value)
        return f"[{inner}]"
    if type(value) is JsonObject:
        if depth >= 4 and value.items:
            return "{…}"
        return "{" + ", ".join(f"{k!r}: {show_value(v, depth + 1)}" for k, v in value.items) + "}"
    return repr(value)


def telemetry_mismatches(span: Telemetry, manifest: Telemetry, unknown: frozenset[str], where: str) -> list[str]:
    """Step 6: every telemetry attribute of the span that contradicts the manifest, as a sentence each."""
    declared = dict(manifest)
    out = []
    for attr, value in span:
        if attr in unknown:
            continue
        found = declared.get(attr, _ABSENT)
        if found is _ABSENT:
            out.append(f"{where} {attr}={show_value(value)}, the manifest declares none")
        # Equal values of one type agree (containers excepted: == says (True,) == (1,)); the rest is weighed.
        elif (type(value) is not type(found) or type(value) in _FROZEN or value != found) and not same_value(
            value, found
        ):
            out.append(f"{where} {attr}={show_value(value)}, the manifest declares {show_value(found)}")
    return out


#: The statement members a span and a manifest may disagree on, as :func:`statement_difference` names them.
_STATEMENT_FIELDS = ("identity", "key_id", "declared_at", "spec_version", "salt_id")


def share_signed(span: SpanSummary, manifest: ManifestSummary) -> None:
    """The manifest's statement and signature objects in place of the span's equal ones (one copy in memory)."""
    if span.statement == manifest.statement:
        span.statement = manifest.statement
    if span.signature == manifest.signature:
        span.signature = manifest.signature


def statement_difference(span: BindingStatement, manifest: ManifestSummary) -> str:
    """What differs between the statement rebuilt from a span and the manifest's, member by member."""
    theirs = manifest.statement
    differ = [
        f"{name} {getattr(span, name)!r} on the span, {getattr(theirs, name)!r} in the manifest"
        for name in _STATEMENT_FIELDS
        if getattr(span, name) != getattr(theirs, name)
    ]
    return "span and manifest statements differ: " + "; ".join(differ)
