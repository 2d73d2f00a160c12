"""Keys: Ed25519 signers, key ids (RFC 7638 JWK thumbprints), and keyrings of trusted public keys (JWKS).

A :class:`Signer` is anything with a ``key_id`` and a ``sign(data) -> bytes`` method, so an HSM or a KMS
can sign instead of a key file. :class:`Ed25519Signer` wraps a private key held in memory; it never
appears in logs, reprs or span attributes. Keys are loaded once, never per call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from run_identity.core.errors import KeyringError, SigningError
from run_identity.core.strict_json import RepeatedMemberError, StrictJsonError, loads_strict

__all__ = [
    "Ed25519Signer",
    "Keyring",
    "Signer",
    "generate_key_files",
    "jwk_thumbprint",
    "load_signer",
    "public_jwk",
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Strict: only the unpadded base64url form; another spelling of the same bytes has another thumbprint."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url(raw) != text:
        raise ValueError("not canonical unpadded base64url")
    return raw


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as an OKP JWK (RFC 8037), with its ``kid`` set to the thumbprint."""
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(key))}
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": "EdDSA", "use": "sig"}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint of an OKP JWK: base64url(SHA-256 of the required members, sorted, compact)."""
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    body = json.dumps(required, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _b64url(hashlib.sha256(body.encode("ascii")).digest())


@runtime_checkable
class Signer(Protocol):
    """Signs bytes with Ed25519. ``sign`` may raise SigningError; it must not block for long."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


class Ed25519Signer:
    """An Ed25519 private key in memory. Its repr never shows the key."""

    __slots__ = ("_key", "_key_id", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError("Ed25519Signer needs an Ed25519PrivateKey")
        self._key = private_key
        self._public = private_key.public_key()
        self._key_id = public_jwk(self._public)["kid"]

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "<bytes>") -> Ed25519Signer:
        """Load an unencrypted PKCS#8 PEM private key. Raises KeyringError (without echoing the key)."""
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyringError(f"{source}: not an unencrypted PKCS#8 PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyringError(f"{source}: the private key is not an Ed25519 key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Ed25519Signer:
        """Load a PEM private key file. Raises KeyringError when it is missing or not an Ed25519 key."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeyringError(f"{path}: cannot read signing key ({exc.strerror})") from None
        return cls.from_pem(data, source=str(path))

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK."""
        return public_jwk(self._public)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def private_pem(self) -> bytes:
        """The private key as PKCS#8 PEM, for writing to a 0600 file."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self._key_id!r})"


def load_signer(path: str | os.PathLike[str]) -> Ed25519Signer:
    """Load the signing key at ``path`` (PEM). Raises KeyringError."""
    return Ed25519Signer.from_file(path)


# The eight points of small order (1, 2, 4, 8) on edwards25519, as the 32-byte encodings (RFC 8032 §5.1.2) of
# their y coordinate with the sign bit of x cleared: y = 0 (order 4), 1 (the identity), the two y of the four
# points of order 8, p - 1 (order 2), and the non-canonical p and p + 1 (0 and 1 again). With either sign bit
# these 14 encodings are every encoding of a small-order point. Such a "public key" is no key: [k]A is the
# identity for a share of all messages (for the identity itself, for all), so the signature R = identity,
# S = 0 verifies under it without any private key. See libsodium's ge25519_has_small_order.
_SMALL_ORDER_Y = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)
_P = 2**255 - 19
_EDDSA_ALGS = ("EdDSA", "Ed25519")


def _point_problem(raw: bytes) -> str | None:
    """Why the encoded point cannot be a trusted key (small order, or a non-canonical encoding), or None."""
    y = raw[:31] + bytes([raw[31] & 0x7F])
    if y in _SMALL_ORDER_Y:
        return "is a point of small order, under which forged signatures verify (no private key needed)"
    if int.from_bytes(y, "little") >= _P:
        return "is not the canonical encoding of its point (y >= 2^255 - 19)"
    return None


def _usage_problem(jwk: Mapping[str, Any]) -> str | None:
    """Why the JWK's ``alg``, ``use`` or ``key_ops`` (when present) do not allow Ed25519 verification, or None."""
    if "alg" in jwk and jwk["alg"] not in _EDDSA_ALGS:
        return f"'alg' {jwk['alg']!r} is not EdDSA or Ed25519"
    if "use" in jwk and jwk["use"] != "sig":
        return f"'use' {jwk['use']!r} is not 'sig'"
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if type(ops) is not list or not all(type(op) is str for op in ops) or len(set(ops)) != len(ops):
            return "'key_ops' is not an array of distinct strings"
        if "verify" not in ops:
            return f"'key_ops' {ops!r} does not include 'verify'"
    return None


def _trusted_key(jwk: object, where: str) -> tuple[str, Ed25519PublicKey]:
    """One JWK of a keyring as (key id, key). Raises KeyringError naming ``where`` and, once known, the key id."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise KeyringError(f"{where}: only OKP Ed25519 keys are supported")
    if "d" in jwk:
        raise KeyringError(f"{where}: holds a private key ('d'); a keyring holds public keys only")
    try:
        raw = _b64url_decode(jwk["x"])
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError):
        raise KeyringError(f"{where}: 'x' is not a 32-byte base64url Ed25519 public key") from None
    kid = jwk_thumbprint(jwk)
    refused = f"{where}: key {kid}"
    problem = _point_problem(raw)
    if problem is not None:
        raise KeyringError(f"{refused} {problem}; the keyring is refused")
    problem = _usage_problem(jwk)
    if problem is not None:
        raise KeyringError(f"{refused}: {problem}, so it is no Ed25519 verification key; the keyring is refused")
    if "kid" in jwk and jwk["kid"] != kid:
        raise KeyringError(f"{where}: 'kid' {jwk['kid']!r} is not the key's RFC 7638 thumbprint {kid!r}")
    return kid, key


class Keyring:
    """Trusted public keys by key id; several keys may be trusted at once (rotation).

    A key that cannot be trusted (a small-order point, a non-canonical encoding, a JWK whose ``alg``,
    ``use`` or ``key_ops`` rule out Ed25519 verification) refuses the whole keyring with KeyringError
    naming the key: a keyring that is not what its author meant is not used in part.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key in keys:
            jwk = public_jwk(key)
            problem = _point_problem(_raw_public(key))
            if problem is not None:
                raise KeyringError(f"key {jwk['kid']} {problem}; the keyring is refused")
            self._keys[jwk["kid"]] = key

    @classmethod
    def from_jwks(cls, path: str | os.PathLike[str]) -> Keyring:
        """Load a JWKS file. Raises KeyringError naming the file and the bad key."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyringError(f"{path}: cannot read keyring ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise KeyringError(f"{path}: keyring is not UTF-8 text") from None
        return cls.from_jwks_text(text, source=str(path))

    @classmethod
    def from_jwks_text(cls, text: str, *, source: str = "<jwks>") -> Keyring:
        """Parse JWKS JSON text. Raises KeyringError."""
        try:
            doc = loads_strict(text)
        except RepeatedMemberError as exc:
            raise KeyringError(f"{source}: keyring has no single reading: {exc}") from None
        except StrictJsonError as exc:
            line = f":{exc.line}" if exc.line is not None else ""
            reason = exc.reason if exc.reason.startswith("not valid JSON") else f"not usable JSON ({exc.reason})"
            raise KeyringError(f"{source}{line}: keyring is {reason}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyringError(f"{source}: a JWKS is an object with a 'keys' array")
        ring = cls()
        for i, jwk in enumerate(doc["keys"]):
            kid, key = _trusted_key(jwk, f"{source}: keys[{i}]")
            ring._keys[kid] = key
        return ring

    def to_jwks(self) -> dict[str, Any]:
        """The keyring as a JWKS document."""
        return {"keys": [public_jwk(k) for k in self._keys.values()]}

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def key_ids(self) -> list[str]:
        return list(self._keys)

    def verify(self, key_id: str, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is ``key_id``'s valid signature of ``data``; KeyError for unknown keys."""
        key = self._keys[key_id]
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def generate_key_files(out_dir: str | os.PathLike[str]) -> tuple[Path, Path, str]:
    """Create ``signing-key.pem`` (mode 0600) and add its public key to ``trusted-keys.jwks.json``.

    An existing keyring keeps its keys (rotation); an existing signing key is kept aside as
    ``signing-key.<kid>.pem``. Returns (private key path, keyring path, key id). Raises KeyringError.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Read what exists before changing anything, so a bad keyring leaves the current signing key in place.
        jwks_path = out / "trusted-keys.jwks.json"
        ring = Keyring.from_jwks(jwks_path) if jwks_path.exists() else Keyring()
        key_path = out / "signing-key.pem"
        old = Ed25519Signer.from_file(key_path) if key_path.exists() else None
        signer = Ed25519Signer.generate()
        if old is not None:
            key_path.rename(out / f"signing-key.{old.key_id}.pem")
        _write_private(key_path, signer.private_pem())
        ring._keys[signer.key_id] = signer.public_key
        tmp = jwks_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ring.to_jwks(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(jwks_path)
    except OSError as exc:
        raise KeyringError(f"{out}: cannot write keys ({exc.strerror})") from None
    return key_path, jwks_path, signer.key_id


def sign_or_raise(signer: Signer, data: bytes) -> bytes:
    """Call ``signer.sign`` and translate any failure into SigningError (without the key material)."""
    try:
        sig = signer.sign(data)
    except SigningError:
        raise
    except Exception as exc:
        raise SigningError(f"signer {signer.key_id!r} failed: {type(exc).__name__}") from exc
    if type(sig) is not bytes or len(sig) != 64:
        raise SigningError(f"signer {signer.key_id!r} returned no 64-byte Ed25519 signature")
    return sig
