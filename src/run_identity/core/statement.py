"""The binding statement and its signature (docs/spec.md, "Binding statement" and "Signature").

The statement binds an identity to one span of one trace under one key. It is small, canonical (JCS), and
can be rebuilt both from the span's attributes alone and from the manifest alone, so one signature serves
both carriers. The signature is Ed25519 over the DSSE pre-authentication encoding (PAE) of the statement.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from run_identity.core.attributes import (
    RUN_IDENTITY_DECLARED_AT,
    RUN_IDENTITY_ID,
    RUN_IDENTITY_KEY_ID,
    RUN_IDENTITY_SALT_ID,
    RUN_IDENTITY_SIGNATURE,
    RUN_IDENTITY_SPEC_VERSION,
)
from run_identity.core.errors import ManifestError

__all__ = [
    "PAYLOAD_TYPE",
    "SIGNED_FIELD_PATTERNS",
    "TIMESTAMP_PATTERN",
    "BindingStatement",
    "decode_signature",
    "encode_signature",
    "format_timestamp",
    "is_calendar_time",
    "pae",
    "run_statement",
]

PAYLOAD_TYPE = "application/vnd.run-identity.binding.v1+json"
_PAYLOAD_TYPE_BYTES = PAYLOAD_TYPE.encode("ascii")
_PAE_HEAD_TEXT = f"DSSEv1 {len(_PAYLOAD_TYPE_BYTES)} {PAYLOAD_TYPE} "

#: The shapes of the fields a signed statement (binding or receipt) shares, in docs/spec.md's order.
SIGNED_FIELD_PATTERNS = {
    "spec_version": re.compile(r"[0-9]+"),
    "identity": re.compile(r"sha256:[0-9a-f]{64}"),
    "trace_id": re.compile(r"[0-9a-f]{32}"),
    "span_id": re.compile(r"[0-9a-f]{16}"),
    "key_id": re.compile(r"[A-Za-z0-9_-]{43}"),
}
#: An RFC 3339 UTC time with exactly six fractional digits (``declared_at``, a receipt's ``completed_at``).
TIMESTAMP_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_PATTERNS = {**SIGNED_FIELD_PATTERNS, "declared_at": TIMESTAMP_PATTERN}
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_ZERO = {"trace_id": _ZERO_TRACE_ID, "span_id": _ZERO_SPAN_ID}
_SALT_ID = re.compile(r"sha256:[0-9a-f]{64}")


def is_calendar_time(text: str) -> bool:
    """Whether a value of the ``declared_at`` shape names a real instant (docs/spec.md §8): year 0001-9999, a
    day that its month has (proleptic Gregorian), hour 00-23, minute and second 00-59 (no leap second)."""
    try:
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
        hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
    except ValueError:
        return False
    if not (1 <= year <= 9999 and 1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        return False
    return 1 <= day <= calendar.monthrange(year, month)[1]


def pae(payload_type: bytes, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 SP len(type) SP type SP len(body) SP body``."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(body), body)


def format_timestamp(unix_ns: int | None = None) -> str:
    """RFC 3339 UTC with exactly six fractional digits, e.g. ``2026-11-22T02:07:12.123456Z``."""
    ns = time.time_ns() if unix_ns is None else unix_ns
    seconds, micros = divmod(ns // 1000, 1_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{micros:06d}Z"


def encode_signature(signature: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(signature).decode("ascii")


def decode_signature(text: object) -> bytes | None:
    """The 64 signature bytes, or None when ``text`` is not canonical base64 of 64 bytes."""
    if type(text) is not str:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def run_statement(
    identity: str,
    *,
    trace_id: str,
    span_id: str,
    key_id: str,
    declared_at: str | None = None,
    salt_id: str | None = None,
) -> BindingStatement:
    """The statement binding ``identity`` to a span, dated now by default. Raises ManifestError."""
    return BindingStatement(
        identity=identity,
        trace_id=trace_id,
        span_id=span_id,
        key_id=key_id,
        declared_at=format_timestamp() if declared_at is None else declared_at,
        salt_id=salt_id,
    )


@dataclass(frozen=True, slots=True)
class BindingStatement:
    """What the signature covers. Validates its fields on construction (raises ManifestError).

    ``salt_id`` names the blinding salt of the identity's digests, and is present exactly when a salt was
    used: signed with the rest, so no manifest can claim another salt (or one where none was used).
    """

    identity: str
    trace_id: str
    span_id: str
    key_id: str
    declared_at: str
    spec_version: str = "1"
    salt_id: str | None = None

    def __post_init__(self) -> None:
        for name, pattern in _PATTERNS.items():
            value = getattr(self, name)
            if type(value) is not str or not pattern.fullmatch(value):
                raise ManifestError(f"statement.{name}", f"malformed value {value!r}")
            if _ZERO.get(name) == value:
                raise ManifestError(f"statement.{name}", "an all-zero id is not a valid span context")
        if not is_calendar_time(self.declared_at):
            raise ManifestError("statement.declared_at", f"not a real date and time {self.declared_at!r}")
        if self.salt_id is not None and (type(self.salt_id) is not str or not _SALT_ID.fullmatch(self.salt_id)):
            raise ManifestError("statement.salt_id", f"malformed value {self.salt_id!r}")

    def to_json(self) -> dict[str, str]:
        """The statement as a JSON object (the fields of docs/spec.md; ``salt_id`` only when set)."""
        out = {
            "declared_at": self.declared_at,
            "identity": self.identity,
            "key_id": self.key_id,
            "span_id": self.span_id,
            "spec_version": self.spec_version,
            "trace_id": self.trace_id,
        }
        if self.salt_id is not None:
            out["salt_id"] = self.salt_id
        return out

    def canonical(self) -> bytes:
        """JCS bytes of the statement."""
        return self._canonical_text().encode("ascii")

    def _canonical_text(self) -> str:
        # The fields were validated on construction: ASCII letters, digits and ``:_-.`` only, which JCS
        # writes unescaped, so the canonical form is this template with the keys in sorted order
        # (tests/test_statement.py compares it with canonicalize(self.to_json())).
        salt = "" if self.salt_id is None else f'"salt_id":"{self.salt_id}",'
        return (
            f'{{"declared_at":"{self.declared_at}","identity":"{self.identity}","key_id":"{self.key_id}",'
            f'{salt}"span_id":"{self.span_id}","spec_version":"{self.spec_version}","trace_id":"{self.trace_id}"}}'
        )

    def signing_input(self) -> bytes:
        """The exact bytes that are signed: PAE(payload type, JCS(statement))."""
        body = self._canonical_text()  # ASCII: its length in characters is its length in bytes
        return f"{_PAE_HEAD_TEXT}{len(body)} {body}".encode("ascii")

    @classmethod
    def from_json(cls, data: object, *, path: str = "statement") -> BindingStatement:
        """Parse the JSON form; raises ManifestError for missing, unknown or malformed fields."""
        if type(data) is not dict:
            raise ManifestError(path, "expected an object")
        fields = set(_PATTERNS)
        for key in data:
            if key not in fields and key != "salt_id":
                raise ManifestError(f"{path}.{key}", "unknown statement field")
        missing = fields - set(data)
        if missing:
            raise ManifestError(path, f"missing field(s) {', '.join(sorted(missing))}")
        if "salt_id" in data and data["salt_id"] is None:
            raise ManifestError(f"{path}.salt_id", "null (leave the member out when no salt is used)")
        try:
            return cls(**data)
        except ManifestError as exc:
            raise ManifestError(exc.path.replace("statement", path, 1), exc.reason) from None

    def span_attributes(self, signature: bytes | None) -> dict[str, str]:
        """The ``run_identity.*`` span attributes that carry this statement (and its signature, when given)."""
        attributes = {
            RUN_IDENTITY_ID: self.identity,
            RUN_IDENTITY_KEY_ID: self.key_id,
            RUN_IDENTITY_SPEC_VERSION: self.spec_version,
            RUN_IDENTITY_DECLARED_AT: self.declared_at,
        }
        if self.salt_id is not None:
            attributes[RUN_IDENTITY_SALT_ID] = self.salt_id
        if signature is not None:
            attributes[RUN_IDENTITY_SIGNATURE] = encode_signature(signature)
        return attributes

    @classmethod
    def from_span(cls, attributes: Mapping[str, Any], trace_id: str, span_id: str) -> BindingStatement:
        """Rebuild the statement from a span's attributes and ids alone; raises ManifestError."""
        try:
            return cls(
                identity=attributes[RUN_IDENTITY_ID],
                trace_id=trace_id,
                span_id=span_id,
                key_id=attributes[RUN_IDENTITY_KEY_ID],
                declared_at=attributes[RUN_IDENTITY_DECLARED_AT],
                spec_version=attributes[RUN_IDENTITY_SPEC_VERSION],
                salt_id=attributes.get(RUN_IDENTITY_SALT_ID),
            )
        except KeyError as exc:
            raise ManifestError(f"span.attributes[{exc.args[0]!r}]", "missing") from None
