"""Step 4 straight from a manifest's text, for manifests in the canonical form signers write.

A signer writes the manifest in its RFC 8785 form, in which every value is the very byte string its digest
covers. This reader follows that form member by member over the text itself: a component or element that
an earlier manifest of this process already proved (same digest, same text) is recognised by one string
comparison, a new one is decoded alone (:func:`json.JSONDecoder.raw_decode`, which also says where it ends)
and accepted only if orjson writes it back to exactly its text, in a form :mod:`._fast` vouches for as
RFC 8785. So the manifest as a whole is never parsed, and the common parts of a run (system prompt, tools,
parameters, earlier turns) are neither parsed nor hashed again.

Soundness: every value read is a complete JSON text, and everything between values is the exact
punctuation and keys of the canonical form, so the whole text has exactly the one parse it is read as
(JSON's grammar is unambiguous); the result is then the one :func:`._fast.fast_check` finds on the parsed
document. Anything else (another spelling, a salt, a digest that does not recompute) returns None and the
parsed paths decide.
"""

from __future__ import annotations

import json
from typing import Any

from run_identity.composition import COMPONENT_NAMES, LIST_COMPONENTS
from run_identity.digest import SPEC_VERSION, identity_digest, list_digest
from run_identity.errors import ManifestError
from run_identity.statement import decode_signature, statement_from_canonical
from run_identity.verify._fast import DIGEST, FastManifest, Part, Unsure, canonical_digest, fingerprint, prefix

__all__ = ["read_canonical"]

_LIST = frozenset(LIST_COMPONENTS)
_HEAD = '{"components":{'
_TAIL = '"identity":"'
_SIGNATURE = '","signature":"'
_STATEMENT = f'","spec_version":"{SPEC_VERSION}","statement":'
_DIGEST_AT = len('":{"digest":"')
_ELEMENT_VALUE_AT = len('{"digest":"') + 71 + len('","value":')
_scan = json.JSONDecoder().raw_decode


class _Seen:
    """Components (by name and digest) and elements (by list name, then digest) already proved, with their
    exact text.

    An element's text runs from its ``{`` to its ``}``; a component's from its quoted name to its ``}``.
    Equal text under the same digest is the same proof, so nothing in it is read again. Freed whole once it
    holds ``limit`` characters, so memory stays bounded whatever the input.
    """

    __slots__ = ("components", "elements", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.components: dict[tuple[str, str], tuple[str, list[Any], Part | None]] = {}
        self.elements: dict[str, dict[str, str]] = {}
        self.held = 0
        self.limit = limit

    def count(self, size: int) -> None:
        """Account for ``size`` more characters kept; free everything first when over the limit."""
        if self.held > self.limit:
            self.components.clear()
            self.elements.clear()
            self.held = 0
        self.held += size


_SEEN = _Seen(4 << 20)


def read_canonical(text: str) -> FastManifest | None:
    """The manifest in ``text`` when it is in canonical form, unsalted and recomputes exactly; else None."""
    try:
        return _read(text)
    except (Unsure, ManifestError, ValueError, IndexError, RecursionError):  # ValueError: JSONDecodeError...
        return None


def _read(text: str) -> FastManifest:
    """Follow the canonical form from the first byte to the last; raises Unsure (and others) at a surprise."""
    if not text.startswith(_HEAD):
        raise Unsure
    pos = len(_HEAD)
    shape: list[Any] = []
    digests: dict[str, str] = {}
    parts: dict[str, Part] = {}
    previous = ""
    seen = _SEEN
    while True:
        end = text.find('"', pos + 1)
        name = text[pos + 1 : end]
        if text[pos] != '"' or name <= previous or name not in COMPONENT_NAMES:
            raise Unsure  # JCS order, hence no repeated member either
        previous = name
        stated = text[end + _DIGEST_AT : end + _DIGEST_AT + 71]
        known = seen.components.get((name, stated))
        if known is not None and text.startswith(known[0], pos):
            pos += len(known[0])
            shape.append(known[1])
            if known[2] is not None:
                parts[name] = known[2]
        else:
            start = pos
            pos, item, part, settled = _component(text, end, name, stated)
            shape.append(item)
            if part is not None:
                parts[name] = part
            if settled:
                seen.components[(name, stated)] = (text[start:pos], item, part)
                seen.count(pos - start)
        digests[name] = stated
        if text[pos] == "}":
            break
        if text[pos] != ",":
            raise Unsure
        pos += 1
    if not text.startswith(_TAIL, pos + 2) or text[pos + 1] != ",":
        raise Unsure
    pos += 2 + len(_TAIL)
    identity = text[pos : pos + 71]
    if identity_digest(digests) != identity or not text.startswith(_SIGNATURE, pos + 71):
        raise Unsure
    pos += 71 + len(_SIGNATURE)
    end = text.find('"', pos)
    signature_text = text[pos:end]
    if not text.startswith(_STATEMENT, end) or text[-1] != "}":
        raise Unsure
    # The statement's exact canonical text (spec version 1, the one _STATEMENT names), fields checked.
    statement = statement_from_canonical(text[end + len(_STATEMENT) : -1])
    signature = decode_signature(signature_text)
    if statement is None or signature is None or statement.identity != identity:
        raise Unsure
    return FastManifest(statement, signature, fingerprint(identity, statement, signature_text, shape, None), parts)


def _component(text: str, end: int, name: str, stated: str) -> tuple[int, list[Any], Part | None, bool]:
    """Read the component whose name ends at ``end``: the position after it, its shape item, its value, and
    whether it is worth remembering whole (a list with a new element, such as a conversation that grows
    turn by turn, is remembered element by element only)."""
    if not text.startswith('":{"digest":"', end):
        raise Unsure
    pos = end + _DIGEST_AT + 71
    if text.startswith('","withheld":true}', pos):
        if DIGEST.fullmatch(stated) is None:
            raise Unsure
        return pos + len('","withheld":true}'), [name, stated, True], (True, None), True
    if name not in _LIST:
        if not text.startswith('","value":', pos):
            raise Unsure
        pos += len('","value":')
        value, after = _scan(text, pos)
        if canonical_digest(prefix("component", name), value, text[pos:after]) != stated or text[after] != "}":
            raise Unsure
        return after + 1, [name, stated], (False, value), True
    if not text.startswith('","elements":[', pos):
        raise Unsure
    pos += len('","elements":[')
    digests: list[str] = []
    marks: list[Any] = []
    fresh = False
    if text[pos] != "]":
        pos, fresh = _elements(text, pos, name, digests, marks)
    if not text.startswith("]}", pos) or list_digest(name, digests) != stated:
        raise Unsure
    return pos + 2, [name, stated, marks], None, not fresh


def _elements(text: str, pos: int, name: str, digests: list[str], marks: list[Any]) -> tuple[int, bool]:
    """Read the elements of list component ``name`` from ``pos``: the position of the closing ``]``, and
    whether an element was new."""
    seen = _SEEN.elements.get(name)
    if seen is None:
        seen = _SEEN.elements[name] = {}
    element = prefix("element", name)
    fresh = False
    while True:
        digest = text[pos + 11 : pos + 82]
        known = seen.get(digest)
        if known is not None and text.startswith(known, pos):
            pos += len(known)
            marks.append(digest)
        elif text.startswith('{"digest":"', pos) and text.startswith('","value":', pos + 82):
            value, after = _scan(text, pos + _ELEMENT_VALUE_AT)
            if canonical_digest(element, value, text[pos + _ELEMENT_VALUE_AT : after]) != digest:
                raise Unsure
            if text[after] != "}":
                raise Unsure
            seen[digest] = text[pos : after + 1]
            _SEEN.count(after + 1 - pos)
            pos = after + 1
            marks.append(digest)
            fresh = True
        elif text.startswith('{"digest":"', pos) and text.startswith('","withheld":true}', pos + 82):
            if DIGEST.fullmatch(digest) is None:
                raise Unsure
            pos += 82 + len('","withheld":true}')
            marks.append([digest])
        else:
            raise Unsure
        digests.append(digest)
        if text[pos] != ",":
            return pos, fresh
        pos += 1
