"""Step 4 without re-canonicalizing: digests recomputed from orjson's bytes where they provably equal JCS.

For a JSON value parsed from a manifest, orjson's sorted serialization *is* its RFC 8785 form unless the
value holds an integer beyond 2^53 (orjson's strict-integer mode refuses it), a lone surrogate (refused
too), keys whose UTF-16 order differs from code-point order (possible only with both an astral character
and one in U+E000..U+FFFF), or a float that orjson spells otherwise than ECMAScript (``1.0`` for ``1``).
Each element's bytes are screened for those cases with a few byte searches; a float-looking token sends
the element through an exact check of its floats. Anything unusual (any such case, any structural
surprise, any digest that does not recompute) returns None, and the core reader
(:meth:`run_identity.manifest.Manifest.recompute`) decides and explains. So this path can only agree
with the core one, never overrule it; ``tests/test_verify_fast.py`` checks that on many manifests.

Manifests whose text is already canonical, as signers write it, are read without parsing by :mod:`._text`,
which uses the screens here for the values it has not seen before; this parsed path serves the others
(re-encoded on the way: other key order, spacing or escapes).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from run_identity.canonical import canonicalize
from run_identity.composition import COMPONENT_NAMES, LIST_COMPONENTS
from run_identity.digest import SPEC_VERSION, identity_digest, list_digest
from run_identity.errors import CanonicalizationError, ManifestError
from run_identity.statement import BindingStatement, decode_signature

__all__ = ["DIGEST", "FastManifest", "Part", "Unsure", "canonical_digest", "fast_check", "fingerprint", "prefix"]

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LIST = frozenset(LIST_COMPONENTS)
_TOP = frozenset({"spec_version", "identity", "components", "statement", "signature"})
_DIGIT_BYTES = frozenset(b"0123456789")
_ASTRAL_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
_ELEMENT_KEYS = frozenset({"digest", "value"})
_PREFIX: dict[tuple[str, str], bytes] = {}
_sha256 = hashlib.sha256
_dumps = orjson.dumps


def prefix(kind: str, name: str) -> bytes:
    """The domain-separation prefix of an unsalted element or component digest."""
    found = _PREFIX.get((kind, name))
    if found is None:
        found = _PREFIX[(kind, name)] = f"run-identity/v1/{kind}/{name}".encode() + b"\x00\x00\x00\x00\x00"
    return found


class Unsure(Exception):
    """This path cannot vouch for the manifest; the core reader decides."""


#: (withheld, value) of a single-valued component, as the telemetry check (step 6) reads it.
Part = tuple[bool, Any]


@dataclass(frozen=True, slots=True)
class FastManifest:
    """A manifest whose every digest and identity recomputed from its content (no salt)."""

    statement: BindingStatement
    signature: bytes
    shape: bytes
    parts: dict[str, Part]


def _may_differ(out: bytes) -> bool:
    """Whether orjson's bytes may differ from RFC 8785: a float token ending in ``.0`` or with an exponent
    (orjson always signs it: ``1e-7``, ``1e+16``; the only spellings where the two differ), or keys whose
    UTF-16 order may differ from their code-point order. The same bytes inside strings only cost the
    exact check.

    Multi-byte searches cost a few nanoseconds a byte, single-byte ones (memchr) a few hundredths: each
    pattern is looked for only once a byte it needs is present.
    """
    if b"." in out and b".0" in out and (b".0," in out or b".0}" in out or b".0]" in out or out.endswith(b".0")):
        return True
    for sign in (b"-", b"+"):
        if sign in out:
            at = out.find(b"e" + sign)
            while at > 0:
                if out[at - 1] in _DIGIT_BYTES:
                    return True
                at = out.find(b"e" + sign, at + 2)
    if out.isascii() or (b"\xee" not in out and b"\xef" not in out):
        return False
    return any(lead in out for lead in _ASTRAL_LEADS)  # and one in U+E000..U+FFFF: order may differ


def _exact(value: Any, out: bytes) -> bool:
    try:
        return canonicalize(value) == out
    except CanonicalizationError:
        return False


def _serialize(values: list[Any]) -> list[bytes]:
    """Each value's RFC 8785 bytes, by orjson, or Unsure when that cannot be vouched for."""
    try:
        outs = [_dumps(v, option=_OPTIONS) for v in values]
    except orjson.JSONEncodeError:  # an integer beyond 2^53, a lone surrogate...
        raise Unsure from None
    if _may_differ(b"\n".join(outs)):
        for v, out in zip(values, outs, strict=True):
            if _may_differ(out) and not _exact(v, out):
                raise Unsure
    return outs


def _digests(domain: bytes, values: list[Any]) -> list[str]:
    return ["sha256:" + _sha256(domain + out).hexdigest() for out in _serialize(values)]


def canonical_digest(domain: bytes, value: Any, text: str) -> str:
    """The digest under the ``domain`` prefix of ``value`` (decoded from ``text``) when ``text`` is exactly its
    RFC 8785 form. Raises Unsure otherwise, and ValueError for text that cannot be UTF-8 (a lone surrogate).
    """
    (out,) = _serialize([value])
    if out != text.encode():
        raise Unsure
    return "sha256:" + _sha256(domain + out).hexdigest()


def _stated(value: object) -> str:
    if type(value) is not str:
        raise Unsure
    return value


def _elements(name: str, elements: list[Any]) -> tuple[list[str], list[Any]]:
    """The element digests, each recomputed when revealed, and the withheld marks for the fingerprint."""
    domain = prefix("element", name)
    try:
        if all(e.keys() == _ELEMENT_KEYS for e in elements):  # the common case: nothing withheld
            stated = [e["digest"] for e in elements]
            if _digests(domain, [e["value"] for e in elements]) != stated:
                raise Unsure
            return stated, list(stated)
    except AttributeError:  # an element is not an object
        raise Unsure from None
    digests: list[str] = []
    marks: list[Any] = []
    for e in elements:
        if type(e) is not dict or len(e) != 2:
            raise Unsure
        d = _stated(e.get("digest"))
        if "value" in e:
            if _digests(domain, [e["value"]]) != [d]:
                raise Unsure
            marks.append(d)
        elif e.get("withheld") is True and DIGEST.fullmatch(d) is not None:
            marks.append([d])
        else:
            raise Unsure
        digests.append(d)
    return digests, marks


def _component(name: str, data: Any, shape: list[Any]) -> str:
    """The component's stated digest once every digest in it recomputed; Unsure otherwise."""
    if type(data) is not dict or len(data) != 2:
        raise Unsure
    stated = _stated(data.get("digest"))
    if data.get("withheld") is True:
        if DIGEST.fullmatch(stated) is None:
            raise Unsure
        shape.append([name, stated, True])
    elif name in _LIST:
        elements = data.get("elements")
        if type(elements) is not list:
            raise Unsure
        digests, marks = _elements(name, elements)
        if list_digest(name, digests) != stated:
            raise Unsure
        shape.append([name, stated, marks])
    else:
        if "value" not in data:
            raise Unsure
        if _digests(prefix("component", name), [data["value"]]) != [stated]:
            raise Unsure
        shape.append([name, stated])
    return stated


def fast_check(doc: object) -> FastManifest | None:
    """The manifest parsed from ``doc`` when it is well formed, unsalted and recomputes exactly; else None."""
    try:
        if type(doc) is not dict or doc.keys() != _TOP or doc["spec_version"] != SPEC_VERSION:
            raise Unsure
        identity = _stated(doc["identity"])
        components = doc["components"]
        if type(components) is not dict or not components.keys() <= COMPONENT_NAMES:
            raise Unsure
        shape: list[Any] = []
        digests = {name: _component(name, data, shape) for name, data in components.items()}
        if identity_digest(digests) != identity:
            raise Unsure
        statement = BindingStatement.from_json(doc["statement"])
        signature = decode_signature(doc["signature"])
        if signature is None or statement.identity != identity or statement.spec_version != SPEC_VERSION:
            raise Unsure
    except (Unsure, ManifestError):
        return None
    parts = {n: (c.get("withheld") is True, c.get("value")) for n, c in components.items() if n not in _LIST}
    return FastManifest(statement, signature, fingerprint(identity, statement, doc["signature"], shape, None), parts)


def fingerprint(
    identity: str, statement: BindingStatement, signature: str, shape: list[Any], salt_id: str | None
) -> bytes:
    """Equal for manifests with the same canonical bytes, once every digest was recomputed from content.

    The digests then stand for the content, so this small structure (identity, statement, signature,
    components with their digests and what is withheld) is as good as the canonical bytes, and cheaper.
    """
    doc = [identity, statement.to_json(), signature, sorted(shape), salt_id]
    return hashlib.sha256(orjson.dumps(doc)).digest()[:16]
