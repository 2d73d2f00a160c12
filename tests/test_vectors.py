"""The published test vectors (tests/vectors, docs/spec.md §11), checked against an independent reading of the spec.

The digests here are recomputed with hashlib and the reference ``rfc8785`` package, following the spec's
tables, not the library's digest helpers; the library must agree with both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from run_identity import Composition, Keyring, Manifest, compute_identity
from run_identity.core.canonical import canonicalize
from run_identity.core.errors import RunIdentityError

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
FILES = sorted(p for p in VECTORS.glob("[0-9][0-9]-*.json"))
LIST_COMPONENTS = {"instructions", "messages", "tools", "context"}
TEST_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _salted(kind: str, name: str, salt: bytes) -> bytes:
    return f"run-identity/v1/{kind}/{name}".encode() + b"\x00" + len(salt).to_bytes(4, "big") + salt


def _independent_digests(composition: dict[str, Any], salt: bytes) -> tuple[dict[str, Any], str]:
    digests: dict[str, Any] = {}
    for name, value in composition.items():
        if name in LIST_COMPONENTS:
            elements = [_sha(_salted("element", name, salt) + rfc8785.dumps(v)) for v in value]
            body = rfc8785.dumps(elements)
            digests[name] = {"digest": _sha(f"run-identity/v1/list/{name}".encode() + b"\x00" + body), "elements": elements}
        else:
            digests[name] = {"digest": _sha(_salted("component", name, salt) + rfc8785.dumps(value))}
    top = rfc8785.dumps({name: d["digest"] for name, d in digests.items()})
    return digests, _sha(b"run-identity/v1/identity\x00" + top)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_there_are_at_least_twelve_vectors() -> None:
    """The spec promises at least twelve vectors covering the listed cases."""
    names = {_load(p)["name"] for p in FILES}
    assert len(names) >= 12
    assert {"minimal", "typical", "unicode-heavy", "tools", "rag-context", "withheld-message"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_vector_canonical_forms_match_the_reference_jcs(path: Path) -> None:
    """Each component's canonical text is what the reference rfc8785 package produces."""
    v = _load(path)
    for name, value in v["composition"].items():
        if name in LIST_COMPONENTS:
            assert v["canonical"][name] == [rfc8785.dumps(e).decode() for e in value]
        else:
            assert v["canonical"][name] == rfc8785.dumps(value).decode()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_vector_digests_follow_the_spec_tables(path: Path) -> None:
    """Digests and identity recomputed by hand from spec §4 equal the vector and the library."""
    v = _load(path)
    salt = bytes.fromhex(v["salt_hex"])
    digests, identity = _independent_digests(v["composition"], salt)
    assert digests == v["component_digests"]
    assert identity == v["identity"]
    assert compute_identity(Composition.from_dict(v["composition"]), salt=salt).id == identity


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_vector_statement_and_signature(path: Path) -> None:
    """The PAE bytes are built as spec §8 says, and the signature verifies under the published test key."""
    v = _load(path)
    assert v["statement"]["identity"] == v["identity"]
    body = rfc8785.dumps(v["statement"])
    ptype = b"application/vnd.run-identity.binding.v1+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    assert bytes.fromhex(v["signing_input_hex"]) == pae
    Ed25519PublicKey.from_public_bytes(TEST_PUBLIC).verify(base64.b64decode(v["signature"]), pae)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_vector_manifest_recomputes_to_the_identity(path: Path) -> None:
    """The manifest (with any withheld elements) parses and recomputes to the vector's identity."""
    v = _load(path)
    manifest = Manifest.from_json(v["manifest"])
    result = manifest.recompute(salt=bytes.fromhex(v["salt_hex"]))
    assert result.problems == ()
    assert result.identity == v["identity"]
    if v.get("withheld"):
        assert manifest.withholds_content


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_vector_manifest_body_is_the_canonical_text_produced(path: Path) -> None:
    """``manifest_body`` is the exact string a producer puts in the log record's body (§9.2): the canonical
    form of ``manifest``, byte for byte."""
    v = _load(path)
    assert v["manifest_body"] == canonicalize(v["manifest"]).decode("utf-8")
    assert Manifest.from_json(v["manifest_body"]).to_json() == Manifest.from_json(v["manifest"]).to_json()


def test_absent_and_empty_tools_differ() -> None:
    """The empty-tools and absent-tools vectors have different identities."""
    by_name = {_load(p)["name"]: _load(p) for p in FILES}
    assert by_name["empty-tools"]["identity"] != by_name["absent-tools"]["identity"]


def test_withheld_vectors_keep_the_identity_of_their_source() -> None:
    """Withholding a message, a document or a component does not change the identity."""
    by_name = {_load(p)["name"]: _load(p) for p in FILES}
    assert by_name["withheld-message"]["identity"] == by_name["typical"]["identity"]
    assert by_name["withheld-document"]["identity"] == by_name["rag-context"]["identity"]
    assert by_name["withheld-component"]["identity"] == by_name["tools"]["identity"]
    assert by_name["salted"]["identity"] != by_name["typical"]["identity"]


def test_test_key_jwks_holds_the_published_key() -> None:
    """tests/vectors/test-key.jwks.json is the RFC 8032 TEST 1 public key."""
    ring = Keyring.from_jwks(VECTORS / "test-key.jwks.json")
    assert len(ring) == 1
    pub = Ed25519PublicKey.from_public_bytes(TEST_PUBLIC)
    assert Keyring([pub]).key_ids() == ring.key_ids()


@pytest.mark.parametrize("case", json.loads((VECTORS / "rejections.json").read_text()), ids=lambda c: c["path"] or "root")
def test_rejection_vectors_are_rejected_with_their_path(case: dict[str, Any]) -> None:
    """Each composition of rejections.json is rejected with an error naming the listed path."""
    with pytest.raises(RunIdentityError) as info:
        compute_identity(Composition.from_dict(case["composition"]))
    assert getattr(info.value, "path", None) == case["path"]
    assert case["reason"] in str(info.value)


def test_generator_output_is_checked_in() -> None:
    """Running scripts/gen_vectors.py --check finds no drift between the generator and the files."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_vectors.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
