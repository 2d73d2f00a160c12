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

__all__ = ["FastManifest", "fast_check", "fingerprint"]

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LIST = frozenset(LIST_COMPONENTS)
_TOP = frozenset({"spec_version", "identity", "components", "statement", "signature"})
_DIGIT_BYTES = frozenset(b"0123456789")
_ASTRAL_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
_ELEMENT_KEYS = frozenset({"digest", "value"})
_PREFIX: dict[tuple[str, str], bytes] = {}
_sha256 = hashlib.sha256
_dumps = orjson.dumps


def _prefix(kind: str, name: str) -> bytes:
    found = _PREFIX.get((kind, name))
    if found is None:
        found = _PREFIX[(kind, name)] = f"run-identity/v1/{kind}/{name}".encode() + b"\x00\x00\x00\x00\x00"
    return found


class _Unsure(Exception):
    """This path cannot vouch for the manifest; the core reader decides."""


@dataclass(frozen=True, slots=True)
class FastManifest:
    """A manifest whose every digest and identity recomputed from its content (no salt)."""

    doc: dict[str, Any]
    statement: BindingStatement
    signature: bytes
    shape: bytes


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


class _Digests:
    """Digests of values already vouched for, by their domain prefix and orjson bytes, to a bounded size.

    A system prompt or tool set repeats in every run of an application, and a conversation's messages in
    every later turn of it: their bytes are then screened and hashed once. orjson's bytes determine the
    JSON value they were made from (values parsed from JSON: strings, integers, shortest-repr floats,
    sorted keys), hence its canonical form, so equal bytes vouch for each other. The memory is freed
    whole once it holds ``limit`` bytes of keys, so it stays bounded whatever the input.
    """

    __slots__ = ("_by_prefix", "_held", "_limit")

    def __init__(self, limit: int) -> None:
        self._by_prefix: dict[bytes, dict[bytes, str]] = {}
        self._held = 0
        self._limit = limit

    def of(self, prefix: bytes, values: list[Any]) -> list[str]:
        """Each value's digest under ``prefix`` over its RFC 8785 bytes; _Unsure when those cannot be vouched
        for (an integer beyond 2^53, a lone surrogate, a float or key order orjson writes otherwise)."""
        try:
            outs = [_dumps(v, option=_OPTIONS) for v in values]
        except orjson.JSONEncodeError:
            raise _Unsure from None
        known = self._by_prefix.get(prefix)
        if known is None:
            known = self._by_prefix[prefix] = {}
        found = [known.get(out) for out in outs]
        if None not in found:
            return found  # type: ignore[return-value]  # no None left
        fresh = [(v, out) for v, out, d in zip(values, outs, found, strict=True) if d is None]
        if _may_differ(b"\n".join(out for _, out in fresh)):
            for v, out in fresh:
                if _may_differ(out) and not _exact(v, out):
                    raise _Unsure
        if self._held > self._limit:
            self._by_prefix.clear()
            self._held = 0
            known = self._by_prefix[prefix] = {}
        for _, out in fresh:
            known[out] = "sha256:" + _sha256(prefix + out).hexdigest()
            self._held += len(out)
        return [known[out] for out in outs]


_DIGESTS = _Digests(4 << 20)


def _stated(value: object) -> str:
    if type(value) is not str:
        raise _Unsure
    return value


def _elements(name: str, elements: list[Any]) -> tuple[list[str], list[Any]]:
    """The element digests, each recomputed when revealed, and the withheld marks for the fingerprint."""
    prefix = _prefix("element", name)
    try:
        if all(e.keys() == _ELEMENT_KEYS for e in elements):  # the common case: nothing withheld
            stated = [e["digest"] for e in elements]
            if _DIGESTS.of(prefix, [e["value"] for e in elements]) != stated:
                raise _Unsure
            return stated, list(stated)
    except AttributeError:  # an element is not an object
        raise _Unsure from None
    digests: list[str] = []
    marks: list[Any] = []
    for e in elements:
        if type(e) is not dict or len(e) != 2:
            raise _Unsure
        d = _stated(e.get("digest"))
        if "value" in e:
            if _DIGESTS.of(prefix, [e["value"]]) != [d]:
                raise _Unsure
            marks.append(d)
        elif e.get("withheld") is True and _DIGEST.fullmatch(d) is not None:
            marks.append([d])
        else:
            raise _Unsure
        digests.append(d)
    return digests, marks


def _component(name: str, data: Any, shape: list[Any]) -> str:
    """The component's stated digest once every digest in it recomputed; _Unsure otherwise."""
    if type(data) is not dict or len(data) != 2:
        raise _Unsure
    stated = _stated(data.get("digest"))
    if data.get("withheld") is True:
        if _DIGEST.fullmatch(stated) is None:
            raise _Unsure
        shape.append([name, stated, True])
    elif name in _LIST:
        elements = data.get("elements")
        if type(elements) is not list:
            raise _Unsure
        digests, marks = _elements(name, elements)
        if list_digest(name, digests) != stated:
            raise _Unsure
        shape.append([name, stated, marks])
    else:
        if "value" not in data:
            raise _Unsure
        if _DIGESTS.of(_prefix("component", name), [data["value"]]) != [stated]:
            raise _Unsure
        shape.append([name, stated])
    return stated


def fast_check(doc: object) -> FastManifest | None:
    """The manifest parsed from ``doc`` when it is well formed, unsalted and recomputes exactly; else None."""
    try:
        if type(doc) is not dict or doc.keys() != _TOP or doc["spec_version"] != SPEC_VERSION:
            raise _Unsure
        identity = _stated(doc["identity"])
        components = doc["components"]
        if type(components) is not dict or not components.keys() <= COMPONENT_NAMES:
            raise _Unsure
        shape: list[Any] = []
        digests = {name: _component(name, data, shape) for name, data in components.items()}
        if identity_digest(digests) != identity:
            raise _Unsure
        statement = BindingStatement.from_json(doc["statement"])
        signature = decode_signature(doc["signature"])
        if signature is None or statement.identity != identity or statement.spec_version != SPEC_VERSION:
            raise _Unsure
    except (_Unsure, ManifestError):
        return None
    return FastManifest(doc, statement, signature, fingerprint(identity, statement, doc["signature"], shape, None))


def fingerprint(
    identity: str, statement: BindingStatement, signature: str, shape: list[Any], salt_id: str | None
) -> bytes:
    """Equal for manifests with the same canonical bytes, once every digest was recomputed from content.

    The digests then stand for the content, so this small structure (identity, statement, signature,
    components with their digests and what is withheld) is as good as the canonical bytes, and cheaper.
    """
    doc = [identity, statement.to_json(), signature, sorted(shape), salt_id]
    return hashlib.sha256(orjson.dumps(doc)).digest()[:16]
