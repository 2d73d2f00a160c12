"""Tests of the run-identity command line (identity, canonicalize, keygen), called through main()."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import full_dict, minimal_dict, text_message

from run_identity.cli import main
from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition
from run_identity.core.digest import compute_identity
from run_identity.core.keys import Keyring, load_signer

# The minimal composition's digests (see tests/test_digest.py for their construction).
MODEL_DIGEST = "sha256:48da21365e0533e71bf444716213eadc03ab24947779205bdb0f0b1edea3c83d"
OPERATION_DIGEST = "sha256:a16d2319fb4412c5897f9c92f31ddf7d40e294fc083193610dac303cf9de7c79"
MINIMAL_IDENTITY = "sha256:17ba712228a7e048193f8e795076b407833614933d83d45eb8c8001c7d7e6eb9"


def _write(tmp_path: Path, data: Any, name: str = "composition.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one line, prefixed, without a traceback."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run-identity: error: ")
    return lines[0]


# -- identity ---------------------------------------------------------------------------------------


def test_identity_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """identity FILE prints one aligned line per component digest, then the identity."""
    assert main(["identity", str(_write(tmp_path, minimal_dict()))]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == (
        f"model      {MODEL_DIGEST}\noperation  {OPERATION_DIGEST}\nidentity   {MINIMAL_IDENTITY}\n"
    )


def test_identity_table_lists_element_digests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """List components are followed by their element digests, indexed in order."""
    data = full_dict()
    expected = compute_identity(Composition.from_dict(data))
    assert main(["identity", str(_write(tmp_path, data))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"identity      {expected.id}"
    messages = lines.index(f"messages      {expected.components['messages'].digest}")
    for i, digest in enumerate(expected.components["messages"].element_digests or ()):
        assert lines[messages + 1 + i] == f"{' ' * 16}[{i}] {digest}"
    names = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert names == [*sorted(data), "identity"]


def test_identity_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """identity --json prints the identity and every component digest (with element digests) as JSON."""
    data = full_dict()
    expected = compute_identity(Composition.from_dict(data))
    assert main(["identity", "--json", str(_write(tmp_path, data))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["identity"] == expected.id
    assert set(out["components"]) == set(data)
    assert out["components"]["model"] == {"digest": expected.components["model"].digest}
    assert out["components"]["tools"] == {
        "digest": expected.components["tools"].digest,
        "elements": list(expected.components["tools"].element_digests or ()),
    }


def test_identity_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """identity - reads the composition from standard input."""
    _stdin(monkeypatch, json.dumps(minimal_dict()).encode())
    assert main(["identity", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["identity"] == MINIMAL_IDENTITY


def test_identity_same_for_reformatted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Whitespace, member order and 1 vs 1.0 in the file do not change the identity."""
    data = {**minimal_dict(), "parameters": {"temperature": 1, "max_tokens": 10}}
    compact = _write(tmp_path, data, "a.json")
    spaced = json.dumps(dict(reversed(list(data.items()))), indent=4).replace(
        '"temperature": 1', '"temperature": 1.0'
    )
    pretty = _write(tmp_path, spaced, "b.json")
    main(["identity", "--json", str(compact)])
    first = json.loads(capsys.readouterr().out)
    main(["identity", "--json", str(pretty)])
    assert json.loads(capsys.readouterr().out) == first


# -- canonicalize -----------------------------------------------------------------------------------


def test_canonicalize_prints_exact_bytes(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """canonicalize writes the JCS bytes and nothing else: no newline, UTF-8 unescaped, ES6 numbers."""
    text = (
        '{\n  "b": [1.0, 1e21, 0.000001, 1E-7, -0],\n  "a": "\\u00e9\\n\\u001f/",\n'
        '  "\\ud83d\\ude00": null, "\\ue000": true\n}'
    )
    path = _write(tmp_path, text, "doc.json")
    assert main(["canonicalize", str(path)]) == 0
    out, err = capsysbinary.readouterr()
    assert err == b""
    assert (
        out == '{"a":"é\\n\\u001f/","b":[1,1e+21,0.000001,1e-7,0],"\U0001f600":null,"\ue000":true}'.encode()
    )


def test_canonicalize_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """canonicalize - reads standard input and agrees with the library."""
    data = full_dict()
    _stdin(monkeypatch, json.dumps(data, indent=2).encode())
    assert main(["canonicalize", "-"]) == 0
    assert capsysbinary.readouterr().out == canonicalize(data)


def test_canonicalize_rejects_lone_surrogate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lone surrogate escape is rejected with the file and the JSON path, exit 1."""
    path = _write(tmp_path, '{"messages": [{"x": "ok"}, {"x": "\\ud800"}]}', "s.json")
    assert main(["canonicalize", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_error_line(err) == f"run-identity: error: {path}: messages[1].x: lone surrogate U+D800"


# -- keygen -----------------------------------------------------------------------------------------


def test_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keygen --out DIR writes a 0600 private key and a JWKS, and prints where and the key id."""
    out_dir = tmp_path / "keys"
    assert main(["keygen", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    key_path = out_dir / "signing-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key_id = load_signer(key_path).key_id
    assert Keyring.from_jwks(out_dir / "trusted-keys.jwks.json").key_ids() == [key_id]
    assert key_id in out and str(key_path) in out
    assert "PRIVATE" not in out


def test_keygen_twice_rotates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Running keygen again with --force keeps the old public key trusted."""
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    assert main(["keygen", "--out", str(tmp_path), "--force"]) == 0
    capsys.readouterr()
    assert len(Keyring.from_jwks(tmp_path / "trusted-keys.jwks.json")) == 2


def test_keygen_refuses_to_replace_a_key_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keygen into a folder that holds a signing key is one line, exit 1, and leaves key and JWKS untouched."""
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    key, jwks = (tmp_path / "signing-key.pem").read_bytes(), (tmp_path / "trusted-keys.jwks.json").read_bytes()
    assert main(["keygen", "--out", str(tmp_path)]) == 1
    assert "--force" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "signing-key.pem").read_bytes() == key
    assert (tmp_path / "trusted-keys.jwks.json").read_bytes() == jwks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing-key.pem", "trusted-keys.jwks.json"]


def test_keygen_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keygen into a path below a file fails with one line, exit 1."""
    blocker = _write(tmp_path, "x", "file")
    assert main(["keygen", "--out", str(blocker / "keys")]) == 1
    assert "cannot write keys" in _one_error_line(capsys.readouterr().err)


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["identity", "canonicalize"])
def test_invalid_json_names_file_line_and_column(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Invalid JSON exits 1 with file:line:col in one line."""
    path = _write(tmp_path, '{"model": {},\n "operation": "chat",\n "messages": [oops]}', "bad.json")
    assert main([command, str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_error_line(err).startswith(f"run-identity: error: {path}:3:15: not valid JSON")


def test_invalid_json_on_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid JSON on stdin is located as <stdin>:line:col."""
    _stdin(monkeypatch, b"{\n\n,}")
    assert main(["identity", "-"]) == 1
    assert _one_error_line(capsys.readouterr().err).startswith(
        "run-identity: error: <stdin>:3:1: not valid JSON"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                **minimal_dict(),
                "messages": [text_message("user", "a"), {"role": "user", "parts": [{"type": "text"}]}],
            },
            "messages[1].parts[0]: missing required field 'content' for a 'text' part",
        ),
        ({**minimal_dict(), "prompt": "x"}, "prompt: unknown component"),
        ({"operation": "chat"}, "missing required component 'model'"),
        ({**minimal_dict(), "parameters": {"temprature": 1}}, "parameters.temprature: unknown parameter"),
        (
            {**minimal_dict(), "extensions": {"big": 2**53}},
            "extensions.big: integer 9007199254740992 is outside",
        ),
        ([1, 2], "a composition is a JSON object, got list"),
    ],
)
def test_schema_error_names_the_path(
    data: Any, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A composition that breaks the schema exits 1 with the file and the JSON path in one line."""
    path = _write(tmp_path, data)
    assert main(["identity", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_error_line(err).startswith(f"run-identity: error: {path}: {message}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1, "a": 2}', "duplicate member name 'a'"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a": 1e999}', "outside the range of an IEEE 754 double"),
        (b'{"a": "\xff"}', "not UTF-8 (byte 7)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"", "not valid JSON"),
    ],
)
def test_ambiguous_or_broken_input_rejected(
    content: bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Duplicate names, NaN/Infinity, huge numbers, bad UTF-8 and runaway nesting are one-line errors."""
    path = tmp_path / "in.json"
    path.write_bytes(content)
    assert main(["canonicalize", str(path)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"run-identity: error: {path}")
    assert message in line


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist is a one-line error, exit 1."""
    assert main(["identity", str(tmp_path / "nope.json")]) == 1
    assert _one_error_line(capsys.readouterr().err).endswith("nope.json: no such file")


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory given as FILE is a one-line error, exit 1."""
    assert main(["canonicalize", str(tmp_path)]) == 1
    assert _one_error_line(capsys.readouterr().err).endswith("is a directory")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["identity"],
        ["frobnicate"],
        ["identity", "--jsn", "x.json"],
        ["keygen"],
        ["canonicalize", "a", "b"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors exit with status 2 and a usage message, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: run-identity" in err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("run-identity ")


@pytest.mark.parametrize("command", ["identity", "canonicalize"])
def test_an_integer_past_pythons_digit_limit_is_one_error_with_its_place(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python refuses to convert more than 4300 digits; that is still one error line, not a traceback."""
    digits = "9" * 5000
    text = '{"model": {"provider": "openai", "name": "gpt-4o"},\n "operation": "chat", "parameters": {"seed": -%s}}'
    path = _write(tmp_path, text % digits, "big.json")
    assert main([command, str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    line = _one_error_line(err)
    assert line == f"run-identity: error: {path}:2:46: an integer of 5000 digits is outside ±(2^53-1)"
