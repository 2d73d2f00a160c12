"""Strict JSON reading: a member named twice, at any depth, in manifests, receipts, keyrings and CLI input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import DECLARED_AT, SPAN_ID, TRACE_ID, minimal_dict, sign, signer

from run_identity import Composition, Keyring
from run_identity.cli import main
from run_identity.core.errors import KeyringError, ManifestError
from run_identity.core.manifest import Manifest, reject_repeated_members
from run_identity.core.receipt import Receipt, sign_receipt
from run_identity.core.strict_json import MAX_JSON_DEPTH, RepeatedMemberError, StrictJsonError, loads_strict

DEPTHS = [1, 50, 1000, 100_000]
REPEAT = '{"a":1,"a":2}'


def nested(levels: int) -> str:
    """REPEAT inside ``levels`` arrays."""
    return "[" * levels + REPEAT + "]" * levels


def expected(depth: int) -> str:
    """What the error says about a repeat at ``depth``: the repeat itself, or that nothing so deep is read."""
    return "appears more than once" if depth <= MAX_JSON_DEPTH else "nested too deeply"


def manifest_text(depth: int) -> str:
    """A signed manifest whose text names a member twice in an object ``depth`` levels down (the root is 1)."""
    text = sign(Composition.from_dict({**minimal_dict(), "extensions": {"deep": "@@"}})).manifest_json().decode()
    if depth == 1:
        return '{"spec_version":"1",' + text[1:]
    # root > components > extensions > value > the object holding "deep" > arrays > the repeat
    return text.replace('"@@"', nested(depth - 5))


def receipt_text(depth: int) -> str:
    """A receipt whose output holds a repeat ``depth`` levels down (depth 1: ``output`` twice)."""
    receipt = sign_receipt(
        signer(),
        identity="sha256:" + "ab" * 32,
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        output=[{"role": "assistant", "parts": [{"type": "text", "content": "@@"}]}],
        finish_reasons=["stop"],
        completed_at=DECLARED_AT,
    )
    text = receipt.to_json_bytes().decode()
    if depth == 1:
        return '{"output":[],' + text[1:]
    # root > output > message > parts > part > arrays > the repeat
    return text.replace('"@@"', nested(depth - 5))


def keyring_text(depth: int) -> str:
    """A JWKS whose key holds a repeat ``depth`` levels down (depth 1: ``keys`` twice)."""
    jwks = Keyring([signer().public_key]).to_jwks()
    if depth == 1:
        return '{"keys":[],' + json.dumps(jwks)[1:]
    jwks["keys"][0]["x-extra"] = "@@"
    # root > keys > the key > arrays > the repeat
    return json.dumps(jwks).replace('"@@"', nested(depth - 3))


def test_the_texts_are_sound_without_the_repeat() -> None:
    """The documents these tests break are read when nothing is repeated."""
    assert Manifest.from_json(manifest_text(50).replace(REPEAT, '{"a":1}')).identity.startswith("sha256:")
    assert Receipt.from_json(receipt_text(50).replace(REPEAT, '{"a":1}')).statement.span_id == SPAN_ID
    assert len(Keyring.from_jwks_text(keyring_text(50).replace(REPEAT, '{"a":1}'))) == 1


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_manifest_naming_a_member_twice_is_malformed_at_any_depth(depth: int) -> None:
    """A repeated member anywhere in a manifest's text is a ManifestError; so is text nested past the limit."""
    text = manifest_text(depth)
    with pytest.raises(ManifestError, match=expected(depth)):
        Manifest.from_json(text)
    with pytest.raises(ManifestError, match=expected(depth)):
        reject_repeated_members(text)  # what the verifier calls on the text it read with orjson
    with pytest.raises(ManifestError, match=expected(depth)):
        reject_repeated_members(text.encode())


def test_the_error_names_the_object_holding_the_repeat() -> None:
    """The path is the object's, from the root, so a person can find it."""
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(manifest_text(7))
    assert info.value.path == "components.extensions.value.deep[0][0]"
    assert "member 'a' appears more than once" in str(info.value)
    with pytest.raises(ManifestError) as root:
        Manifest.from_json(manifest_text(1))
    assert root.value.path == "" and "'spec_version' appears more than once" in str(root.value)


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_receipt_naming_a_member_twice_is_malformed_at_any_depth(depth: int) -> None:
    """``output`` twice, or a repeat inside the output at any depth, is a ManifestError."""
    with pytest.raises(ManifestError, match=expected(depth)):
        Receipt.from_json(receipt_text(depth))
    with pytest.raises(ManifestError, match=expected(depth)):
        Receipt.from_json(receipt_text(depth).encode())


@pytest.mark.parametrize("member", ["identity", "span_id", "output_digest", "key_id", "finish_reasons"])
def test_a_receipt_naming_a_statement_member_twice_is_malformed(member: str) -> None:
    """A statement member given twice (either value could be read) is refused with the statement's path."""
    text = receipt_text(6).replace(REPEAT, '{"a":1}').replace('"receipt":{', f'"receipt":{{"{member}":"x",', 1)
    with pytest.raises(ManifestError) as info:
        Receipt.from_json(text)
    assert info.value.path == "receipt"
    assert f"member '{member}' appears more than once" in str(info.value)


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_keyring_naming_a_member_twice_is_refused_at_any_depth(depth: int) -> None:
    """A JWKS with a repeat anywhere is refused whole, with the source named."""
    with pytest.raises(KeyringError, match=rf"^trusted\.jwks\b.*{expected(depth)}"):
        Keyring.from_jwks_text(keyring_text(depth), source="trusted.jwks")


def test_a_keyring_naming_a_key_member_twice_is_refused() -> None:
    """Two ``x`` members in one key: which key is trusted is ambiguous, so none is."""
    jwk = Keyring([signer().public_key]).to_jwks()["keys"][0]
    text = '{"keys":[{"x":"' + "A" * 43 + '",' + json.dumps(jwk)[1:] + "]}"
    with pytest.raises(KeyringError, match=r"keys\[0\]: member 'x' appears more than once"):
        Keyring.from_jwks_text(text)


@pytest.mark.parametrize("depth", DEPTHS)
def test_cli_input_naming_a_member_twice_is_one_error_line(
    depth: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI reads compositions with the same reader: a repeat at any depth is one error line, exit 1."""
    inner = nested(depth - 3) if depth > 1 else '"x"'
    text = '{"model":{"provider":"openai","name":"m"},"operation":"chat","extensions":{"deep":' + inner + "}}"
    if depth == 1:
        text = '{"operation":"chat",' + text[1:]
    path = tmp_path / "in.json"
    path.write_text(text)
    assert main(["canonicalize", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"run-identity: error: {path}")
    if depth <= MAX_JSON_DEPTH:
        assert f"duplicate member name {'operation' if depth == 1 else 'a'!r}" in err
    else:
        assert "nested too deeply" in err


# -- the reader itself ------------------------------------------------------------------------------


def test_names_equal_after_unescaping_are_the_same_member() -> None:
    """``"a"`` and ``"\\u0061"`` name one member: that is a repeat too."""
    with pytest.raises(RepeatedMemberError) as info:
        loads_strict('{"x":[{"a":1,"\\u0061":2}]}')
    assert info.value.path == "x[0]" and info.value.member == "a"


def test_the_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    """MAX_JSON_DEPTH levels are read; one more is refused; brackets inside strings do not count."""
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_strict(deepest) is not None
    with pytest.raises(StrictJsonError, match="nested too deeply") as info:
        loads_strict("[" + deepest + "]")
    assert (info.value.line, info.value.column) == (1, MAX_JSON_DEPTH + 1)
    quoted = ["[" * 2000, '\\"[[[[', "\\\\", "{" * 600]
    assert loads_strict(json.dumps({"s": quoted, "t": [[[]]]})) == {"s": quoted, "t": [[[]]]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a":"\\ud800"}', r"^a: lone surrogate U\+D800$"),
        ('{"k":["\\udc00x"]}', r"^k\[0\]: lone surrogate U\+DC00$"),
        ('{"a":NaN}', "NaN is not JSON"),
        ('{"a":-Infinity}', "-Infinity is not JSON"),
        ('{"a":1e400}', "outside the range of an IEEE 754 double"),
        ('{"a":' + "1" * 5000 + "}", r"an integer of 5000 digits is outside ±\(2\^53-1\) \(line 1 column 6\)"),
        ("", r"not valid JSON \(Expecting value\) \(line 1 column 1\)"),
        ('{"a":1} x', "not valid JSON"),
    ],
)
def test_texts_without_a_single_reading_are_refused(text: str, message: str) -> None:
    """Lone surrogates, NaN/Infinity, numbers beyond a double and broken text are StrictJsonErrors (ValueError)."""
    with pytest.raises(StrictJsonError, match=message) as info:
        loads_strict(text)
    assert isinstance(info.value, ValueError)


def test_values_are_read_exactly() -> None:
    """Integers stay exact, paired surrogate escapes are text, bytes are UTF-8, and a BOM is not JSON."""
    value: Any = loads_strict(b'{"n":9007199254740993,"f":1.5,"e":"\\ud83d\\ude00","u":"\xc3\xa9"}')
    assert value == {"n": 9007199254740993, "f": 1.5, "e": "\U0001f600", "u": "é"}
    with pytest.raises(StrictJsonError, match="not UTF-8"):
        loads_strict(b'{"a":"\xff"}')
    with pytest.raises(StrictJsonError, match="not valid JSON"):
        loads_strict(b"\xef\xbb\xbf{}")


def test_doubles_reads_large_integers_as_the_doubles_they_denote() -> None:
    """With ``doubles``, integers beyond ±(2^53-1) are floats; smaller ones stay ints; beyond a double, refused."""
    value = loads_strict("[9007199254740991,-9007199254740992,100000000000000000000,1]", doubles=True)
    assert value == [9007199254740991, -9007199254740992.0, 1e20, 1]
    assert [type(v) for v in value] == [int, float, float, int]
    with pytest.raises(StrictJsonError, match="outside the range of an IEEE 754 double"):
        loads_strict("[1" + "0" * 400 + "]", doubles=True)
    with pytest.raises(StrictJsonError, match="outside the range of an IEEE 754 double"):
        loads_strict("[1" + "0" * 5000 + "]", doubles=True)


@pytest.mark.parametrize("depth", DEPTHS)
def test_the_verifier_finds_a_manifest_naming_a_member_twice_malformed(tmp_path: Path, depth: int) -> None:
    """Through the whole verifier: the run whose manifest record has a repeat at any depth is malformed."""
    from run_identity.verify import Policy, Verifier

    text = manifest_text(depth)
    record = {"eventName": "run_identity.manifest", "traceId": TRACE_ID, "spanId": SPAN_ID, "body": {"stringValue": text}}
    (tmp_path / "logs.jsonl").write_text(json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}))
    results = list(Verifier(Keyring([signer().public_key]), Policy()).verify([tmp_path]).results())
    assert [r.code for r in results] == ["malformed"]
    reasons = (expected(depth), "depth limit exceeded")  # orjson, which the verifier reads with first, stops at 1024
    assert any(r in f.message for f in results[0].findings for r in reasons), results[0].findings
