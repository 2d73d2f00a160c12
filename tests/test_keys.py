"""Tests of run_identity.core.keys: key ids, Ed25519 signing, JWKS keyrings, key files and the signer interface."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import (
    TEST1_KEY_ID,
    TEST1_PUBLIC,
    TEST1_SEED,
    TEST2_PUBLIC,
    TEST2_SEED,
    keyring,
    sign,
    signer,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from run_identity.core.errors import KeyringError, SigningError
from run_identity.core.keys import (
    Ed25519Signer,
    Keyring,
    Signer,
    generate_key_files,
    jwk_thumbprint,
    load_signer,
    public_jwk,
    sign_or_raise,
)

# RFC 8037 Appendix A.1 / A.3 / A.4.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_SIGNING_INPUT = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
# RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
RFC8032_TEST1_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
RFC8032_TEST2_SIGNATURE = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwks(*jwks: dict[str, Any]) -> str:
    return json.dumps({"keys": list(jwks)})


def _okp(public: bytes, **extra: Any) -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(public), **extra}


# -- key ids ---------------------------------------------------------------------------------------


def test_thumbprint_matches_rfc8037_example() -> None:
    """The key id of the RFC 8037 A.3 public key is the thumbprint published there."""
    assert jwk_thumbprint({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}) == TEST1_KEY_ID


def test_thumbprint_ignores_optional_members() -> None:
    """Members other than crv, kty and x do not change the thumbprint (RFC 7638 section 3.2)."""
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": "whatever", "alg": "EdDSA", "use": "sig"}
    assert jwk_thumbprint(jwk) == TEST1_KEY_ID


def test_signer_key_id_is_thumbprint_of_its_public_key() -> None:
    """A signer made from the RFC 8037 private key has the RFC 8037 thumbprint as key id."""
    s = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(_b64url_decode(RFC8037_D)))
    assert s.key_id == TEST1_KEY_ID
    assert s.public_jwk() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": RFC8037_X,
        "kid": TEST1_KEY_ID,
        "alg": "EdDSA",
        "use": "sig",
    }


def test_public_jwk_encodes_the_raw_public_key() -> None:
    """public_jwk writes the 32 raw public key bytes as unpadded base64url."""
    jwk = public_jwk(Ed25519PublicKey.from_public_bytes(TEST2_PUBLIC))
    assert _b64url_decode(jwk["x"]) == TEST2_PUBLIC
    assert "=" not in jwk["x"]
    assert jwk["kid"] == jwk_thumbprint(jwk)


def test_different_keys_have_different_key_ids() -> None:
    """Two keys never share a key id."""
    assert signer(TEST1_SEED).key_id != signer(TEST2_SEED).key_id


# -- signing ---------------------------------------------------------------------------------------


def test_sign_matches_rfc8032_test_vectors() -> None:
    """Signatures equal the RFC 8032 TEST 1 and TEST 2 known answers (Ed25519 is deterministic)."""
    assert signer(TEST1_SEED).sign(b"") == RFC8032_TEST1_SIGNATURE
    assert signer(TEST2_SEED).sign(b"\x72") == RFC8032_TEST2_SIGNATURE


def test_sign_matches_rfc8037_jws_example() -> None:
    """The RFC 8037 A.4 JWS signing input signs to the published signature."""
    assert signer().sign(RFC8037_SIGNING_INPUT) == _b64url_decode(RFC8037_SIGNATURE)


def test_keyring_verifies_a_valid_signature() -> None:
    """A keyring trusting the key accepts the key's signature of the data."""
    assert keyring().verify(TEST1_KEY_ID, RFC8032_TEST1_SIGNATURE, b"")
    assert keyring(TEST2_SEED).verify(signer(TEST2_SEED).key_id, RFC8032_TEST2_SIGNATURE, b"\x72")


def test_verify_rejects_wrong_data() -> None:
    """A signature does not verify over different data."""
    sig = signer().sign(b"statement")
    assert not keyring().verify(TEST1_KEY_ID, sig, b"statement!")


def test_verify_rejects_zero_signature() -> None:
    """The all-zero 64-byte signature never verifies."""
    assert not keyring().verify(TEST1_KEY_ID, bytes(64), b"")


def test_verify_rejects_signature_of_another_key() -> None:
    """A signature made by TEST 2 does not verify under TEST 1."""
    ring = keyring(TEST1_SEED, TEST2_SEED)
    sig = signer(TEST2_SEED).sign(b"data")
    assert not ring.verify(TEST1_KEY_ID, sig, b"data")
    assert ring.verify(signer(TEST2_SEED).key_id, sig, b"data")


@pytest.mark.parametrize("length", [0, 63, 65])
def test_verify_rejects_wrong_length_signature(length: int) -> None:
    """Truncated or extended signatures are invalid, not an exception."""
    sig = (RFC8032_TEST1_SIGNATURE * 2)[:length]
    assert not keyring().verify(TEST1_KEY_ID, sig, b"")


def test_verify_rejects_flipped_bit() -> None:
    """Flipping any one bit of a valid signature makes it invalid."""
    ring = keyring()
    for i in (0, 31, 32, 63):
        sig = bytearray(RFC8032_TEST1_SIGNATURE)
        sig[i] ^= 0x01
        assert not ring.verify(TEST1_KEY_ID, bytes(sig), b"")


def test_verify_unknown_key_id_raises_key_error() -> None:
    """Asking for a key the keyring does not hold is a KeyError, never a silent pass."""
    with pytest.raises(KeyError):
        keyring().verify(signer(TEST2_SEED).key_id, RFC8032_TEST2_SIGNATURE, b"\x72")


@pytest.mark.parametrize("length", [31, 33, 0])
def test_jwks_rejects_wrong_length_public_key(length: int) -> None:
    """An 'x' that is not 32 bytes is refused with the key's index."""
    text = _jwks(_okp((TEST1_PUBLIC * 2)[:length]))
    with pytest.raises(KeyringError, match=r"keys\[0\]: 'x' is not a 32-byte"):
        Keyring.from_jwks_text(text)


# -- keyrings (JWKS) -------------------------------------------------------------------------------


def test_jwks_with_several_keys_verifies_each() -> None:
    """A JWKS holding an old and a new key verifies signatures of both (rotation)."""
    kid2 = signer(TEST2_SEED).key_id
    ring = Keyring.from_jwks_text(_jwks(_okp(TEST1_PUBLIC), _okp(TEST2_PUBLIC, kid=kid2)))
    assert len(ring) == 2
    assert set(ring.key_ids()) == {TEST1_KEY_ID, signer(TEST2_SEED).key_id}
    assert ring.verify(TEST1_KEY_ID, signer().sign(b"m"), b"m")
    assert ring.verify(signer(TEST2_SEED).key_id, signer(TEST2_SEED).sign(b"m"), b"m")
    assert TEST1_KEY_ID in ring
    assert "nope" not in ring


def test_jwks_round_trip() -> None:
    """to_jwks writes a document from_jwks_text reads back to the same keys."""
    ring = keyring(TEST1_SEED, TEST2_SEED)
    again = Keyring.from_jwks_text(json.dumps(ring.to_jwks()))
    assert again.key_ids() == ring.key_ids()
    assert all(jwk["kid"] == jwk_thumbprint(jwk) for jwk in ring.to_jwks()["keys"])


def test_jwks_from_file(tmp_path: Path) -> None:
    """Keyring.from_jwks reads a JWKS file."""
    path = tmp_path / "keys.jwks.json"
    path.write_text(_jwks(_okp(TEST1_PUBLIC)), encoding="utf-8")
    assert Keyring.from_jwks(path).key_ids() == [TEST1_KEY_ID]


def test_jwks_refuses_private_member() -> None:
    """A JWK holding the private 'd' member is refused: a keyring holds public keys only."""
    with pytest.raises(KeyringError, match=r"<jwks>: keys\[1\]: holds a private key \('d'\)") as info:
        Keyring.from_jwks_text(_jwks(_okp(TEST2_PUBLIC), _okp(TEST1_PUBLIC, d=RFC8037_D)))
    assert RFC8037_D not in str(info.value)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "RSA", "crv": "Ed25519", "x": RFC8037_X},
        {"kty": "EC", "crv": "P-256", "x": RFC8037_X, "y": RFC8037_X},
        {"kty": "OKP", "crv": "X25519", "x": RFC8037_X},
        {"kty": "OKP", "crv": "Ed448", "x": RFC8037_X},
        {"crv": "Ed25519", "x": RFC8037_X},
        "not a key",
    ],
)
def test_jwks_refuses_other_key_types(jwk: Any) -> None:
    """Only OKP Ed25519 keys are accepted; others are refused naming the key."""
    with pytest.raises(KeyringError, match=r"keys\[0\]: only OKP Ed25519 keys are supported"):
        Keyring.from_jwks_text(_jwks(jwk))


def test_jwks_refuses_missing_x() -> None:
    """An OKP Ed25519 JWK without 'x' is refused."""
    with pytest.raises(KeyringError, match=r"keys\[0\]: 'x'"):
        Keyring.from_jwks_text(_jwks({"kty": "OKP", "crv": "Ed25519"}))


@pytest.mark.parametrize(
    "x",
    [
        RFC8037_X + "=",  # padded
        RFC8037_X.replace("_", "/"),  # standard alphabet
        RFC8037_X[:20] + " " + RFC8037_X[20:],  # whitespace
        RFC8037_X[:-1] + "p",  # non-zero trailing bits: same 32 bytes, different text
    ],
)
def test_jwks_refuses_non_canonical_base64url(x: str) -> None:
    """'x' must be the unpadded base64url form; other spellings of the same bytes would change the key id."""
    with pytest.raises(KeyringError, match=r"keys\[0\]: 'x'"):
        Keyring.from_jwks_text(_jwks({"kty": "OKP", "crv": "Ed25519", "x": x}))


def test_jwks_refuses_kid_that_is_not_the_thumbprint() -> None:
    """A 'kid' other than the RFC 7638 thumbprint is refused, naming both."""
    with pytest.raises(KeyringError, match=r"keys\[0\]: 'kid' 'k1' is not the key's RFC 7638") as info:
        Keyring.from_jwks_text(_jwks(_okp(TEST1_PUBLIC, kid="k1")))
    assert TEST1_KEY_ID in str(info.value)


def test_jwks_not_json_names_source_and_line() -> None:
    """Text that is not JSON is refused with the source name and the line of the error."""
    with pytest.raises(KeyringError, match=r"^keys\.json:3: keyring is not valid JSON"):
        Keyring.from_jwks_text('{\n  "keys": [\n    oops\n  ]\n}', source="keys.json")


@pytest.mark.parametrize("text", ["[]", '{"keys": {}}', '{"key": []}', "null"])
def test_jwks_wrong_shape(text: str) -> None:
    """A JWKS is an object with a 'keys' array."""
    with pytest.raises(KeyringError, match="a JWKS is an object with a 'keys' array"):
        Keyring.from_jwks_text(text)


def test_jwks_missing_file(tmp_path: Path) -> None:
    """A missing keyring file is a KeyringError naming the path."""
    with pytest.raises(KeyringError, match="cannot read keyring"):
        Keyring.from_jwks(tmp_path / "absent.json")


def test_jwks_not_utf8(tmp_path: Path) -> None:
    """A keyring file that is not UTF-8 is a KeyringError."""
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"keys": ["\xff"]}')
    with pytest.raises(KeyringError, match="not UTF-8"):
        Keyring.from_jwks(path)


# -- key files -------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_key_files_writes_private_key_0600(tmp_path: Path) -> None:
    """keygen writes a PEM private key readable by the owner only and a JWKS with its public key."""
    key_path, jwks_path, key_id = generate_key_files(tmp_path / "keys")
    assert _mode(key_path) == 0o600
    loaded = load_signer(key_path)
    assert loaded.key_id == key_id
    ring = Keyring.from_jwks(jwks_path)
    assert ring.key_ids() == [key_id]
    assert ring.verify(key_id, loaded.sign(b"x"), b"x")
    assert b"PRIVATE" not in jwks_path.read_bytes()


def test_generate_key_files_0600_despite_permissive_umask(tmp_path: Path) -> None:
    """The private key is 0600 even when the process umask would allow more."""
    import os

    old = os.umask(0)
    try:
        key_path, _, _ = generate_key_files(tmp_path)
    finally:
        os.umask(old)
    assert _mode(key_path) == 0o600


def test_generate_key_files_twice_keeps_old_keys(tmp_path: Path) -> None:
    """A second run rotates: the JWKS trusts both keys and the old private key is kept aside."""
    key1, jwks, kid1 = generate_key_files(tmp_path)
    old_pem = key1.read_bytes()
    key2, jwks2, kid2 = generate_key_files(tmp_path)
    assert key2 == key1 and jwks2 == jwks and kid1 != kid2
    assert set(Keyring.from_jwks(jwks).key_ids()) == {kid1, kid2}
    kept = tmp_path / f"signing-key.{kid1}.pem"
    assert kept.read_bytes() == old_pem
    assert load_signer(key2).key_id == kid2
    assert _mode(key2) == 0o600
    assert _mode(kept) == 0o600


def test_generate_key_files_bad_jwks_leaves_key_untouched(tmp_path: Path) -> None:
    """When the existing JWKS is unreadable, keygen fails before replacing the signing key."""
    key1, jwks, kid1 = generate_key_files(tmp_path)
    jwks.write_text("not json", encoding="utf-8")
    with pytest.raises(KeyringError):
        generate_key_files(tmp_path)
    assert load_signer(key1).key_id == kid1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing-key.pem", "trusted-keys.jwks.json"]


def test_generate_key_files_into_a_file_fails_cleanly(tmp_path: Path) -> None:
    """An output path that is a file is a KeyringError, not an OSError."""
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(KeyringError, match="cannot write keys"):
        generate_key_files(target)


def test_load_signer_errors(tmp_path: Path) -> None:
    """A missing, non-PEM or non-Ed25519 key file is a KeyringError that does not echo the file."""
    with pytest.raises(KeyringError, match="cannot read signing key"):
        load_signer(tmp_path / "absent.pem")
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyringError, match="not an unencrypted PKCS#8 PEM private key") as info:
        load_signer(junk)
    assert "c2VjcmV0" not in str(info.value)


def test_load_signer_refuses_non_ed25519(tmp_path: Path) -> None:
    """A PEM private key of another algorithm is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyringError, match="not an Ed25519 key"):
        load_signer(path)


def test_signer_repr_and_str_never_show_the_key() -> None:
    """Neither repr nor str of a signer contains the private key in any encoding."""
    s = signer()
    pem = s.private_pem().decode()
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert TEST1_KEY_ID in text
        for secret in (TEST1_SEED.hex(), RFC8037_D, body, base64.b64encode(TEST1_SEED).decode()):
            assert secret not in text
    assert not hasattr(s, "__dict__")


def test_ed25519_signer_refuses_other_keys() -> None:
    """Ed25519Signer needs an Ed25519 private key."""
    with pytest.raises(ValueError, match="Ed25519PrivateKey"):
        Ed25519Signer(TEST1_SEED)  # type: ignore[arg-type]


# -- the signer interface (HSM / KMS) --------------------------------------------------------------


class RemoteSigner:
    """Stands for an HSM or KMS: holds no key object the library can see, signs through a call."""

    def __init__(self, seed: bytes) -> None:
        key = Ed25519PrivateKey.from_private_bytes(seed)
        self._sign = key.sign
        self._key_id = public_jwk(key.public_key())["kid"]
        self.calls: list[bytes] = []

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, data: bytes) -> bytes:
        self.calls.append(data)
        return self._sign(data)


class FailingSigner:
    """A signer whose backend fails with a message that must not leak."""

    key_id = TEST1_KEY_ID

    def sign(self, data: bytes) -> bytes:
        raise RuntimeError(f"HSM refused: session secret {TEST1_SEED.hex()}")


class ShortSigner:
    """A broken signer that returns too few bytes."""

    key_id = TEST1_KEY_ID

    def sign(self, data: bytes) -> bytes:
        return b"\x00" * 32


def test_remote_signer_satisfies_protocol_and_signs_runs() -> None:
    """A Signer other than Ed25519Signer signs a run that verifies like one signed from a key file."""
    remote = RemoteSigner(TEST2_SEED)
    assert isinstance(remote, Signer)
    run = sign(key=remote)
    assert run.statement.key_id == signer(TEST2_SEED).key_id
    assert remote.calls == [run.statement.signing_input()]
    assert keyring(TEST2_SEED).verify(run.statement.key_id, run.signature, run.statement.signing_input())
    assert run.signature == sign(key=signer(TEST2_SEED)).signature


def test_failing_signer_raises_signing_error_without_secrets() -> None:
    """A signer failure becomes SigningError naming the key id and the failure type, not its message."""
    with pytest.raises(SigningError) as info:
        sign(key=FailingSigner())
    text = str(info.value)
    assert TEST1_KEY_ID in text and "RuntimeError" in text
    assert TEST1_SEED.hex() not in text
    assert TEST1_SEED.hex() not in info.value.diagnostics()


def test_signer_returning_wrong_length_is_signing_error() -> None:
    """A signer that returns something other than 64 bytes is refused."""
    with pytest.raises(SigningError, match="64-byte"):
        sign_or_raise(ShortSigner(), b"x")


def test_signing_error_from_signer_passes_through() -> None:
    """A SigningError raised by the signer itself is not re-wrapped."""

    class Refusing:
        key_id = TEST1_KEY_ID

        def sign(self, data: bytes) -> bytes:
            raise SigningError("quota exceeded")

    with pytest.raises(SigningError, match=r"^quota exceeded$"):
        sign_or_raise(Refusing(), b"x")


@pytest.mark.parametrize("text", ['{"keys": [{"n": %s}]}' % ("9" * 5000), "[" * 100_000 + "]" * 100_000])
def test_keyring_text_python_cannot_read_is_a_keyring_error(text: str) -> None:
    with pytest.raises(KeyringError, match="keyring is not usable JSON"):
        Keyring.from_jwks_text(text, source="ring.json")


# -- keys that cannot be trusted ----------------------------------------------------------------------

# The y encodings (sign bit clear) of the eight small-order points of edwards25519, canonical and not.
SMALL_ORDER_Y = [
    "00" * 32,  # y = 0: the two points of order 4
    "01" + "00" * 31,  # y = 1: the identity
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "ec" + "ff" * 30 + "7f",  # y = p - 1: order 2
    "ed" + "ff" * 30 + "7f",  # y = p, non-canonical 0
    "ee" + "ff" * 30 + "7f",  # y = p + 1, non-canonical 1
]
SMALL_ORDER = [bytes.fromhex(y[:62] + f"{int(y[62:], 16) | sign:02x}") for y in SMALL_ORDER_Y for sign in (0, 0x80)]
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _decode_point(raw: bytes) -> tuple[int, int]:
    """RFC 8032 §5.1.3 decoding, with y taken mod p (as lenient decoders do): the point an encoding names."""
    n = int.from_bytes(raw, "little")
    y = (n & ((1 << 255) - 1)) % _P
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    assert (x * x - x2) % _P == 0, "not a point"
    return ((_P - x) % _P if (x & 1) != n >> 255 else x), y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2
    return (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P, (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P


def _jwk(raw: bytes, **more: Any) -> dict[str, Any]:
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, **more}


def test_the_list_holds_every_small_order_point_in_every_encoding() -> None:
    """The 14 encodings name exactly 8 distinct points, each of order dividing 8 (checked by multiplying)."""
    points = {_decode_point(raw) for raw in SMALL_ORDER}
    assert len(SMALL_ORDER) == 14 and len(points) == 8
    for point in points:
        eight = point
        for _ in range(3):
            eight = _add(eight, eight)
        assert eight == (0, 1)


@pytest.mark.parametrize("raw", SMALL_ORDER, ids=lambda raw: raw.hex()[:8] + raw.hex()[-2:])
def test_a_keyring_holding_a_small_order_key_is_refused(raw: bytes) -> None:
    """A small-order "public key" in a JWKS refuses the whole keyring, naming the key by its id."""
    jwk = _jwk(raw)
    kid = jwk_thumbprint(jwk)
    text = json.dumps({"keys": [public_jwk(signer().public_key), jwk]})
    with pytest.raises(KeyringError, match=rf"^ring\.jwks: keys\[1\]: key {kid} is a point of small order") as info:
        Keyring.from_jwks_text(text, source="ring.jwks")
    assert "the keyring is refused" in str(info.value)
    with pytest.raises(KeyringError, match=f"key {kid} is a point of small order"):
        Keyring([Ed25519PublicKey.from_public_bytes(raw)])


def test_the_forgery_a_small_order_key_would_admit() -> None:
    """Why: under the identity point the signature R = identity, S = 0 verifies for any data."""
    identity = Ed25519PublicKey.from_public_bytes(bytes.fromhex(SMALL_ORDER_Y[1]))
    forged = bytes.fromhex(SMALL_ORDER_Y[1]) + bytes(32)
    identity.verify(forged, b"any statement at all")  # OpenSSL accepts it: the keyring must refuse the key
    with pytest.raises(KeyringError):
        Keyring([identity])


def test_a_non_canonical_point_encoding_is_refused() -> None:
    """y >= p spells a point another way (and so gives it another key id): refused."""
    raw = (_P + 2).to_bytes(32, "little")  # y = 2 mod p, written non-canonically
    with pytest.raises(KeyringError, match="not the canonical encoding of its point"):
        Keyring.from_jwks_text(json.dumps({"keys": [_jwk(raw)]}))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"alg": "RS256"}, "'alg' 'RS256' is not EdDSA or Ed25519"),
        ({"alg": "ES256"}, "'alg' 'ES256' is not EdDSA or Ed25519"),
        ({"alg": None}, "'alg' None is not EdDSA or Ed25519"),
        ({"use": "enc"}, "'use' 'enc' is not 'sig'"),
        ({"use": ["sig"]}, r"'use' \['sig'\] is not 'sig'"),
        ({"key_ops": ["sign"]}, r"'key_ops' \['sign'\] does not include 'verify'"),
        ({"key_ops": []}, r"'key_ops' \[\] does not include 'verify'"),
        ({"key_ops": "verify"}, "'key_ops' is not an array of distinct strings"),
        ({"key_ops": ["verify", "verify"]}, "'key_ops' is not an array of distinct strings"),
        ({"key_ops": ["verify", 1]}, "'key_ops' is not an array of distinct strings"),
    ],
)
def test_a_key_whose_members_rule_out_signature_verification_is_refused(members: dict[str, Any], message: str) -> None:
    """``alg``, ``use`` and ``key_ops``, when present, must allow Ed25519 verification; else the keyring is refused."""
    jwk = {**public_jwk(signer().public_key), **members}
    with pytest.raises(KeyringError, match=rf"^k\.jwks: keys\[0\]: key {TEST1_KEY_ID}: {message}") as info:
        Keyring.from_jwks_text(json.dumps({"keys": [jwk]}), source="k.jwks")
    assert str(info.value).endswith("the keyring is refused")


@pytest.mark.parametrize(
    "members",
    [
        {},
        {"alg": "EdDSA"},
        {"alg": "Ed25519"},
        {"use": "sig"},
        {"key_ops": ["verify"]},
        {"key_ops": ["sign", "verify"]},
        {"alg": "EdDSA", "use": "sig", "key_ops": ["verify"]},
    ],
)
def test_members_consistent_with_verification_are_accepted(members: dict[str, Any]) -> None:
    """Absent, or naming EdDSA/Ed25519, ``sig``, and ``verify``: the key is trusted."""
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": public_jwk(signer().public_key)["x"], **members}
    assert TEST1_KEY_ID in Keyring.from_jwks_text(json.dumps({"keys": [jwk]}))
