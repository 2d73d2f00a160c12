"""Digests and the identity (docs/spec.md, "Digests" and "Identity").

Every digest is SHA-256 over a domain-separated input and written ``sha256:<64 lowercase hex>``:

* element of a list component:  ``"run-identity/v1/element/<name>" 0x00 u32be(len(salt)) salt JCS(element)``
* single-valued component:      ``"run-identity/v1/component/<name>" 0x00 u32be(len(salt)) salt JCS(value)``
* list component:               ``"run-identity/v1/list/<name>" 0x00 JCS([element digests...])``
* identity:                     ``"run-identity/v1/identity" 0x00 JCS({name: component digest, ...})``

The salt is empty by default, so default identities agree everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from run_identity.core._element_schema import text_messages_ok, text_parts_ok
from run_identity.core.canonical import canonicalize, canonicalize_elements
from run_identity.core.composition import (
    LIST_COMPONENTS,
    SINGLE_COMPONENTS,
    Composition,
    PreparedComponent,
    as_json,
    validate_component,
)
from run_identity.core.errors import CompositionError

__all__ = [
    "SPEC_VERSION",
    "ComponentDigest",
    "Identity",
    "component_digest",
    "compute_identity",
    "element_digest",
    "identity_digest",
    "identity_of_new",
    "list_digest",
    "prepare",
    "salt_id",
]

SPEC_VERSION = "1"
_LIST = frozenset(LIST_COMPONENTS)
_sha256 = hashlib.sha256
_new_tuple = tuple.__new__  # a ComponentDigest without the Python-level __new__ of NamedTuple
_new_object = object.__new__


def _hex(data: bytes) -> str:
    return "sha256:" + _sha256(data).hexdigest()


def _salted_prefix(kind: str, name: str, salt: bytes) -> bytes:
    return f"run-identity/v1/{kind}/{name}".encode() + b"\x00" + len(salt).to_bytes(4, "big") + salt


# The common case (no salt) uses prefixes computed once.
_PREFIXES: dict[tuple[str, str], bytes] = {}


def _prefix(kind: str, name: str, salt: bytes | None) -> bytes:
    """The domain-separation prefix; ``salt=None`` for digests without a salt field (list digests)."""
    if salt:
        return _salted_prefix(kind, name, salt)
    key = (kind, name)
    found = _PREFIXES.get(key)
    if found is None:
        found = f"run-identity/v1/{kind}/{name}".encode() + b"\x00" if salt is None else _salted_prefix(kind, name, b"")
        found = _PREFIXES[key] = found
    return found


# The hot path's unsalted prefixes, looked up by component name.
_ELEMENT_PREFIXES = {name: _salted_prefix("element", name, b"") for name in LIST_COMPONENTS}
_LIST_PREFIXES = {name: f"run-identity/v1/list/{name}".encode() + b"\x00" for name in LIST_COMPONENTS}
_COMPONENT_PREFIXES = {name: _salted_prefix("component", name, b"") for name in SINGLE_COMPONENTS}


def element_digest(name: str, canonical: bytes, salt: bytes = b"") -> str:
    """Digest of one element (its JCS bytes) of the list component ``name``."""
    return _hex(_prefix("element", name, salt) + canonical)


def component_digest(name: str, canonical: bytes, salt: bytes = b"") -> str:
    """Digest of the single-valued component ``name`` from its JCS bytes."""
    return _hex(_prefix("component", name, salt) + canonical)


def list_digest(name: str, element_digests: Sequence[str]) -> str:
    """Digest of the list component ``name`` over its element digests, in order."""
    body = ('["' + '","'.join(element_digests) + '"]') if element_digests else "[]"
    return _hex(_prefix("list", name, None) + body.encode("ascii"))


def identity_digest(component_digests: Mapping[str, str]) -> str:
    """The identity over the present components' digests."""
    body = ",".join([f'"{name}":"{component_digests[name]}"' for name in sorted(component_digests)])
    return _hex(b"run-identity/v1/identity\x00{" + body.encode("ascii") + b"}")


def salt_id(salt: bytes) -> str | None:
    """A public name for a blinding salt (None for the default empty salt); never reveals the salt."""
    return _hex(b"run-identity/v1/salt-id\x00" + salt) if salt else None


class ComponentDigest(NamedTuple):
    """The digest of one component; list components also carry their element digests, in order."""

    name: str
    digest: str
    element_digests: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Identity:
    """The identity of a composition and the component digests it was computed from.

    ``canonical`` keeps each component's JCS bytes (a tuple of element bytes for list components) so the
    manifest is built without canonicalizing twice.
    """

    id: str
    components: Mapping[str, ComponentDigest]
    canonical: Mapping[str, bytes | tuple[bytes, ...]]
    salt_id: str | None = None


# List components whose common shape proves, in one pass, that every value under the list is plain JSON.
_PLAIN_SHAPES: dict[str, Callable[[list[Any]], bool]] = {"instructions": text_parts_ok, "messages": text_messages_ok}


def _digest_list(
    name: str, value: list[Any] | tuple[Any, ...], salt: bytes, shaped: bool = False
) -> tuple[str, tuple[str, ...], tuple[bytes, ...]]:
    prefix = _salted_prefix("element", name, salt) if salt else _ELEMENT_PREFIXES[name]
    shape = _PLAIN_SHAPES.get(name)
    # The shape check runs on the value as it is now, right before it is written (a composition holds the
    # caller's objects, which may have changed since they were validated), unless ``shaped``: the caller
    # proved it just now, with nothing run in between.
    plain = shaped or (shape is not None and type(value) is list and shape(value))
    blobs = tuple(canonicalize_elements(value, name, plain=plain))
    sha256 = _sha256
    digests = tuple(["sha256:" + sha256(prefix + b).hexdigest() for b in blobs])
    body = ('["' + '","'.join(digests) + '"]') if digests else "[]"
    return "sha256:" + sha256(_LIST_PREFIXES[name] + body.encode("ascii")).hexdigest(), digests, blobs


def prepare(name: str, value: Any, *, salt: bytes = b"") -> PreparedComponent:
    """Validate and digest a slow-changing component once (typically ``instructions`` or ``tools``).

    Raises CompositionError or CanonicalizationError naming the field path.
    """
    checked = validate_component(name, as_json(value), name)
    sid = salt_id(salt)
    if name in _LIST:
        digest, digests, blobs = _digest_list(name, checked, salt)
        return PreparedComponent(name, checked, digest, None, blobs, digests, sid)
    blob = canonicalize(checked, name)
    return PreparedComponent(name, checked, component_digest(name, blob, salt), blob, None, None, sid)


def compute_identity(composition: Composition, *, salt: bytes = b"") -> Identity:
    """Canonicalize every component, digest it, and compute the identity.

    Raises CanonicalizationError (a value is not unambiguous JSON) or CompositionError (a prepared
    component was made with another salt), each naming the field path.
    """
    return _identity(composition, salt, frozenset())


def identity_of_new(declared: Composition | Mapping[str, Any], *, salt: bytes = b"") -> Identity:
    """:func:`compute_identity` of ``declared``, building the Composition first when it is a mapping.

    A composition built here is digested at once, so the shapes its constructor just proved
    (:attr:`Composition.shaped`) are not proved a second time. Raises what the two steps raise.
    """
    if isinstance(declared, Composition):
        return _identity(declared, salt, frozenset())
    composition = Composition.from_dict(declared)
    return _identity(composition, salt, composition.shaped)


def _identity(composition: Composition, salt: bytes, shaped: frozenset[str]) -> Identity:
    sid = salt_id(salt) if salt else None
    digests: dict[str, ComponentDigest] = {}
    canonical: dict[str, bytes | tuple[bytes, ...]] = {}
    members: list[str] = []
    for name, value in composition.components.items():
        if type(value) is PreparedComponent:
            if value.salt_id != sid:
                raise CompositionError(name, "prepared with another blinding salt")
            digest = value.digest
            digests[name] = _new_tuple(ComponentDigest, (name, digest, value.element_digests))
            canonical[name] = value.element_bytes if value.element_bytes is not None else value.canonical  # type: ignore[assignment]
        elif name in _LIST:
            digest, element_digests, blobs = _digest_list(name, value, salt, name in shaped)
            digests[name] = _new_tuple(ComponentDigest, (name, digest, element_digests))
            canonical[name] = blobs
        else:
            blob = canonicalize(value, name)
            prefix = _salted_prefix("component", name, salt) if salt else _COMPONENT_PREFIXES[name]
            digest = "sha256:" + _sha256(prefix + blob).hexdigest()
            digests[name] = _new_tuple(ComponentDigest, (name, digest, None))
            canonical[name] = blob
        members.append(f'"{name}":"{digest}"')
    members.sort()  # by name: no component name is a prefix of another, and all are ASCII (JCS order)
    identity = "sha256:" + _sha256(f"run-identity/v1/identity\x00{{{','.join(members)}}}".encode("ascii")).hexdigest()
    result = _new_object(Identity)
    # What the frozen dataclass's __init__ does, one object.__setattr__ per field, in one step.
    result.__dict__.update(id=identity, components=digests, canonical=canonical, salt_id=sid)
    return result
