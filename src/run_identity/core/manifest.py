"""The manifest: a run's full composition with its digests, binding statement and signature.

The JSON form (docs/spec.md, "Manifest") is the body of the ``run_identity.manifest`` log record; it is
written in canonical form (JCS) but readers accept any JSON encoding of it. Elements of list components
and whole single-valued components may be *withheld*: replaced by their digest, which the identity still
verifies against.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import orjson

from run_identity.core.canonical import MAX_DEPTH, canonicalize, json_path_join
from run_identity.core.composition import COMPONENT_NAMES, LIST_COMPONENTS
from run_identity.core.digest import (
    SPEC_VERSION,
    Identity,
    component_digest,
    element_digest,
    identity_digest,
    list_digest,
)
from run_identity.core.errors import CanonicalizationError, ManifestError
from run_identity.core.statement import BindingStatement, decode_signature, encode_signature
from run_identity.core.strict_json import StrictJsonError, loads_strict

__all__ = [
    "Manifest",
    "ManifestComponent",
    "ManifestElement",
    "RecomputedIdentity",
    "build_manifest_json",
    "reject_repeated_members",
]

_LIST = frozenset(LIST_COMPONENTS)
_Fragment = orjson.Fragment
_SORT = orjson.OPT_SORT_KEYS


@dataclass(frozen=True)
class ManifestElement:
    """One element of a list component: its value, or only its digest when withheld."""

    digest: str
    value: Any = None
    withheld: bool = False


@dataclass(frozen=True)
class ManifestComponent:
    """One component: a value (single-valued), elements (list), or only its digest when withheld."""

    name: str
    digest: str
    value: Any = None
    elements: tuple[ManifestElement, ...] | None = None
    withheld: bool = False


@dataclass(frozen=True)
class RecomputedIdentity:
    """What the manifest's content recomputes to, and every place where it disagrees with itself."""

    identity: str
    component_digests: Mapping[str, str]
    problems: tuple[str, ...]


def build_manifest_json(identity: Identity, statement: BindingStatement, signature: bytes) -> bytes:
    """The canonical JSON manifest, reusing the canonical bytes computed for the identity (no re-encoding)."""
    components: dict[str, Any] = {}
    for name, cd in identity.components.items():
        blob = identity.canonical[name]
        if cd.element_digests is not None:
            blobs = cast("tuple[bytes, ...]", blob)
            elements = [
                {"digest": d, "value": _Fragment(b)} for d, b in zip(cd.element_digests, blobs, strict=True)
            ]
            components[name] = {"digest": cd.digest, "elements": elements}
        else:
            components[name] = {"digest": cd.digest, "value": _Fragment(cast("bytes", blob))}
    doc: dict[str, Any] = {
        "components": components,
        "identity": identity.id,
        "signature": encode_signature(signature),
        "spec_version": SPEC_VERSION,
        "statement": statement.to_json(),
    }
    if identity.salt_id is not None:
        doc["salt_id"] = identity.salt_id
    return orjson.dumps(doc, option=_SORT)


def _expect(cond: bool, path: str, reason: str) -> None:
    if not cond:
        raise ManifestError(path, reason)


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _parse_digest(value: object, path: str) -> str:
    _expect(type(value) is str and _DIGEST.fullmatch(value) is not None, path, "malformed digest")
    assert isinstance(value, str)
    return value


_SAFE_INT = 2**53 - 1


def _as_doubles(value: Any, path: str, depth: int = 1) -> Any:
    """``value`` with integers beyond ±(2^53-1) read as the doubles they denote (copied only where changed).

    JSON numbers are doubles (RFC 8785 section 3.2.2.3), and JCS writes large integral doubles such as 1e18 or
    2^53 in integer notation; a reader that kept them as integers would refuse to canonicalize its own output.
    Raises ManifestError for a number beyond the range of a double.
    """
    if depth > MAX_DEPTH:  # too deep to canonicalize; recompute() reports it
        return value
    kind = type(value)
    if kind is int:
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        try:
            return float(value)
        except OverflowError:
            raise ManifestError(path, "number is outside the range of an IEEE 754 double") from None
    if kind is dict:
        out = value
        for key, item in value.items():
            new = _as_doubles(item, json_path_join(path, key) if type(key) is str else path, depth + 1)
            if new is not item:
                if out is value:
                    out = dict(value)
                out[key] = new
        return out
    if kind is list:
        changed = [_as_doubles(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        return value if all(a is b for a, b in zip(changed, value, strict=True)) else changed
    return value


def _doubles(value: Any, path: str) -> Any:
    """:func:`_as_doubles`, skipped when orjson's 53-bit check shows there is no large integer to convert."""
    try:
        orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError:
        return _as_doubles(value, path)
    return value


def _parse_element(data: object, path: str) -> ManifestElement:
    _expect(type(data) is dict, path, "expected an object")
    assert isinstance(data, dict)
    digest = _parse_digest(data.get("digest"), f"{path}.digest")
    if data.get("withheld") is True:
        _expect(set(data) == {"digest", "withheld"}, path, "a withheld element has only 'digest' and 'withheld'")
        return ManifestElement(digest, None, True)
    _expect(set(data) == {"digest", "value"}, path, "an element has exactly 'digest' and 'value'")
    return ManifestElement(digest, _doubles(data["value"], f"{path}.value"))


def _parse_component(name: str, data: object, path: str) -> ManifestComponent:
    _expect(name in COMPONENT_NAMES, path, "unknown component")
    _expect(type(data) is dict, path, "expected an object")
    assert isinstance(data, dict)
    digest = _parse_digest(data.get("digest"), f"{path}.digest")
    if data.get("withheld") is True:
        _expect(set(data) == {"digest", "withheld"}, path, "a withheld component has only 'digest' and 'withheld'")
        return ManifestComponent(name, digest, withheld=True)
    if name in _LIST:
        _expect(set(data) == {"digest", "elements"}, path, "a list component has exactly 'digest' and 'elements'")
        raw = data["elements"]
        _expect(type(raw) is list, f"{path}.elements", "expected an array")
        elements = tuple(_parse_element(e, f"{path}.elements[{i}]") for i, e in enumerate(raw))
        return ManifestComponent(name, digest, elements=elements)
    _expect(set(data) == {"digest", "value"}, path, "a component has exactly 'digest' and 'value'")
    return ManifestComponent(name, digest, value=_doubles(data["value"], f"{path}.value"))


def _manifest_error(exc: StrictJsonError) -> ManifestError:
    if exc.line is None:
        return ManifestError(exc.path, exc.reason)
    return ManifestError(exc.path, f"{exc.reason} (line {exc.line} column {exc.column})")


def reject_repeated_members(text: str | bytes | bytearray | memoryview) -> None:
    """Raise ManifestError when the JSON ``text`` has no single reading (docs/spec.md §14), at any depth.

    That is an object naming a member twice (JSON parsers disagree on which of two equal names holds; the
    error names the object's path and the name), and whatever else :func:`~run_identity.core.strict_json.loads_strict`
    refuses: nesting past its depth limit, a lone surrogate escape, a number outside the range of a double.
    """
    try:
        loads_strict(text)
    except StrictJsonError as exc:
        raise _manifest_error(exc) from None


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. Construct with :meth:`from_json`; it checks structure, not signatures."""

    spec_version: str
    identity: str
    components: Mapping[str, ManifestComponent]
    statement: BindingStatement
    signature: bytes
    salt_id: str | None = None

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any], *, any_signature: bool = False) -> Manifest:
        """Parse the JSON form (bytes, text or an already parsed object). Raises ManifestError.

        ``any_signature``: a missing signature, or one that is not the canonical base64 of 64 bytes, is read
        as empty bytes instead of refused (a verifier reports it as ``bad_signature``, spec §12 step 3, as it
        does on the span).
        """
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            try:
                doc = loads_strict(data)
            except StrictJsonError as exc:
                raise _manifest_error(exc) from None
        else:
            doc = data
        _expect(isinstance(doc, Mapping), "", "a manifest is a JSON object")
        known = {"spec_version", "identity", "components", "statement", "signature", "salt_id"}
        for key in doc:
            _expect(key in known, str(key), "unknown manifest field")
        supported = f"unsupported (this reader knows {SPEC_VERSION!r})"
        _expect(doc.get("spec_version") == SPEC_VERSION, "spec_version", supported)
        identity = _parse_digest(doc.get("identity"), "identity")
        comps = doc.get("components")
        _expect(type(comps) is dict, "components", "expected an object")
        components = {name: _parse_component(name, v, f"components.{name}") for name, v in comps.items()}
        statement = BindingStatement.from_json(doc.get("statement"))
        _expect(
            statement.spec_version == SPEC_VERSION,
            "statement.spec_version",
            f"unsupported (this reader knows {SPEC_VERSION!r})",
        )
        signature = decode_signature(doc.get("signature"))
        if signature is None and any_signature:
            signature = b""
        _expect(signature is not None, "signature", "expected standard base64 of a 64-byte Ed25519 signature")
        assert signature is not None
        salt = _parse_digest(doc["salt_id"], "salt_id") if "salt_id" in doc else None
        return cls(SPEC_VERSION, identity, components, statement, signature, salt)

    def to_json_bytes(self) -> bytes:
        """The canonical JSON form."""
        return canonicalize(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The JSON form as Python objects."""
        comps: dict[str, Any] = {}
        for name, c in self.components.items():
            if c.withheld:
                comps[name] = {"digest": c.digest, "withheld": True}
            elif c.elements is not None:
                comps[name] = {
                    "digest": c.digest,
                    "elements": [
                        {"digest": e.digest, "withheld": True} if e.withheld else {"digest": e.digest, "value": e.value}
                        for e in c.elements
                    ],
                }
            else:
                comps[name] = {"digest": c.digest, "value": c.value}
        doc: dict[str, Any] = {
            "spec_version": self.spec_version,
            "identity": self.identity,
            "components": comps,
            "statement": self.statement.to_json(),
            "signature": encode_signature(self.signature),
        }
        if self.salt_id is not None:
            doc["salt_id"] = self.salt_id
        return doc

    def recompute(self, *, salt: bytes = b"") -> RecomputedIdentity:
        """Recompute every digest from the content (withheld parts by their stated digests).

        Never raises for content problems: each mismatch or non-canonicalizable value is a problem string
        naming the path, and the recomputed identity then differs from the declared one.
        """
        problems: list[str] = []
        digests: dict[str, str] = {}
        for name, c in self.components.items():
            path = f"components.{name}"
            if c.withheld:
                digests[name] = c.digest
                continue
            if c.elements is not None:
                element_digests = []
                for i, e in enumerate(c.elements):
                    if e.withheld:
                        element_digests.append(e.digest)
                        continue
                    try:
                        d = element_digest(name, canonicalize(e.value, f"{path}.elements[{i}].value"), salt)
                    except CanonicalizationError as exc:
                        problems.append(str(exc))
                        d = "sha256:" + "0" * 64
                    if d != e.digest:
                        problems.append(f"{path}.elements[{i}]: content digest {d} differs from stated {e.digest}")
                    element_digests.append(d)
                digest = list_digest(name, element_digests)
            else:
                try:
                    digest = component_digest(name, canonicalize(c.value, f"{path}.value"), salt)
                except CanonicalizationError as exc:
                    problems.append(str(exc))
                    digest = "sha256:" + "0" * 64
            if digest != c.digest:
                problems.append(f"{path}: content digest {digest} differs from stated {c.digest}")
            digests[name] = digest
        identity = identity_digest(digests)
        if identity != self.identity:
            problems.append(f"identity: recomputed {identity} differs from stated {self.identity}")
        if identity != self.statement.identity:
            problems.append(f"statement.identity: recomputed {identity} differs from signed {self.statement.identity}")
        if self.salt_id != self.statement.salt_id:
            signed = self.statement.salt_id
            problems.append(f"salt_id: the manifest names {self.salt_id}, the signed statement {signed}")
        return RecomputedIdentity(identity, digests, tuple(problems))

    def withhold(self, component: str, index: int | None = None) -> Manifest:
        """A copy with one list element (or, with ``index=None``, a whole component) replaced by its digest."""
        c = self.components.get(component)
        if c is None:
            raise ManifestError(f"components.{component}", "no such component in this manifest")
        if index is None:
            new = ManifestComponent(component, c.digest, withheld=True)
        else:
            if c.elements is None or not 0 <= index < len(c.elements):
                raise ManifestError(f"components.{component}.elements[{index}]", "no such element")
            elements = list(c.elements)
            elements[index] = ManifestElement(elements[index].digest, None, True)
            new = replace(c, elements=tuple(elements))
        return replace(self, components={**self.components, component: new})

    @property
    def withholds_content(self) -> bool:
        """True when any component or element is withheld (the run cannot be replayed from it)."""
        return any(
            c.withheld or (c.elements is not None and any(e.withheld for e in c.elements))
            for c in self.components.values()
        )

    def composition_json(self) -> dict[str, Any]:
        """The composition as declared; raises ManifestError when content is withheld."""
        if self.withholds_content:
            raise ManifestError("components", "content is withheld; the composition cannot be rebuilt")
        out: dict[str, Any] = {}
        for name, c in self.components.items():
            out[name] = [e.value for e in c.elements] if c.elements is not None else c.value
        return out
