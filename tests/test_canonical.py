"""RFC 8785 canonical bytes: golden vectors, reference implementation, rejections, fast/careful agreement."""

from __future__ import annotations

import collections
import decimal
import enum
import json
import struct
import uuid
from pathlib import Path

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from run_identity.core.canonical import MAX_DEPTH, _careful, _fast, canonicalize, json_path_join
from run_identity.core.errors import CanonicalizationError

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "jcs"
MISSING = f"JCS test vectors not found at {VECTORS} (the shared/ folder beside the repository clone)"


def _vector_names() -> list[object]:
    """The JCS vector names, or one skipped parameter saying where the vectors were looked for."""
    if not (VECTORS / "input").is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING))]
    names: list[object] = [path.stem for path in sorted((VECTORS / "input").glob("*.json"))]
    return names


def _reject(value: object, path: str = "") -> CanonicalizationError:
    """The error canonicalize raises for ``value``."""
    with pytest.raises(CanonicalizationError) as caught:
        canonicalize(value, path)
    return caught.value


def _both_paths(value: object) -> bytes:
    """The bytes of the fast pass, asserted to exist and to equal the careful pass's."""
    fast = _fast(value)  # type: ignore[arg-type]
    assert fast is not None
    assert fast == _careful(value, "")
    return fast


def _typical_composition() -> dict[str, object]:
    """A composition shaped like a real LLM call: long strings, messages, tool schemas, float parameters."""
    text = 'Answer briefly. Quote "sources" and use C:\\paths.\n\tStep 1.5: café ☕ 漢字. ' * 50
    schema = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for; may be null."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
            "mode": {"type": ["string", "null"], "enum": ["fast", "exact", None]},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    return {
        "model": {"provider": "openai", "name": "gpt-4.1-mini"},
        "instructions": [{"type": "text", "content": text}],
        "messages": [
            {
                "role": "user",
                "parts": [{"type": "text", "content": f"message {i}: 1e5, 2.0, null"}],
                "name": None,
            }
            for i in range(12)
        ],
        "tools": [{"type": "function", "name": f"tool_{i}", "parameters": schema} for i in range(8)],
        "parameters": {"temperature": 0.7, "top_p": 1.0, "seed": 42, "penalty": -0.0, "stop": ("\n\n",)},
    }


# Golden vectors


@pytest.mark.parametrize("name", _vector_names())
def test_jcs_vector(name: str) -> None:
    """Each JCS reference input canonicalizes to exactly the bytes of its output file (and its hex form)."""
    value = json.loads((VECTORS / "input" / f"{name}.json").read_text(encoding="utf-8"))
    expected = (VECTORS / "output" / f"{name}.json").read_bytes()
    assert canonicalize(value) == expected
    assert expected == bytes.fromhex((VECTORS / "outhex" / f"{name}.txt").read_text())


def test_es6_numbers_100k() -> None:
    """Every double of the 100k file is written as ECMAScript does, alone (careful) and in an array (fast)."""
    path = VECTORS / "es6-numbers-100k.txt"
    if not path.is_file():
        pytest.skip(MISSING)
    lines = path.read_text().split()
    floats = [struct.unpack(">d", int(line.split(",")[0], 16).to_bytes(8, "big"))[0] for line in lines]
    expected = [line.split(",")[1].encode() for line in lines]
    assert len(lines) == 100_000
    pairs = zip(lines, floats, expected, strict=True)
    wrong = [(line, out) for line, x, want in pairs if (out := canonicalize(x)) != want]
    assert wrong[:5] == []
    assert canonicalize(floats) == b"[" + b",".join(expected) + b"]"


# The reference implementation on random documents

_SPECIAL_CHARS = (
    '"\\/\n\x00\x1f\x7f\u2028\ud7ff\ue000\uf8ff\ufb33\ufeff\uffff\U00010000\U0001f600\U0001f602\U0010ffff'
)
_KEY_CHARS = st.sampled_from(["a", "b", "A", "_", "1", "é", *_SPECIAL_CHARS]) | st.characters(
    exclude_categories=["Cs"]
)
# Keys over a tiny alphabet often share a prefix and then differ between an astral character and one in
# U+E000..U+FFFF: the case where UTF-16 order and code-point order disagree.
_ORDER_CHARS = st.sampled_from(["a", "\ue000", "\uffff", "\U00010000", "\U0001f600"])
_KEYS = st.text(_ORDER_CHARS, min_size=1, max_size=3) | st.text(_KEY_CHARS, max_size=4)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-7, 1e-6, 1e20, 1e21, 1.7976931348623157e308, 1.0]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | _FLOATS
    | st.text(_KEY_CHARS, max_size=12)
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(_KEYS, children, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS)
def test_matches_reference_implementation(value: object) -> None:
    """On random JSON documents the bytes equal rfc8785.dumps, and the fast pass agrees when it answers."""
    out = canonicalize(value)
    assert out == rfc8785.dumps(value)  # type: ignore[arg-type]
    assert out == _careful(value, "")
    if type(value) in (dict, list, tuple):
        assert _fast(value) in (None, out)  # type: ignore[arg-type]


# Output rules


def test_numbers_in_ecmascript_form() -> None:
    """Floats take the ES6 Number-to-String form; integers are plain decimal."""
    values = [-0.0, 1.0, 1e21, 1e20, 1e-7, 0.000001, 1.5e300, 0.1, -2.5, 9007199254740991, -9007199254740991]
    expected = b"[0,1,1e+21,100000000000000000000,1e-7,0.000001,1.5e+300,0.1,-2.5,"
    expected += b"9007199254740991,-9007199254740991]"
    assert _both_paths(values) == expected


def test_string_escaping() -> None:
    """Only quote, backslash and C0 controls are escaped (short forms where they exist); the rest is raw."""
    value = ["".join(map(chr, range(0x20))) + '"\\/\x7f\u2028\ud7ff\ue000\U0001f600']
    expected = (
        rb'["\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f'
        rb"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"
        rb"\"\\/"
    ) + '\x7f\u2028\ud7ff\ue000\U0001f600"]'.encode()
    assert canonicalize(value) == _careful(value, "") == expected


def test_keys_sorted_by_utf16_code_units() -> None:
    """An astral key sorts before a U+E000..U+FFFF key (UTF-16 order), unlike code-point order."""
    value = {"\ue000": 1, "\U0001f600": 2, "z": 3, "\uffff": 4, "a\U00010000": 5, "a\uff00": 6}
    expected = '{"a\U00010000":5,"a\uff00":6,"z":3,"\U0001f600":2,"\ue000":1,"\uffff":4}'.encode()
    assert canonicalize(value) == expected == rfc8785.dumps(value)
    assert _fast(value) is None


def test_utf16_order_nested_and_in_arrays() -> None:
    """UTF-16 key order also holds for objects nested in arrays and objects."""
    value: dict[str, object] = {
        "x": [{"\uffff": None, "\U0001f602": [1.5]}],
        "y": {"b": {"\ue001": 0, "\U00020000": 1}},
    }
    assert canonicalize(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


def test_tuples_are_arrays() -> None:
    """A tuple is written as an array, like a list."""
    assert _both_paths({"a": (1, (2.0, "x")), "b": [()]}) == b'{"a":[1,[2,"x"]],"b":[[]]}'


def test_scalars_at_the_root() -> None:
    """A scalar root is canonicalized like any member."""
    outputs = [canonicalize(v) for v in ("é\n", 3, -0.0, True, None)]
    assert outputs == [b'"\xc3\xa9\\n"', b"3", b"0", b"true", b"null"]


def test_shared_references_are_not_cycles() -> None:
    """The same list referenced twice (no cycle) is written twice."""
    shared = [1.25, {"k": "v"}]
    assert canonicalize({"a": shared, "b": shared}) == b'{"a":[1.25,{"k":"v"}],"b":[1.25,{"k":"v"}]}'


def test_deepest_nesting_accepted() -> None:
    """Nesting MAX_DEPTH containers deep is accepted, floats included."""
    value: object = [0.5]
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert canonicalize(value) == b"[" * MAX_DEPTH + b"0.5" + b"]" * MAX_DEPTH


# Fast and careful passes agree


def test_typical_composition_takes_fast_path() -> None:
    """A realistic composition (non-ASCII, escapes, floats, nulls, tuples) is answered by the fast pass."""
    value = _typical_composition()
    assert _both_paths(value) == rfc8785.dumps(value)  # type: ignore[arg-type]
    assert canonicalize(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        {"t": 1.0, "u": [0.5, -0.0, 1e300, 5e-324], "v": {"w": [{"x": 2.5}]}},
        [{"a": "\U0001f600", "b": "é€\u2028"}],
        {"\U0001f600": "only astral keys", "k": [None, True, False]},
        {"msg": 'json in a string: {"temperature":0.7,"seed":null}', "n": 1},
        [[], {}, [[]], {"": ""}],
    ],
)
def test_fast_and_careful_agree(value: object) -> None:
    """Both passes give the same bytes on floats, nulls, non-ASCII, JSON-like strings and empty containers."""
    assert _both_paths(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        {"a": float("nan")},
        [float("inf")],
        {"a": 2**53},
        {1: "x"},
        ["\ud800"],
        {"a": b"bytes"},
        [uuid.UUID(int=1)],
        {"a": orjson.Fragment(b"1")},
        {"\U0001f600": 1, "\ue000": 2},
    ],
)
def test_fast_pass_declines(value: object) -> None:
    """The fast pass returns None (never wrong bytes) for values orjson would write differently or accept."""
    assert _fast(value) is None  # type: ignore[arg-type]


# Rejections


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (float("nan"), "NaN is not allowed"),
        (float("inf"), "+Infinity is not allowed"),
        (float("-inf"), "-Infinity is not allowed"),
    ],
)
def test_rejects_non_finite_floats(number: float, reason: str) -> None:
    """NaN and the infinities are rejected at their path."""
    error = _reject({"a": {"b": [1, number]}})
    assert (error.path, error.reason) == ("a.b[1]", reason)
    assert str(error) == f"a.b[1]: {reason}"


@pytest.mark.parametrize("number", [2**53, -(2**53), 10**30])
def test_rejects_integers_beyond_53_bits(number: int) -> None:
    """Integers outside +/-(2^53-1) are rejected; the bounds themselves are accepted."""
    error = _reject({"parameters": {"seed": number}})
    assert (error.path, error.reason) == (
        "parameters.seed",
        f"integer {number} is outside \u00b1(2^53\u22121)",
    )
    assert canonicalize([2**53 - 1, -(2**53 - 1)]) == b"[9007199254740991,-9007199254740991]"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (1, "object key 1 of type int is not a string"),
        (None, "object key None of type NoneType is not a string"),
        (("a", 2), "object key ('a', 2) of type tuple is not a string"),
        (b"k", "object key b'k' of type bytes is not a string"),
    ],
)
def test_rejects_non_string_keys(key: object, reason: str) -> None:
    """A non-str key is reported at the path of its object, naming the key and its type."""
    error = _reject({"tools": [{"parameters": {"ok": 1, key: 2}}]})
    assert (error.path, error.reason) == ("tools[0].parameters", reason)


def test_rejects_lone_surrogate_with_path_prefix() -> None:
    """A lone surrogate in a string is reported below the caller's path prefix, in upper-case hex."""
    error = _reject({"parts": [{"type": "text", "content": "ok \ud800 no"}]}, "messages[3]")
    assert str(error) == "messages[3].parts[0].content: lone surrogate U+D800"


def test_rejects_lone_surrogate_in_key() -> None:
    """A lone surrogate in a key is reported at that member, the key quoted with the surrogate escaped."""
    error = _reject({"a": {"b\udc0f": 1}})
    assert (error.path, error.reason) == ('a["b\\udc0f"]', "lone surrogate U+DC0F in key")


def test_quoted_key_in_path() -> None:
    """A key that is not an identifier appears JSON-quoted in the path."""
    error = _reject({"tools": [{"parameters": {"properties": {"my key": {"default": float("nan")}}}}]})
    assert error.path == 'tools[0].parameters.properties["my key"].default'


class _Color(enum.Enum):
    RED = "red"


class _Size(enum.IntEnum):
    SMALL = 1


class _Tag(str):
    pass


_Point = collections.namedtuple("_Point", "x y")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"x", "unsupported value type bytes"),
        ({1, 2}, "unsupported value type set"),
        (decimal.Decimal("1.5"), "unsupported value type Decimal"),
        (uuid.UUID(int=7), "unsupported value type UUID"),
        (_Color.RED, "unsupported value type _Color"),
        (_Size.SMALL, "unsupported value type _Size (a subclass of int)"),
        (_Tag("x"), "unsupported value type _Tag (a subclass of str)"),
        (collections.OrderedDict(a=1), "unsupported value type OrderedDict (a subclass of dict)"),
        (_Point(1, 2), "unsupported value type _Point (a subclass of tuple)"),
        (orjson.Fragment(b"1"), "unsupported value type Fragment"),
        (object(), "unsupported value type object"),
    ],
)
def test_rejects_unsupported_types(value: object, reason: str) -> None:
    """Values of other types, including subclasses of JSON types, are rejected with the type's name."""
    error = _reject({"extensions": {"x": [value]}})
    assert (error.path, error.reason) == ("extensions.x[0]", reason)


def test_rejects_unsupported_root() -> None:
    """An unsupported root is reported at the caller's path, or with the reason alone at the root."""
    assert str(_reject(b"x", "parameters")) == "parameters: unsupported value type bytes"
    assert str(_reject(float("nan"))) == "NaN is not allowed"


def test_rejects_cycles() -> None:
    """An object or array that contains itself is rejected at the inner occurrence instead of recursing."""
    outer: dict[str, object] = {"x": []}
    outer["x"].append(outer)  # type: ignore[attr-defined]
    error = _reject(outer, "root")
    assert (error.path, error.reason) == ("root.x[0]", "cycle: object contains itself")
    loop: list[object] = [1]
    loop.append(loop)
    error = _reject({"a": loop})
    assert (error.path, error.reason) == ("a[1]", "cycle: array contains itself")


def test_rejects_too_deep_nesting() -> None:
    """A container nested deeper than MAX_DEPTH is rejected at its path."""
    value: object = []
    for _ in range(MAX_DEPTH):
        value = [value]
    error = _reject(value)
    assert (error.path, error.reason) == ("[0]" * MAX_DEPTH, f"nesting deeper than {MAX_DEPTH} levels")


# Paths


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ("", "messages", "messages"),
        ("", 3, "[3]"),
        ("", "my key", '["my key"]'),
        ("messages[3]", "parts", "messages[3].parts"),
        ("messages", 0, "messages[0]"),
        ("a", "_x9", "a._x9"),
        ("a", "9x", 'a["9x"]'),
        ("a", "", 'a[""]'),
        ("a", 'q"\\', 'a["q\\"\\\\"]'),
        ("a", "é", 'a["é"]'),
        ("a", "b\ud800", 'a["b\\ud800"]'),
    ],
)
def test_json_path_join(path: str, key: str | int, expected: str) -> None:
    """Identifiers join with a dot, indexes and other keys with brackets (keys JSON-quoted)."""
    assert json_path_join(path, key) == expected
