"""Reading JSON text that has exactly one meaning, or refusing it: manifests, receipts, keyrings, CLI input.

JSON (RFC 8259) leaves some texts without a single reading: an object that names a member twice (parsers
keep the first, the last, or fail), a string holding a lone surrogate escape (not Unicode text), a number
outside the range of an IEEE 754 double. I-JSON (RFC 7493) forbids them, and so does :func:`loads_strict`,
which every reader of this package uses, so a document is rejected, never read one way here and another
way elsewhere.

Nesting is capped at :data:`MAX_JSON_DEPTH` levels, counted before anything is parsed and without
recursion, so a repeated member hidden deeper than a parser can look is refused with the rest of the text
rather than passed unchecked. No document of this package comes near the cap: a canonical value is at most
254 levels deep (``canonical.MAX_DEPTH``), and a manifest or receipt adds a handful around it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any, Final

from run_identity.core.canonical import json_path_join

__all__ = ["MAX_JSON_DEPTH", "RepeatedMemberError", "StrictJsonError", "loads_strict"]

MAX_JSON_DEPTH: Final = 512
"""Deepest nesting of objects and arrays :func:`loads_strict` reads; deeper text is refused."""

_ONLY_BRACKETS: Final = {c: None for c in range(128) if chr(c) not in "[]{}"}
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_BRACKET_OR_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_DELTA: Final = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE: Final = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


class StrictJsonError(ValueError):
    """JSON text that is not JSON, or that has no single reading.

    ``path`` is the JSON path of the offending value (``components.model``; empty for the root or when
    the text cannot be parsed), ``reason`` what is wrong, ``line`` and ``column`` (1-based) where in the
    text, when known.
    """

    def __init__(self, path: str, reason: str, *, line: int | None = None, column: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.column = column
        where = f" (line {line} column {column})" if line is not None else ""
        super().__init__(f"{path}: {reason}{where}" if path else f"{reason}{where}")


class RepeatedMemberError(StrictJsonError):
    """An object names a member twice: which value holds depends on the parser.

    ``path`` is the object's path, ``member`` the repeated name.
    """

    def __init__(self, path: str, member: str) -> None:
        self.member = member
        super().__init__(path, f"member {member[:80]!r} appears more than once (which one holds is ambiguous)")


def _at(text: str, position: int) -> dict[str, int]:
    line = text.count("\n", 0, position) + 1
    return {"line": line, "column": position - (text.rfind("\n", 0, position) + 1) + 1}


def _skeleton(text: str) -> str:
    """The brackets of ``text`` outside strings, in order (escaped backslashes and quotes dropped first)."""
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    skeleton = "".join(text.split('"')[::2]).translate(_ONLY_BRACKETS)
    return skeleton if skeleton.isascii() else _NOT_BRACKET.sub("", skeleton)  # not JSON, but counted


def _check_depth(text: str) -> None:
    """Refuse text nested deeper than MAX_JSON_DEPTH, counting brackets outside strings (no recursion).

    For text a parser reads up to some point, strings end where the parser's end up to that point, so the
    count is exact where the parser would go.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    if max(itertools.accumulate(map(_DELTA.__getitem__, _skeleton(text))), default=0) <= MAX_JSON_DEPTH:
        return
    depth = 0
    for match in _BRACKET_OR_STRING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                reason = f"nested too deeply (more than {MAX_JSON_DEPTH} levels)"
                raise StrictJsonError("", reason, **_at(text, match.start()))
        elif token in "]}":
            depth -= 1
    raise StrictJsonError("", f"nested too deeply (more than {MAX_JSON_DEPTH} levels)")


def _deeper_than_allowed(value: Any) -> bool:
    """Whether a parsed value nests containers more than MAX_JSON_DEPTH deep (the root is level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a surrogate code point (UTF-8 cannot encode one; the encoder says so in C)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _Repeated(Exception):
    pass


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, repeats kept (the second reading, which finds the repeat's path)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Repeated
    return out


class _BadToken(Exception):
    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        self.reason = reason


def _constant(token: str) -> Any:
    raise _BadToken(token, f"{token} is not JSON (RFC 8785 has no NaN or Infinity)")


def _float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise _BadToken(token, f"number {token[:40]} is outside the range of an IEEE 754 double")
    return value


_SAFE_INT: Final = 2**53 - 1


def _int_or_double(token: str) -> int | float:
    if len(token) < 16:  # within ±(2^53-1)
        return int(token)
    value = int(token) if len(token) < 4300 else None
    if value is not None and -_SAFE_INT <= value <= _SAFE_INT:
        return value
    return _float(token)


def _int(token: str) -> int:
    try:
        return int(token)
    except ValueError:  # past Python's limit on digits: far outside the range of a double anyway
        digits = len(token.lstrip("-"))
        raise _BadToken(token, f"an integer of {digits} digits is outside ±(2^53-1)") from None


def _children(value: Any, path: str) -> list[tuple[Any, str]]:
    if type(value) is dict or type(value) is _Pairs:
        items = value.items() if type(value) is dict else value
        return [(item, json_path_join(path, key)) for key, item in items]
    if type(value) is list:
        return [(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return []


def _first_repeat(root: Any) -> tuple[str, str]:
    """The path of the first object (in document order) that names a member twice, and that name."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if type(value) is _Pairs:
            seen: set[str] = set()
            for key, _ in value:
                if key in seen:
                    return path, key
                seen.add(key)
        stack.extend(reversed(_children(value, path)))
    raise AssertionError("unreachable: the first reading found a repeat")  # pragma: no cover


def _first_lone_surrogate(root: Any) -> tuple[str, str] | None:
    """The path of the first string or member name holding a lone surrogate, and the surrogate."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if type(value) is str:
            found = _LONE_SURROGATE.search(value)
            if found is not None:
                return path, found.group()
            continue
        if type(value) is dict:
            for key in value:
                found = _LONE_SURROGATE.search(key)
                if found is not None:
                    return json_path_join(path, key), found.group()
        stack.extend(reversed(_children(value, path)))
    return None


def loads_strict(text: str | bytes | bytearray | memoryview, *, doubles: bool = False) -> Any:
    """Parse JSON text (bytes are UTF-8) that has a single reading; raise StrictJsonError otherwise.

    Refused, at any depth: an object naming a member twice (:class:`RepeatedMemberError`, with the object's
    path and the name), a string or name holding a lone surrogate, NaN and Infinity, a number outside the
    range of an IEEE 754 double, nesting deeper than :data:`MAX_JSON_DEPTH`, and anything that is not JSON.
    Integers are read exactly (``int``), other numbers as ``float``; objects are ``dict``, arrays ``list``.
    With ``doubles``, an integer beyond ±(2^53-1) is read as the double it denotes, as RFC 8785 reads
    numbers (and as docs/spec.md §3 asks of readers of signed documents, where JCS writes 1e20 as
    ``100000000000000000000``).
    """
    decoded = isinstance(text, (bytes, bytearray, memoryview))  # UTF-8 holds no surrogates
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = str(text, "utf-8")  # any buffer, decoded without a copy first
        except UnicodeDecodeError as exc:
            raise StrictJsonError("", f"not UTF-8 (byte {exc.start})") from None
    integers = _int_or_double if doubles else _int
    hooks: dict[str, Any] = {"parse_constant": _constant, "parse_float": _float, "parse_int": integers}
    try:
        value = json.loads(text, object_pairs_hook=_object, **hooks)
    except json.JSONDecodeError as exc:
        _check_depth(text)  # a text too deep is refused for that, wherever the parser stopped
        raise StrictJsonError("", f"not valid JSON ({exc.msg})", line=exc.lineno, column=exc.colno) from None
    except _BadToken as exc:
        _check_depth(text)
        raise StrictJsonError("", exc.reason, **_at(text, max(text.find(exc.token), 0))) from None
    except RecursionError:  # deeper than the parser's stack: refused, never passed unchecked
        _check_depth(text)
        raise StrictJsonError("", "nested too deeply for the stack left to this reader") from None
    except _Repeated:
        _check_depth(text)
        raise RepeatedMemberError(*_first_repeat(json.loads(text, object_pairs_hook=_Pairs, **hooks))) from None
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than_allowed(value):
        _check_depth(text)  # raises, naming where
    if ("\\u" in text and _SURROGATE_ESCAPE.search(text) is not None) or (not decoded and _has_surrogate(text)):
        lone = _first_lone_surrogate(value)
        if lone is not None:
            path, surrogate = lone
            raise StrictJsonError(path, f"lone surrogate U+{ord(surrogate):04X}")
    return value
