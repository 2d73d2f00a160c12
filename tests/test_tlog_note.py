"""run_identity.core.note against the C2SP specification's example notes, the Go reference package's example key and
note (golang.org/x/mod/sumdb/note), and a second note verifier written in this file from the C2SP text alone."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from run_identity.core.note import (
    TYPE_COSIGNATURE_V1,
    TYPE_ED25519,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    generate_signer,
    open_note,
    parse_note,
    sign_note,
)

# c2sp.org/signed-note, "Verifier keys", example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()
# c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature examples (their keys are not published: format only).
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
).encode()
# The Go reference implementation's documented example (golang.org/x/mod/sumdb/note).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()


def independent_open(note: bytes, vkey: str) -> tuple[str, int | None]:
    """A second verifier, from the C2SP signed-note and tlog-cosignature text only: the verified text and, for a
    cosignature (type 0x04), its timestamp. Raises ValueError."""
    name, hex_id, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    sig_type, public = raw[0], raw[1:]
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4] != bytes.fromhex(hex_id):
        raise ValueError("key id")
    whole = note.decode("utf-8")
    text, _, signatures = whole.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        dash, key_name, b64 = line.split(" ")
        blob = base64.b64decode(b64)
        if dash != "\u2014" or key_name != name or blob[:4] != bytes.fromhex(hex_id):
            continue
        signed, timestamp = text.encode(), None
        signature = blob[4:]
        if sig_type == 0x04:
            timestamp = int.from_bytes(signature[:8], "big")
            signed = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + signed
            signature = signature[8:]
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, signed)
        except InvalidSignature:
            raise ValueError("bad signature") from None
        return text, timestamp
    raise ValueError("no signature by the key")


def test_the_c2sp_example_note_verifies() -> None:
    """The signed-note specification's example vkey verifies its example note."""
    verifier = NoteVerifier.from_vkey(C2SP_VKEY)
    assert (verifier.name, verifier.key_id.hex(), verifier.sig_type) == ("example.com/foo", "530d903a", TYPE_ED25519)
    assert verifier.vkey() == C2SP_VKEY
    note, verified = open_note(C2SP_NOTE, [verifier])
    assert note.text == "This is an example message.\n"
    assert verified == {verifier: 0}
    assert note.to_bytes() == C2SP_NOTE
    assert independent_open(C2SP_NOTE, C2SP_VKEY)[0] == note.text


def test_the_go_reference_key_signs_the_reference_note_byte_for_byte() -> None:
    """The Go package's example signer key gives its vkey, and signing its text reproduces its note exactly."""
    signer = NoteSigner.from_skey(GO_SKEY)
    assert signer.skey() == GO_SKEY
    assert signer.verifier.vkey() == GO_VKEY
    assert sign_note(GO_TEXT, [signer]).to_bytes() == GO_NOTE
    open_note(GO_NOTE, [NoteVerifier.from_vkey(GO_VKEY)])
    assert "AYEKFALV" not in repr(signer)


def test_notes_signed_here_verify_independently() -> None:
    """A checkpoint signed here, and a cosignature on it, verify with the verifier written from the spec."""
    log = generate_signer("log.example/runs")
    witness = generate_signer("witness.example/w1", TYPE_COSIGNATURE_V1)
    checkpoint = Checkpoint("log.example/runs", 7, hashlib.sha256(b"root").digest())
    note = sign_note(checkpoint.text(), [log])
    now = int(time.time())
    cosigned = type(note)(note.text, (*note.signatures, witness.sign(note.text, timestamp=now)))
    data = cosigned.to_bytes()
    assert independent_open(data, log.verifier.vkey()) == (checkpoint.text(), None)
    assert independent_open(data, witness.verifier.vkey()) == (checkpoint.text(), now)
    opened, _, verified = Checkpoint.open(data, log.verifier)
    assert opened == checkpoint and list(verified) == [log.verifier]
    _, cosigners = open_note(data, [witness.verifier])
    assert cosigners == {witness.verifier: now}


def test_the_c2sp_checkpoint_example_parses() -> None:
    """The tlog-checkpoint example parses into origin, size and root; its cosignature line is a 72-byte signature."""
    note = parse_note(C2SP_CHECKPOINT)
    checkpoint = Checkpoint.from_text(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert base64.b64encode(checkpoint.root_hash).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert checkpoint.text() == note.text
    assert [len(s.signature) for s in note.signatures] == [64, 72]
    assert int.from_bytes(note.signatures[1].signature[:8], "big") == 1679315147  # the spec's "time 1679315147"
    assert note.to_bytes() == C2SP_CHECKPOINT


def test_unknown_keys_are_ignored_and_a_known_bad_signature_refuses_the_note() -> None:
    """Signatures of unknown keys are ignored; a known key's bad one, or no known one, refuses the note."""
    verifier = NoteVerifier.from_vkey(C2SP_VKEY)
    other = generate_signer("example.com/foo")  # same name, other key id: unknown
    note = parse_note(C2SP_NOTE)
    extra = type(note)(note.text, (other.sign(note.text), *note.signatures))
    open_note(extra.to_bytes(), [verifier])
    tampered = C2SP_NOTE.replace(b"example message", b"example massage")
    with pytest.raises(NoteError, match="does not verify"):
        open_note(tampered, [verifier])
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(C2SP_NOTE, [other.verifier])
    twice = type(note)(note.text, note.signatures * 2)
    with pytest.raises(NoteError, match="twice"):
        open_note(twice.to_bytes(), [verifier])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("no blank line\n\u2014 a AAAA\n".encode(), "blank line"),
        ("text\n\n\u2014 a AAAAAAAA".encode(), "newline"),
        (b"text\n\n- a AAAAAAAA\n", "em dash"),
        ("text\n\n\u2014 a+b AAAAAAAA\n".encode(), "valid name"),
        ("text\n\n\u2014 a AAAA\n".encode(), "shorter"),
        ("text\n\n\u2014 a AAAAAAAAA\n".encode(), "base64"),
        ("te\x01xt\n\n\u2014 a AAAAAAAA\n".encode(), "control"),
        (b"\xff\n\n", "UTF-8"),
    ],
)
def test_malformed_notes_are_refused(data: bytes, message: str) -> None:
    """Each way a note can break the format is refused with an error saying which."""
    with pytest.raises(NoteError, match=message):
        parse_note(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("origin\n7\n", "three lines"),
        ("origin\n07\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "leading zeros"),
        ("origin\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2=\n", "base64"),
        ("origin\n7\nAAAA\n", "32 bytes"),
        ("\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "origin"),
        ("origin\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n", "extension"),
        ("origin\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", "newline"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, message: str) -> None:
    """A checkpoint text with a missing line, a bad size or root, or an empty extension line is refused."""
    with pytest.raises(NoteError, match=message):
        Checkpoint.from_text(text)


def test_checkpoint_origin_must_be_the_logs() -> None:
    """A checkpoint signed by the log's key but naming another origin is refused."""
    log = generate_signer("log.example/runs")
    data = sign_note(Checkpoint("log.example/other", 0, hashlib.sha256(b"").digest()).text(), [log]).to_bytes()
    with pytest.raises(NoteError, match="origin"):
        Checkpoint.open(data, log.verifier)
    Checkpoint.open(data, log.verifier, origin="log.example/other")


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # short
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # from the Go tests
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    """A vkey with a wrong id, length, algorithm or name is refused."""
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(vkey)


def test_bad_signer_keys_are_refused_without_showing_the_key() -> None:
    """A mangled skey is refused, and the error never repeats the secret key material."""
    for bad in (GO_SKEY.replace("c74f20a3", "c74f20a4"), GO_SKEY[:-2], GO_SKEY.replace("PRIVATE+", "")):
        with pytest.raises(NoteError) as info:
            NoteSigner.from_skey(bad)
        assert "AYEKFALV" not in str(info.value)


def test_cosignatures_need_a_timestamp() -> None:
    """A cosigner refuses to sign without a timestamp; a plain Ed25519 key signs without one."""
    witness = generate_signer("w", TYPE_COSIGNATURE_V1)
    with pytest.raises(NoteError, match="timestamp"):
        witness.sign("a\n")
    assert len(witness.sign("a\n", timestamp=1).signature) == 72
