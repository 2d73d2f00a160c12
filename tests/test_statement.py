"""Tests of run_identity.core.statement: the binding statement, its PAE signing input, carriers, signature text."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from core_fixtures import DECLARED_AT, SPAN_ID, TEST1_KEY_ID, TEST1_PUBLIC, TRACE_ID, signer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from run_identity.core.attributes import (
    RUN_IDENTITY_DECLARED_AT,
    RUN_IDENTITY_ID,
    RUN_IDENTITY_KEY_ID,
    RUN_IDENTITY_SIGNATURE,
    RUN_IDENTITY_SPEC_VERSION,
)
from run_identity.core.canonical import canonicalize
from run_identity.core.errors import ManifestError
from run_identity.core.statement import (
    PAYLOAD_TYPE,
    BindingStatement,
    decode_signature,
    encode_signature,
    format_timestamp,
    pae,
)

IDENTITY = "sha256:" + "0123456789abcdef" * 4
STATEMENT_JCS = (
    b'{"declared_at":"2026-11-22T02:07:12.123456Z",'
    b'"identity":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",'
    b'"key_id":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",'
    b'"span_id":"00f067aa0ba902b7",'
    b'"spec_version":"1",'
    b'"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}'
)
SIGNING_INPUT = b"DSSEv1 44 application/vnd.run-identity.binding.v1+json 279 " + STATEMENT_JCS
# Ed25519 (RFC 8032 TEST 1 key) over SIGNING_INPUT.
SIGNATURE_B64 = "wY13MwgxBOU5kWFG8ESe9Y4/Wlm/vtJJnQTHUq69hlIZvnVIcg7nO6XAObmiHH5KoDUQzo9ZkGn+a3WGHlO0Cw=="


def _statement(**changes: Any) -> BindingStatement:
    fields: dict[str, Any] = {
        "identity": IDENTITY,
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "key_id": TEST1_KEY_ID,
        "declared_at": DECLARED_AT,
    }
    fields.update(changes)
    return BindingStatement(**fields)


# -- known answers ---------------------------------------------------------------------------------


def test_pae_matches_dsse_specification_example() -> None:
    """pae() gives the example of the DSSE v1 protocol description."""
    assert pae(b"http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_of_empty_inputs() -> None:
    """Lengths are decimal without leading zeros; empty type and body still get their separators."""
    assert pae(b"", b"") == b"DSSEv1 0  0 "


def test_statement_canonical_bytes() -> None:
    """The statement's JCS is its six members, sorted, no whitespace."""
    assert _statement().canonical() == STATEMENT_JCS
    assert canonicalize(_statement().to_json()) == STATEMENT_JCS


def test_statement_signing_input_bytes() -> None:
    """The signing input is PAE(payload type, JCS(statement)), byte for byte."""
    assert PAYLOAD_TYPE == "application/vnd.run-identity.binding.v1+json"
    assert _statement().signing_input() == SIGNING_INPUT
    assert _statement().signing_input() == pae(PAYLOAD_TYPE.encode(), STATEMENT_JCS)


def test_statement_signature_known_answer() -> None:
    """The TEST 1 key signs the statement to a fixed signature that the raw public key verifies."""
    sig = signer().sign(_statement().signing_input())
    assert encode_signature(sig) == SIGNATURE_B64
    Ed25519PublicKey.from_public_bytes(TEST1_PUBLIC).verify(base64.b64decode(SIGNATURE_B64), SIGNING_INPUT)


def test_spec_version_defaults_to_1() -> None:
    """A statement made without a spec version is version 1."""
    assert _statement().spec_version == "1"


# -- carriers --------------------------------------------------------------------------------------


def test_span_attributes_carry_every_member() -> None:
    """The span attributes hold identity, key id, spec version, declaration time and the base64 signature."""
    sig = base64.b64decode(SIGNATURE_B64)
    assert _statement().span_attributes(sig) == {
        RUN_IDENTITY_ID: IDENTITY,
        RUN_IDENTITY_SIGNATURE: SIGNATURE_B64,
        RUN_IDENTITY_KEY_ID: TEST1_KEY_ID,
        RUN_IDENTITY_SPEC_VERSION: "1",
        RUN_IDENTITY_DECLARED_AT: DECLARED_AT,
    }


def test_from_span_rebuilds_the_statement() -> None:
    """The statement rebuilt from span attributes and ids equals the original and signs the same bytes."""
    original = _statement()
    attrs = original.span_attributes(base64.b64decode(SIGNATURE_B64))
    rebuilt = BindingStatement.from_span(attrs, TRACE_ID, SPAN_ID)
    assert rebuilt == original
    assert rebuilt.signing_input() == SIGNING_INPUT
    assert decode_signature(attrs[RUN_IDENTITY_SIGNATURE]) == base64.b64decode(SIGNATURE_B64)


@pytest.mark.parametrize(
    "missing", [RUN_IDENTITY_ID, RUN_IDENTITY_KEY_ID, RUN_IDENTITY_DECLARED_AT, RUN_IDENTITY_SPEC_VERSION]
)
def test_from_span_missing_attribute(missing: str) -> None:
    """A span lacking one statement attribute is a ManifestError naming that attribute."""
    attrs = _statement().span_attributes(bytes(64))
    del attrs[missing]
    with pytest.raises(ManifestError) as info:
        BindingStatement.from_span(attrs, TRACE_ID, SPAN_ID)
    assert info.value.path == f"span.attributes[{missing!r}]"


def test_from_span_other_span_is_a_different_statement() -> None:
    """The same attributes on another span rebuild a statement with different signing bytes."""
    attrs = _statement().span_attributes(bytes(64))
    other = BindingStatement.from_span(attrs, TRACE_ID, "00f067aa0ba902b8")
    assert other.signing_input() != SIGNING_INPUT


def test_json_round_trip() -> None:
    """from_json(JCS bytes parsed) gives back the statement."""
    assert BindingStatement.from_json(orjson.loads(STATEMENT_JCS)) == _statement()


@given(
    identity=st.binary(min_size=32, max_size=32),
    trace=st.binary(min_size=16, max_size=16).filter(any),
    span=st.binary(min_size=8, max_size=8).filter(any),
    micros=st.integers(min_value=0, max_value=253402300799999999),
)
def test_round_trips_hold_for_any_valid_statement(identity: bytes, trace: bytes, span: bytes, micros: int) -> None:
    """For any valid ids and time, JSON and span carriers rebuild the same statement."""
    s = _statement(
        identity="sha256:" + identity.hex(),
        trace_id=trace.hex(),
        span_id=span.hex(),
        declared_at=format_timestamp(micros * 1000),
    )
    assert BindingStatement.from_json(orjson.loads(s.canonical())) == s
    assert BindingStatement.from_span(s.span_attributes(bytes(64)), trace.hex(), span.hex()) == s
    assert s.signing_input() == pae(PAYLOAD_TYPE.encode(), canonicalize(s.to_json()))


def test_from_json_unknown_member() -> None:
    """An unknown statement member is refused, naming it."""
    data = {**_statement().to_json(), "extra": "x"}
    with pytest.raises(ManifestError) as info:
        BindingStatement.from_json(data)
    assert info.value.path == "statement.extra"


def test_from_json_missing_member() -> None:
    """A missing statement member is refused, naming it."""
    data = _statement().to_json()
    del data["span_id"]
    with pytest.raises(ManifestError, match=r"missing field.*span_id") as info:
        BindingStatement.from_json(data)
    assert info.value.path == "statement"


def test_from_json_not_an_object() -> None:
    """A statement that is not an object is refused."""
    with pytest.raises(ManifestError, match="expected an object"):
        BindingStatement.from_json([])


def test_from_json_reports_paths_under_the_given_prefix() -> None:
    """Errors name the path given by the caller (e.g. where the statement sits in a log record)."""
    data = {**_statement().to_json(), "trace_id": "xyz"}
    with pytest.raises(ManifestError) as info:
        BindingStatement.from_json(data, path="body.statement")
    assert info.value.path == "body.statement.trace_id"


# -- malformed fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("identity", "sha256:" + "0123456789ABCDEF" * 4),  # uppercase hex
        ("identity", "sha256:" + "0" * 63),  # short
        ("identity", "sha512:" + "0" * 64),  # other algorithm
        ("identity", "0123456789abcdef" * 4),  # no prefix
        ("identity", "sha256:" + "g" * 64),  # not hex
        ("trace_id", TRACE_ID.upper()),
        ("trace_id", TRACE_ID[:-1]),
        ("trace_id", TRACE_ID + "0"),
        ("trace_id", "0" * 32),  # invalid span context
        ("trace_id", 0x4BF92F3577B34DA6A3CE929D0E0E4736),  # an int, as the OTel API holds it
        ("span_id", SPAN_ID.upper()),
        ("span_id", "0" * 16),
        ("span_id", " " + SPAN_ID[1:]),
        ("key_id", TEST1_KEY_ID[:-1]),
        ("key_id", TEST1_KEY_ID + "="),
        ("key_id", TEST1_KEY_ID.replace("_", "/")),
        ("spec_version", ""),
        ("spec_version", "v1"),
        ("spec_version", 1),
        ("declared_at", "2026-11-22T02:07:12Z"),  # no fraction
        ("declared_at", "2026-11-22T02:07:12.123Z"),  # three digits
        ("declared_at", "2026-11-22T02:07:12.123456+00:00"),  # offset instead of Z
        ("declared_at", "2026-11-22 02:07:12.123456Z"),  # space
        ("declared_at", "2026-11-22T02:07:12.123456z"),  # lowercase z
        ("declared_at", "2026-13-22T02:07:12.123456Z"),  # month 13
        ("declared_at", "2026-02-30T02:07:12.123456Z"),  # no such day
        ("declared_at", "2026-11-22T24:07:12.123456Z"),  # hour 24
        ("declared_at", "2026-11-22T02:60:12.123456Z"),  # minute 60
        ("declared_at", "2026-11-22T02:07:61.123456Z"),  # second 61
        ("declared_at", "2026-11-22T02:07:12.123456Z\n"),  # trailing newline
        ("declared_at", None),
    ],
)
def test_malformed_field_rejected(field: str, value: object) -> None:
    """A malformed statement member is a ManifestError naming statement.<member>."""
    with pytest.raises(ManifestError) as info:
        _statement(**{field: value})
    assert info.value.path == f"statement.{field}"


def test_leap_day_accepted() -> None:
    """A real calendar date (29 February of a leap year) is accepted."""
    assert _statement(declared_at="2028-02-29T23:59:59.999999Z").declared_at.startswith("2028-02-29")


def test_all_zero_ids_are_named_as_such() -> None:
    """All-zero trace and span ids are refused as an invalid span context, not as a format error."""
    with pytest.raises(ManifestError, match="all-zero"):
        _statement(trace_id="0" * 32)
    with pytest.raises(ManifestError, match="all-zero"):
        _statement(span_id="0" * 16)


def test_format_timestamp_known_values() -> None:
    """Timestamps are RFC 3339 UTC with exactly six fractional digits, truncated (not rounded)."""
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"
    assert format_timestamp(999) == "1970-01-01T00:00:00.000000Z"


def test_format_timestamp_now_is_valid() -> None:
    """The current time formats to a value the statement accepts."""
    assert _statement(declared_at=format_timestamp()).declared_at.endswith("Z")


# -- signature text --------------------------------------------------------------------------------


def test_encode_signature_is_padded_standard_base64() -> None:
    """Signatures are written as 88 characters of standard base64 with padding."""
    text = encode_signature(bytes(range(64)))
    assert len(text) == 88 and text.endswith("==")
    assert decode_signature(text) == bytes(range(64))


_SIG = base64.b64decode(SIGNATURE_B64)


@pytest.mark.parametrize(
    "text",
    [
        SIGNATURE_B64.rstrip("="),  # missing padding
        SIGNATURE_B64 + "=",  # superfluous padding
        SIGNATURE_B64.replace("/", "_").replace("+", "-"),  # base64url alphabet
        SIGNATURE_B64[:40] + "\n" + SIGNATURE_B64[40:],  # line break
        " " + SIGNATURE_B64,  # whitespace
        SIGNATURE_B64[:85] + "x==",  # non-zero trailing bits: "x" encodes the same last byte as "w"
        encode_signature(_SIG[:63]),  # truncated
        encode_signature(_SIG + b"\x00"),  # too long
        "",
        SIGNATURE_B64.encode(),  # bytes, not text
        None,
        64,
    ],
)
def test_decode_signature_is_strict(text: object) -> None:
    """Anything but the canonical base64 of exactly 64 bytes decodes to None."""
    assert decode_signature(text) is None


def test_decode_signature_accepts_canonical_form() -> None:
    """The canonical base64 of a 64-byte signature decodes to those bytes."""
    assert decode_signature(SIGNATURE_B64) == _SIG


_GOOD_STATEMENT = {
    "declared_at": DECLARED_AT,
    "identity": "sha256:" + "ab" * 32,
    "key_id": TEST1_KEY_ID,
    "span_id": SPAN_ID,
    "spec_version": "1",
    "trace_id": TRACE_ID,
}
_ODD_VALUES = st.sampled_from(
    ["", "0" * 32, "0" * 16, "2026-02-30T00:00:00.000000Z", "2026-11-22T02:07:12.12345Z", "sha256:" + "AB" * 32,
     "2", "x" * 43, TRACE_ID.upper(), "1 ", "é"]
)  # fmt: skip


def test_a_salted_statement_signs_its_salt_id() -> None:
    """A salted statement carries salt_id in its canonical bytes (sorted between key_id and span_id), so a
    manifest or span naming another salt no longer matches the signature."""
    salted = BindingStatement(**_GOOD_STATEMENT, salt_id="sha256:" + "cd" * 32)
    assert salted.canonical() == canonicalize(salted.to_json())
    assert b'"salt_id":"sha256:' in salted.canonical()
    assert salted.signing_input() != BindingStatement(**_GOOD_STATEMENT).signing_input()
    assert BindingStatement.from_json(salted.to_json()) == salted
    with pytest.raises(ManifestError, match="salt_id"):
        BindingStatement.from_json({**_GOOD_STATEMENT, "salt_id": None})
    with pytest.raises(ManifestError, match="salt_id"):
        BindingStatement(**_GOOD_STATEMENT, salt_id="sha256:AB")
