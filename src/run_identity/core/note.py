"""C2SP signed notes, tlog checkpoints and tlog cosignatures, with Ed25519 keys.

- signed-note (c2sp.org/signed-note): text ending in a newline, a blank line, then signature lines
  ``— <name> base64(key id || signature)``. Key id = ``SHA-256(name || 0x0A || type || public key)[:4]``.
  A verifier key (vkey) is ``<name>+<hex key id>+base64(type || public key)``; a signer key (skey) is
  ``PRIVATE+KEY+<name>+<hex key id>+base64(type || 32-byte seed)``, the encoding of Go's
  golang.org/x/mod/sumdb/note, so keys move between implementations.
- tlog-checkpoint (c2sp.org/tlog-checkpoint): origin line, tree size, base64 root hash, extension lines.
- tlog-cosignature (c2sp.org/tlog-cosignature), Ed25519, type 0x04: the signature is ``u64be timestamp ||
  Ed25519(cosignature/v1 NL time <t> NL checkpoint text)``.

Opening a note follows the signed-note rules: signatures from unknown keys are ignored, a signature from a
known key (same name and key id) that fails refuses the whole note, and so does a note with none that verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from run_identity.core.errors import RunIdentityError

__all__ = [
    "MAX_SIGNATURES",
    "TYPE_COSIGNATURE_V1",
    "TYPE_ED25519",
    "Checkpoint",
    "Note",
    "NoteError",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "generate_signer",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]

TYPE_ED25519: Final = 0x01
TYPE_COSIGNATURE_V1: Final = 0x04
MAX_SIGNATURES: Final = 100
"""Most signature lines a note may carry (the spec asks verifiers to accept at least 16)."""

_DASH = "\u2014 "
_ALGORITHMS = {TYPE_ED25519: "Ed25519", TYPE_COSIGNATURE_V1: "Ed25519 cosignature/v1"}
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(RunIdentityError):
    """A note, key, checkpoint or cosignature is malformed or does not verify; the message says what."""


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) and name.isprintable()


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


@dataclass(frozen=True)
class NoteVerifier:
    """A public key that verifies note signatures of one type (0x01 Ed25519, 0x04 cosignature/v1)."""

    name: str
    sig_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise NoteError(f"key name {self.name!r} is empty or holds a space, '+' or a control character")
        if self.sig_type not in _ALGORITHMS:
            raise NoteError(f"key {self.name}: signature type 0x{self.sig_type:02x} is not supported")
        if len(self.public_key) != 32:
            raise NoteError(f"key {self.name}: an Ed25519 public key is 32 bytes, not {len(self.public_key)}")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id of signature lines made with this key."""
        return key_id(self.name, self.sig_type, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex id>+base64(type || key)``. Raises NoteError."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError(f"verifier key {vkey.strip()[:80]!r} is not <name>+<hex key id>+<base64 key>")
        name, id_hex, material = parts
        raw = _b64decode(material, f"verifier key {name!r}")
        if len(raw) < 1:
            raise NoteError(f"verifier key {name!r} has no key material")
        verifier = cls(name, raw[0], raw[1:])
        if not re.fullmatch(r"[0-9a-f]{8}", id_hex) or bytes.fromhex(id_hex) != verifier.key_id:
            raise NoteError(f"verifier key {name!r}: key id {id_hex!r} is not {verifier.key_id.hex()}")
        return verifier

    def vkey(self) -> str:
        """The verifier key text."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verify(self, text: str, signature: bytes) -> int | None:
        """Whether ``signature`` (without the key id) signs ``text``: for a cosignature its timestamp, for a
        plain Ed25519 signature 0; None when it does not verify."""
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        timestamp = 0
        message = text.encode("utf-8")
        if self.sig_type == TYPE_COSIGNATURE_V1:
            if len(signature) != 72:
                return None
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp >= 2**63:
                return None
            message, signature = _cosigned_message(text, timestamp), signature[8:]
        if len(signature) != 64:
            return None
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return None
        return timestamp


class NoteSigner:
    """A private Ed25519 key that signs notes (type 0x01) or cosigns checkpoints (type 0x04); never printed."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey, sig_type: int = TYPE_ED25519) -> None:
        self._key = private_key
        self.verifier = NoteVerifier(name, sig_type, _raw_public(private_key.public_key()))

    @property
    def name(self) -> str:
        return self.verifier.name

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex id>+base64(type || seed)``. Raises NoteError (without the key)."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("signer key is not PRIVATE+KEY+<name>+<hex key id>+<base64 key>")
        name, id_hex, material = parts[2:]
        raw = _b64decode(material, f"signer key {name!r}")
        if len(raw) != 33:
            raise NoteError(f"signer key {name!r}: an Ed25519 seed is 32 bytes")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]), raw[0])
        if id_hex != signer.verifier.key_id.hex():
            raise NoteError(f"signer key {name!r}: key id {id_hex!r} does not match its key")
        return signer

    def skey(self) -> str:
        """The signer key text (secret: write it only to a file of mode 0600)."""
        seed = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        material = base64.b64encode(bytes([self.verifier.sig_type]) + seed).decode("ascii")
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{material}"

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        """The signature line over ``text``; a cosigner needs ``timestamp`` (POSIX seconds, > 0)."""
        if self.verifier.sig_type == TYPE_COSIGNATURE_V1:
            if timestamp is None or not 0 < timestamp < 2**63:
                raise NoteError("a cosignature needs a timestamp between 1 and 2^63 - 1")
            raw = timestamp.to_bytes(8, "big") + self._key.sign(_cosigned_message(text, timestamp))
        else:
            raw = self._key.sign(text.encode("utf-8"))
        return NoteSignature(self.name, self.verifier.key_id, raw)

    def __repr__(self) -> str:
        return f"NoteSigner({self.verifier.vkey()!r})"


def generate_signer(name: str, sig_type: int = TYPE_ED25519) -> NoteSigner:
    """A new random key named ``name``."""
    return NoteSigner(name, Ed25519PrivateKey.generate(), sig_type)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """``— <name> base64(key id || signature)`` followed by a newline."""
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    """A note's text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        """The note as served: text, blank line, signature lines."""
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


def parse_note(data: bytes) -> Note:
    """Split a signed note into text and signature lines, checking the format only. Raises NoteError."""
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the note is not UTF-8") from None
    if any(c < " " and c != "\n" for c in whole):
        raise NoteError("the note holds a control character other than newline")
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line before its signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("the note's signature lines do not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signature lines, more than {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(_DASH):
            raise NoteError(f"signature line {number} does not start with an em dash and a space")
        name, _, encoded = line[len(_DASH) :].rpartition(" ")
        if not _valid_name(name):
            raise NoteError(f"signature line {number}: key name {name!r} is not a valid name")
        raw = _b64decode(encoded, f"signature line {number}")
        if len(raw) < 5:
            raise NoteError(f"signature line {number} is shorter than a key id and a signature")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def sign_note(text: str, signers: Iterable[NoteSigner], *, timestamp: int | None = None) -> Note:
    """A note of ``text`` signed by each signer in order."""
    if not text.endswith("\n") or any(c < " " and c != "\n" for c in text):
        raise NoteError("a note's text must end in a newline and hold no control character but newline")
    return Note(text, tuple(s.sign(text, timestamp=timestamp) for s in signers))


def open_note(data: bytes, verifiers: Sequence[NoteVerifier]) -> tuple[Note, dict[NoteVerifier, int]]:
    """Parse and verify a note: the verifiers whose signature verifies, each with its timestamp (0 for plain
    signatures). Unknown keys are ignored; a known key's bad or repeated signature, or no verified signature,
    raises NoteError."""
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: dict[NoteVerifier, int] = {}
    for number, sig in enumerate(note.signatures, 1):
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if verifier in verified:
            raise NoteError(f"signature line {number}: key {sig.name} signs the note twice")
        timestamp = verifier.verify(note.text, sig.signature)
        if timestamp is None:
            raise NoteError(f"signature line {number}: the signature of key {sig.name} does not verify")
        verified[verifier] = timestamp
    if not verified:
        names = ", ".join(sorted({v.name for v in verifiers})) or "(none)"
        raise NoteError(f"the note carries no valid signature by a trusted key ({names})")
    return note, verified


@dataclass(frozen=True)
class Checkpoint:
    """The note text of a tlog checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("a checkpoint origin must be one non-empty line")
        if self.size < 0:
            raise NoteError(f"checkpoint tree size {self.size} is negative")
        if len(self.root_hash) != 32:
            raise NoteError(f"a checkpoint root hash is 32 bytes, not {len(self.root_hash)}")
        if any(not line or "\n" in line for line in self.extensions):
            raise NoteError("checkpoint extension lines must be non-empty single lines")

    def text(self) -> str:
        """The note text, ending in a newline."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions))

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint's note text. Raises NoteError."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint text does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"a checkpoint has at least three lines, this one {len(lines)}")
        origin, size, root = lines[:3]
        if not _DECIMAL.fullmatch(size):
            raise NoteError(f"checkpoint tree size {size[:40]!r} is not a decimal without leading zeros")
        return cls(origin, int(size), _b64decode(root, "checkpoint root hash"), tuple(lines[3:]))

    @classmethod
    def open(
        cls, data: bytes, log: NoteVerifier, *, origin: str | None = None
    ) -> tuple[Checkpoint, Note, dict[NoteVerifier, int]]:
        """Verify a signed checkpoint against the log's key (and its origin, by default the key name).

        Returns the checkpoint, the note and every verified signature of ``log``. Cosignatures are checked with
        :func:`open_note` and the witnesses' keys. Raises NoteError."""
        note, verified = open_note(data, [log])
        checkpoint = cls.from_text(note.text)
        expected = log.name if origin is None else origin
        if checkpoint.origin != expected:
            raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not the log's {expected!r}")
        return checkpoint, note, verified
