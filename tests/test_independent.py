"""The spec is enough: an implementation written only from docs/spec.md agrees with the library's verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from independent_verifier import load_keys, verify_folder

from run_identity.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out)]) == 0
    return out


def _library_codes(export: Path, jwks: Path, capsys: pytest.CaptureFixture[str]) -> dict[tuple[str, str], str]:
    capsys.readouterr()
    main(["verify", str(export), "--keyring", str(jwks), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return {(r["trace_id"], r["span_id"]): r["code"] for r in lines if r["type"] == "run"}


def test_independent_implementation_verifies_every_demo_run(demo: Path) -> None:
    """The second implementation verifies all twelve runs the library exported."""
    codes = verify_folder(demo / "export", load_keys(demo / "keys" / "trusted-keys.jwks.json"))
    assert len(codes) == 12
    assert set(codes.values()) == {"verified"}


def test_both_implementations_agree_on_tampered_data(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After editing one message byte and dropping one span, both report the same code for every run."""
    export = tmp_path / "export"
    export.mkdir()
    manifests = (demo / "export" / "manifests.jsonl").read_text(encoding="utf-8").splitlines()
    manifests[0] = manifests[0].replace("Do you sell cargo bikes?", "Do you sell cargo bikez?", 1)
    (export / "manifests.jsonl").write_text("\n".join(manifests) + "\n", encoding="utf-8")
    traces = [json.loads(line) for line in (demo / "export" / "traces.jsonl").read_text(encoding="utf-8").splitlines()]
    del traces[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][-1]
    (export / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces), encoding="utf-8")
    jwks = demo / "keys" / "trusted-keys.jwks.json"
    ours = verify_folder(export, load_keys(jwks))
    theirs = _library_codes(export, jwks, capsys)
    assert ours == theirs
    assert "identity_mismatch" in ours.values()
    assert "span_missing" in ours.values()


def test_both_implementations_refuse_a_manifest_that_names_a_member_twice(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repeated member has no single reading (spec §12 step 1): malformed in both, the other runs verified."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "traces.jsonl").write_bytes((demo / "export" / "traces.jsonl").read_bytes())
    manifests = (demo / "export" / "manifests.jsonl").read_text(encoding="utf-8").splitlines()
    assert '\\"spec_version\\":\\"1\\"' in manifests[0]
    manifests[0] = manifests[0].replace('\\"spec_version\\":\\"1\\"', '\\"spec_version\\":\\"1\\",\\"spec_version\\":\\"1\\"', 1)
    (export / "manifests.jsonl").write_text("\n".join(manifests) + "\n", encoding="utf-8")
    jwks = demo / "keys" / "trusted-keys.jwks.json"
    ours = verify_folder(export, load_keys(jwks))
    assert ours == _library_codes(export, jwks, capsys)
    assert sorted(ours.values()).count("malformed") == 1
    assert sorted(ours.values()).count("verified") == len(ours) - 1


def test_independent_implementation_rejects_an_untrusted_key(demo: Path, tmp_path: Path) -> None:
    """With a keyring that does not hold the signing key, every run is unknown_key."""
    other = tmp_path / "other.jwks.json"
    other.write_text((Path(__file__).parent / "vectors" / "test-key.jwks.json").read_text())
    codes = verify_folder(demo / "export", load_keys(other))
    assert set(codes.values()) == {"unknown_key"}
