"""RFC 8785 (JSON Canonicalization Scheme) bytes for JSON-like Python values, fast and exact.

Accepted values are exactly (``type(x) is ...``, never subclasses) ``dict`` with ``str`` keys, ``list``,
``tuple`` (written as an array), ``str``, ``int`` within ±(2^53-1), finite ``float``, ``bool`` and ``None``.
Anything else raises :class:`CanonicalizationError` naming the JSON path of the bad value.

orjson does the writing. Its string escaping is exactly JCS's, and with ``_OPTIONS`` it rejects non-``str``
keys, lone surrogates, integers beyond 53 bits and most subclasses of ``str``/``int``/``dict``/``list``.
The rest is closed as follows:

- orjson also accepts ``uuid.UUID``, ``enum.Enum`` members (even ``IntEnum``), ``orjson.Fragment`` and
  tuple subclasses, and writes floats its own way (``1.0``, ``NaN`` as ``null``). A type walk (``_scan``)
  admits only the exact types above and notes which containers hold floats; those containers alone are
  copied with each float replaced by an ``orjson.Fragment`` of its ECMAScript form (``_es6``).
- orjson sorts keys by code point, JCS by UTF-16 code unit. The two orders differ only between a key with an
  astral character and one with U+E000..U+FFFF at the same index, so output without both a 4-byte UTF-8 lead
  (F0..F4) and an EE/EF lead byte is in JCS order; otherwise the careful pass below sorts by UTF-16.
- Errors: whenever the fast pass fails for any reason, a careful pass (``_careful``) repeats the work with
  every check made in Python, and either produces the bytes or raises the error with its path.

The fast pass never decides that a value is invalid; only the careful pass does, so the two cannot disagree.
"""

from __future__ import annotations

import gc
import json
import math
import re
from typing import Any, Final, TypeAlias, cast

import orjson

from run_identity.core._es6 import format_float
from run_identity.core.errors import CanonicalizationError

__all__ = ["MAX_DEPTH", "canonicalize", "canonicalize_elements", "json_path_join"]

MAX_DEPTH: Final = 254
"""Deepest nesting of objects and arrays accepted (orjson's limit); a deeper container is rejected."""

_Container: TypeAlias = "dict[Any, Any] | list[Any] | tuple[Any, ...]"
_SAFE_INT: Final = 2**53 - 1
_OPTIONS: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# Parameters such as temperature repeat from call to call. Equal floats (== : the same double, or 0.0 and
# -0.0) have the same ECMAScript form, so a float is a sound key; NaN never equals a key.
_FLOAT_CACHE_SIZE: Final = 1024
_FLOAT_FRAGMENTS: dict[float, orjson.Fragment] = {}
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_ASTRAL_LEAD: Final = re.compile(rb"[\xf0-\xf4]")
_PLAIN_TYPES: Final = frozenset({dict, list, tuple, str, int, bool, type(None)})
_is_plain_type_set = _PLAIN_TYPES.issuperset
_SCALAR_TYPES: Final = frozenset({str, int, bool, type(None)})
_FLAT_TYPES: Final = _SCALAR_TYPES | {float, list}
_dumps = orjson.dumps
# A value with shared sub-containers (or a cycle) can be far larger as a tree than in memory; past this many
# visited objects the level walk gives up and the recursive walk (which ends cycles at MAX_DEPTH) decides.
_PLAIN_WALK_LIMIT: Final = 1 << 20
_get_referents = gc.get_referents


def json_path_join(path: str, key: str | int) -> str:
    """The path of member ``key`` (or element ``key``, an index) of the value at ``path``.

    ``json_path_join("a", "b")`` is ``a.b``, ``json_path_join("a", 2)`` is ``a[2]``, a key that is not an
    identifier is quoted as JSON (``a["my key"]``); from the root path ``""``: ``b``, ``[2]``, ``["my key"]``.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_quote(key)}]"


def canonicalize(value: object, path: str = "") -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises :class:`CanonicalizationError` for anything that is not unambiguous JSON; its ``path`` is the JSON
    path of the bad value, prefixed by ``path`` (``canonicalize(v, "messages[3]")`` reports errors as
    ``messages[3].parts[0].content: lone surrogate U+D800``).
    """
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        out = _fast_flat(cast("dict[Any, Any]", value)) if kind is dict else None  # parameters, a model
        if out is None:
            out = _fast(cast("_Container", value))
        if out is not None:
            return out
    elif kind is str:  # operation: orjson rejects a lone surrogate, and the careful pass then names it
        try:
            return _dumps(value)
        except orjson.JSONEncodeError:
            pass
    return _careful(value, path)


def canonicalize_elements(
    items: list[Any] | tuple[Any, ...], path: str = "", *, plain: bool = False
) -> list[bytes]:
    """The canonical bytes of each element of ``items``, in order: ``[canonicalize(e) for e in items]``.

    One type walk covers all elements, which is what makes a list component cheap. ``plain=True`` says the
    caller has just checked, with nothing run in between, that every value under ``items`` is an exact
    ``dict``, ``list``, ``str``, ``int``, ``bool`` or ``None`` and every key one of a few ASCII names (the
    schema's common shapes: see ``_element_schema.text_messages_ok``), so the type walk and the UTF-16 key
    order check are skipped; orjson still refuses non-``str`` keys, lone surrogates and big integers, and
    the careful pass then names them. Raises CanonicalizationError naming ``path[i]...`` for the first
    element that cannot be canonicalized.
    """
    dumps = orjson.dumps
    try:
        if plain:
            return [dumps(item, None, _OPTIONS) for item in items]
        if _is_plain(items):
            ready: list[Any] | tuple[Any, ...] = items
        else:
            with_floats: set[int] = set()
            ready = [_ready(item, with_floats) for item in items] if _scan(items, 0, with_floats) else items
        outs = [dumps(item, None, _OPTIONS) for item in ready]
    except (_Fallback, orjson.JSONEncodeError):
        return [canonicalize(item, json_path_join(path, i)) for i, item in enumerate(items)]
    joined = b"".join(outs)  # one scan of all elements; the rare hit is then found element by element
    if not joined.isascii() and _utf16_order_may_differ(joined):
        for i, out in enumerate(outs):
            if not out.isascii() and _utf16_order_may_differ(out):
                outs[i] = _careful(items[i], json_path_join(path, i))
    return outs


def _ready(item: object, with_floats: set[int]) -> object:
    """An element made ready for orjson: containers holding floats copied with Fragments, floats as one."""
    if type(item) is float:
        return _float_fragment(item)
    if id(item) in with_floats:
        return _with_fragments(cast("_Container", item), with_floats)
    return item


def _fast(value: _Container) -> bytes | None:
    """The canonical bytes of ``value`` by the fast pass, or None when it cannot vouch for them."""
    try:
        if _is_plain(value):
            out = orjson.dumps(value, option=_OPTIONS)
        else:
            with_floats: set[int] = set()
            ready = _with_fragments(value, with_floats) if _scan(value, 1, with_floats) else value
            out = orjson.dumps(ready, option=_OPTIONS)
    except (_Fallback, orjson.JSONEncodeError):
        return None
    return out if out.isascii() or not _utf16_order_may_differ(out) else None


def _fast_flat(value: dict[Any, Any]) -> bytes | None:
    """The canonical bytes of a dict of scalars and lists of scalars (parameters, a model), or None.

    None (the general passes then decide) for any other value, a list holding anything but exact ``str``,
    ``int``, ``bool`` or ``None``, and NaN or an infinity. Floats are written as Fragments of their
    ECMAScript form.
    """
    kinds = set(map(type, value.values()))
    try:
        if _SCALAR_TYPES.issuperset(kinds):
            out = _dumps(value, None, _OPTIONS)
        elif _FLAT_TYPES.issuperset(kinds):
            ready = dict(value)
            for key, item in value.items():
                kind = type(item)
                if kind is float:
                    ready[key] = _FLOAT_FRAGMENTS.get(item) or _float_fragment(item)
                elif kind is list and not _SCALAR_TYPES.issuperset(map(type, item)):
                    return None
            out = _dumps(ready, None, _OPTIONS)
        else:
            return None
    except (_Fallback, orjson.JSONEncodeError):
        return None
    return out if out.isascii() or not _utf16_order_may_differ(out) else None


def _is_plain(root: _Container) -> bool:
    """Whether everything under ``root`` is an exact dict, list, tuple, str, int, bool or None (no float).

    The walk goes level by level in C: ``gc.get_referents`` yields the items of lists and tuples and the keys
    and values of dicts (atomic objects have none), and one set of their types is checked per level. False
    sends the value to the recursive walk, which also handles floats; True lets orjson write it as it is.
    """
    level: list[Any] = [root]
    seen = 0
    for _ in range(MAX_DEPTH + 1):
        children = _get_referents(*level)
        if not children:
            return True
        seen += len(children)
        if seen > _PLAIN_WALK_LIMIT or not _is_plain_type_set(map(type, children)):
            return False
        level = children
    return False


class _Fallback(Exception):
    """The fast pass cannot vouch for this value; the careful pass decides."""


def _scan(value: _Container, depth: int, with_floats: set[int]) -> bool:
    """Whether a float is under ``value``; adds the id of every container holding one to ``with_floats``.

    Raises _Fallback for a value of any type but the exact accepted ones, and for nesting beyond MAX_DEPTH
    (which also ends cycles). Keys, integer ranges and strings are left to orjson.
    """
    found = False
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict or kind is list or kind is tuple:
            if depth < MAX_DEPTH:
                if _scan(item, depth + 1, with_floats):
                    found = True
                continue
        elif kind is float:
            found = True
            continue
        raise _Fallback
    if found:
        with_floats.add(id(value))
    return found


def _with_fragments(value: _Container, with_floats: set[int]) -> object:
    """A copy of ``value`` with its floats (and those of the containers in ``with_floats``) as Fragments.

    Raises _Fallback for NaN and infinities.
    """
    if type(value) is dict:
        members = dict(value)
        for key, item in value.items():
            if type(item) is float:
                members[key] = _float_fragment(item)
            elif id(item) in with_floats:  # only live containers' ids are in the set
                members[key] = _with_fragments(item, with_floats)
        return members
    elements = list(value)
    for index, item in enumerate(value):
        if type(item) is float:
            elements[index] = _float_fragment(item)
        elif id(item) in with_floats:
            elements[index] = _with_fragments(item, with_floats)
    return elements


def _float_fragment(value: float) -> orjson.Fragment:
    """The ECMAScript form of a float, as a Fragment; raises _Fallback for NaN and infinities."""
    fragment = _FLOAT_FRAGMENTS.get(value)
    if fragment is None:
        if not math.isfinite(value):
            raise _Fallback
        if len(_FLOAT_FRAGMENTS) >= _FLOAT_CACHE_SIZE:
            _FLOAT_FRAGMENTS.clear()
        fragment = _FLOAT_FRAGMENTS[value] = orjson.Fragment(format_float(value).encode())
    return fragment


def _utf16_order_may_differ(out: bytes) -> bool:
    """Whether ``out`` holds both an astral character and one in U+E000..U+FFFF (single-byte memchr scans)."""
    return (b"\xee" in out or b"\xef" in out) and _ASTRAL_LEAD.search(out) is not None


def _careful(value: object, path: str) -> bytes:
    """Canonicalize with every check made in Python, or raise the first error found with its path."""
    try:
        return orjson.dumps(_checked(value, 1, set()), option=_OPTIONS)
    except _Reject as error:
        for key in reversed(error.trail):
            path = json_path_join(path, key)
        raise CanonicalizationError(path, error.reason) from None


class _Reject(Exception):
    """A value that cannot be canonicalized; ``trail`` collects the keys from it up to the root."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trail: list[str | int] = []


def _checked(value: object, depth: int, open_containers: set[int]) -> object:
    """``value`` checked and made ready for orjson (floats and UTF-16-ordered objects as Fragments).

    Raises _Reject. ``open_containers`` holds the ids of the containers being walked, to detect cycles.
    """
    if type(value) is str:
        _check_string(value)
        return value
    if type(value) is bool or value is None:
        return value
    if type(value) is int:
        if not -_SAFE_INT <= value <= _SAFE_INT:
            raise _Reject(f"integer {value} is outside \u00b1(2^53\u22121)")
        return value
    if type(value) is float:
        if math.isfinite(value):
            return orjson.Fragment(format_float(value).encode())
        name = "NaN" if math.isnan(value) else ("+Infinity" if value > 0 else "-Infinity")
        raise _Reject(f"{name} is not allowed")
    if type(value) is dict or type(value) is list or type(value) is tuple:
        if id(value) in open_containers:
            raise _Reject(f"cycle: {'object' if type(value) is dict else 'array'} contains itself")
        if depth > MAX_DEPTH:
            raise _Reject(f"nesting deeper than {MAX_DEPTH} levels")
        open_containers.add(id(value))
        if isinstance(value, dict):
            result = _checked_object(value, depth, open_containers)
        else:
            result = _checked_array(value, depth, open_containers)
        open_containers.discard(id(value))
        return result
    raise _Reject(_unsupported(value))


def _checked_object(value: dict[object, object], depth: int, open_containers: set[int]) -> object:
    """A checked copy of an object; a Fragment in UTF-16 key order when a key has an astral character."""
    for key in value:
        if type(key) is not str:
            raise _Reject(f"object key {key!r} of type {type(key).__qualname__} is not a string")
    members: dict[str, object] = {}
    key = ""
    try:
        for key, item in cast("dict[str, object]", value).items():
            _check_string(key, "in key")
            members[key] = _checked(item, depth + 1, open_containers)
    except _Reject as error:
        error.trail.append(key)
        raise
    if all(key.isascii() or max(key) <= "\uffff" for key in members):
        return members
    ordered = sorted(members, key=lambda key: key.encode("utf-16-be"))
    body = b",".join(
        orjson.dumps(key) + b":" + orjson.dumps(members[key], option=_OPTIONS) for key in ordered
    )
    return orjson.Fragment(b"{" + body + b"}")


def _checked_array(value: list[object] | tuple[object, ...], depth: int, open_containers: set[int]) -> object:
    """A checked copy of an array (as a list)."""
    result: list[object] = []
    try:
        for item in value:
            result.append(_checked(item, depth + 1, open_containers))
    except _Reject as error:
        error.trail.append(len(result))
        raise
    return result


def _check_string(value: str, where: str = "") -> None:
    """Reject a string holding a lone surrogate: it has no UTF-8 form."""
    if not value.isascii():
        found = _SURROGATE.search(value)
        if found is not None:
            raise _Reject(f"lone surrogate U+{ord(found[0]):04X}" + (f" {where}" if where else ""))


def _unsupported(value: object) -> str:
    """The reason given for a value whose type JSON lacks (or is a subclass of one JSON has)."""
    for base in (bool, int, float, str, dict, list, tuple):
        if isinstance(value, base):
            return f"unsupported value type {type(value).__qualname__} (a subclass of {base.__name__})"
    return f"unsupported value type {type(value).__qualname__}"


def _quote(key: str) -> str:
    """``key`` as a JSON string for a path, with any lone surrogate written as a ``\\uXXXX`` escape."""
    try:
        return orjson.dumps(key).decode()
    except orjson.JSONEncodeError:
        text = json.dumps(key, ensure_ascii=False)
        return _SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)
