"""Run receipts (docs/spec.md §10.4): a signed statement binding a run's output to its identity and span.

When a captured call finishes, the client integrations build the run's *output* (the output messages in the
shape of the OpenTelemetry GenAI output messages), digest it, and sign a receipt statement: the identity,
the span, the output digest, the resolved model, the provider's fingerprint, the finish reasons and the
response id. The receipt travels with the output (:func:`receipt_of`, :meth:`Receipt.to_json`) and is
exported as a ``run_identity.receipt`` log record next to the manifest. :func:`verify_receipt` lets anyone
holding the receipt, the output and a keyring check which declared composition produced that output.

This module imports nothing from the SDK side, so a verifier can use it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from run_identity.core.canonical import canonicalize
from run_identity.core.errors import ManifestError, VerificationError
from run_identity.core.keys import Keyring, Signer, sign_or_raise
from run_identity.core.statement import (
    SIGNED_FIELD_PATTERNS,
    TIMESTAMP_PATTERN,
    BindingStatement,
    decode_signature,
    encode_signature,
    format_timestamp,
    is_calendar_time,
    pae,
)
from run_identity.core.strict_json import StrictJsonError, loads_strict

__all__ = [
    "RECEIPT_PAYLOAD_TYPE",
    "Receipt",
    "ReceiptStatement",
    "attach_receipt",
    "model_resolution",
    "output_digest",
    "receipt_of",
    "sign_receipt",
    "verify_receipt",
]

RECEIPT_PAYLOAD_TYPE = "application/vnd.run-identity.receipt.v1+json"
_PAYLOAD_TYPE_BYTES = RECEIPT_PAYLOAD_TYPE.encode("ascii")
_OUTPUT_PREFIX = b"run-identity/v1/output\x00"

_PATTERNS = {
    **SIGNED_FIELD_PATTERNS,
    "output_digest": SIGNED_FIELD_PATTERNS["identity"],
    "completed_at": TIMESTAMP_PATTERN,
}
_OPTIONAL = ("request_model", "response_model", "response_id", "system_fingerprint", "salt_id")
_ZERO = {"trace_id": "0" * 32, "span_id": "0" * 16}
# A model name the provider resolved an alias to: the requested name (without a trailing "-latest")
# followed by a dated or numbered snapshot suffix: gpt-4o-mini -> gpt-4o-mini-2024-07-18,
# claude-3-5-sonnet-latest -> claude-3-5-sonnet-20241022, gpt-4 -> gpt-4-0613.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}|[0-9]{4})")


def output_digest(output: Any, salt: bytes = b"") -> str:
    """Digest of a run's output (the array of output messages): spec §10.4.

    ``sha256("run-identity/v1/output" 0x00 u32be(len(salt)) salt JCS(output))``. Raises
    CanonicalizationError naming the path for output that has no canonical form.
    """
    body = canonicalize(output, "output")
    return "sha256:" + hashlib.sha256(_OUTPUT_PREFIX + len(salt).to_bytes(4, "big") + salt + body).hexdigest()


def model_resolution(requested: str | None, resolved: str | None) -> str:
    """``same``, ``resolved`` (an alias resolved to its snapshot), ``substituted``, or ``unknown``."""
    if requested is None or resolved is None:
        return "unknown"
    if resolved == requested:
        return "same"
    base = requested[: -len("-latest")] if requested.endswith("-latest") else requested
    if resolved.startswith(base) and _SNAPSHOT_SUFFIX.fullmatch(resolved[len(base) :]):
        return "resolved"
    return "substituted"


@dataclass(frozen=True)
class ReceiptStatement:
    """What a receipt's signature covers. Validates its fields on construction (raises ManifestError)."""

    identity: str
    trace_id: str
    span_id: str
    key_id: str
    output_digest: str
    finish_reasons: tuple[str, ...]
    completed_at: str
    request_model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    system_fingerprint: str | None = None
    salt_id: str | None = None
    spec_version: str = "1"

    def __post_init__(self) -> None:
        for name, pattern in _PATTERNS.items():
            value = getattr(self, name)
            if type(value) is not str or not pattern.fullmatch(value):
                raise ManifestError(f"receipt.{name}", f"malformed value {value!r}")
            if _ZERO.get(name) == value:
                raise ManifestError(f"receipt.{name}", "an all-zero id is not a valid span context")
        if not is_calendar_time(self.completed_at):
            raise ManifestError("receipt.completed_at", f"not a real date and time {self.completed_at!r}")
        if type(self.finish_reasons) is not tuple or not all(type(r) is str for r in self.finish_reasons):
            raise ManifestError("receipt.finish_reasons", "expected an array of strings")
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                raise ManifestError(f"receipt.{name}", f"expected a string, got {type(value).__name__}")
        if self.salt_id is not None and not _PATTERNS["identity"].fullmatch(self.salt_id):
            raise ManifestError("receipt.salt_id", f"malformed value {self.salt_id!r}")

    def to_json(self) -> dict[str, Any]:
        """The statement as a JSON object; optional members absent when unknown."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _PATTERNS}
        out["finish_reasons"] = list(self.finish_reasons)
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def canonical(self) -> bytes:
        """JCS bytes of the statement."""
        return canonicalize(self.to_json(), "receipt")

    def signing_input(self) -> bytes:
        """PAE(receipt payload type, JCS(statement)): the bytes that are signed."""
        return pae(_PAYLOAD_TYPE_BYTES, self.canonical())

    @classmethod
    def from_json(cls, data: object, *, path: str = "receipt") -> ReceiptStatement:
        """Parse the JSON form; raises ManifestError for missing, unknown or malformed members."""
        if type(data) is not dict:
            raise ManifestError(path, "expected an object")
        known = {*_PATTERNS, "finish_reasons", *_OPTIONAL}
        for key in data:
            if key not in known:
                raise ManifestError(f"{path}.{key}", "unknown receipt member")
        missing = {*_PATTERNS, "finish_reasons"} - set(data)
        if missing:
            raise ManifestError(path, f"missing member(s) {', '.join(sorted(missing))}")
        reasons = data["finish_reasons"]
        if type(reasons) is not list:
            raise ManifestError(f"{path}.finish_reasons", "expected an array of strings")
        try:
            return cls(**{**data, "finish_reasons": tuple(reasons)})
        except ManifestError as exc:
            raise ManifestError(exc.path.replace("receipt", path, 1), exc.reason) from None


@dataclass(frozen=True)
class Receipt:
    """A signed receipt statement, and the output it covers when carried along (``output``)."""

    statement: ReceiptStatement
    signature: bytes
    output: Any = field(default=None, compare=False)

    @property
    def identity(self) -> str:
        return self.statement.identity

    def to_json(self, *, with_output: bool = True) -> dict[str, Any]:
        """``{"receipt": statement, "signature": base64, "output"?: output messages}``."""
        doc: dict[str, Any] = {"receipt": self.statement.to_json(), "signature": encode_signature(self.signature)}
        if with_output and self.output is not None:
            doc["output"] = self.output
        return doc

    def to_json_bytes(self, *, with_output: bool = True) -> bytes:
        """The canonical JSON form (the body of the ``run_identity.receipt`` log record)."""
        return canonicalize(self.to_json(with_output=with_output))

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Receipt:
        """Parse the JSON form (bytes, text or a parsed object). Raises ManifestError."""
        if isinstance(data, (bytes, bytearray, memoryview, str)):
            try:
                doc = loads_strict(data, doubles=True)
            except StrictJsonError as exc:
                where = f" (line {exc.line} column {exc.column})" if exc.line is not None else ""
                raise ManifestError(exc.path, exc.reason + where) from None
        else:
            doc = data
        if not isinstance(doc, Mapping):
            raise ManifestError("", "a receipt is a JSON object")
        for key in doc:
            if key not in ("receipt", "signature", "output"):
                raise ManifestError(str(key), "unknown receipt field")
        statement = ReceiptStatement.from_json(doc.get("receipt"))
        signature = decode_signature(doc.get("signature"))
        if signature is None:
            raise ManifestError("signature", "expected standard base64 of a 64-byte Ed25519 signature")
        return cls(statement, signature, doc.get("output"))

    def binds(self, statement: BindingStatement) -> bool:
        """Whether this receipt names the run of the binding statement (identity, trace id, span id)."""
        s = self.statement
        return (s.identity, s.trace_id, s.span_id) == (statement.identity, statement.trace_id, statement.span_id)


def sign_receipt(
    signer: Signer,
    *,
    identity: str,
    trace_id: str,
    span_id: str,
    output: Sequence[Any],
    finish_reasons: Sequence[str],
    request_model: str | None = None,
    response_model: str | None = None,
    response_id: str | None = None,
    system_fingerprint: str | None = None,
    salt: bytes = b"",
    completed_at: str | None = None,
) -> Receipt:
    """Digest ``output``, build the receipt statement and sign it; the receipt carries the output.

    Raises CanonicalizationError for output without a canonical form, ManifestError for malformed ids,
    SigningError when the signer fails.
    """
    from run_identity.core.digest import salt_id  # the digest module pulls in the composition schema

    statement = ReceiptStatement(
        identity=identity,
        trace_id=trace_id,
        span_id=span_id,
        key_id=signer.key_id,
        output_digest=output_digest(output, salt),
        finish_reasons=tuple(finish_reasons),
        completed_at=completed_at if completed_at is not None else format_timestamp(),
        request_model=request_model,
        response_model=response_model,
        response_id=response_id,
        system_fingerprint=system_fingerprint,
        salt_id=salt_id(salt),
    )
    return Receipt(statement, sign_or_raise(signer, statement.signing_input()), list(output))


def verify_receipt(
    receipt: Receipt,
    keyring: Keyring,
    *,
    output: Any = None,
    salt: bytes = b"",
    statement: BindingStatement | None = None,
) -> None:
    """Check a receipt; returns nothing or raises VerificationError with a result code (spec §13).

    1. The signing key is in ``keyring`` (``unknown_key``) and the signature verifies (``bad_signature``).
    2. ``output`` (default: the output the receipt carries, if any) digests to the signed output digest
       (``identity_mismatch``), with the deployment's ``salt`` when the receipt names one.
    3. With ``statement`` (a run's binding statement, e.g. ``Manifest.statement``), the receipt names the
       same identity, trace id and span id (``binding_mismatch``).
    """
    s = receipt.statement
    if s.key_id not in keyring:
        raise VerificationError("unknown_key", f"the receipt is signed by key {s.key_id}, not in the keyring")
    if not keyring.verify(s.key_id, receipt.signature, s.signing_input()):
        raise VerificationError("bad_signature", "the receipt's signature does not verify over its statement")
    checked = receipt.output if output is None else output
    if checked is not None:
        if (s.salt_id is None) != (not salt):
            raise VerificationError(
                "identity_mismatch", f"the receipt's output digest is blinded with salt {s.salt_id}, not given"
            )
        found = output_digest(checked, salt)
        if found != s.output_digest:
            raise VerificationError(
                "identity_mismatch", f"the output digests to {found}, the receipt signed {s.output_digest}"
            )
    if statement is not None and not receipt.binds(statement):
        raise VerificationError(
            "binding_mismatch",
            f"the receipt names run {s.identity} at {s.trace_id}/{s.span_id}, not "
            f"{statement.identity} at {statement.trace_id}/{statement.span_id}",
        )


# Receipts of returned objects, by id; an entry leaves with its object. Pydantic models are not hashable
# (no WeakKeyDictionary) and setting an attribute on them could leak into their serialization.
_RECEIPTS: dict[int, Receipt] = {}
_LOCK = threading.Lock()


def _forget(key: int) -> None:
    with _LOCK:
        _RECEIPTS.pop(key, None)


def attach_receipt(obj: object, receipt: Receipt) -> None:
    """Make ``receipt`` retrievable with :func:`receipt_of(obj) <receipt_of>` while ``obj`` lives."""
    key = id(obj)
    try:
        weakref.finalize(obj, _forget, key)
    except TypeError:  # not weak-referenceable: nothing can tell when it goes, so keep nothing
        return
    with _LOCK:
        _RECEIPTS[key] = receipt


def receipt_of(obj: object) -> Receipt | None:
    """The receipt of a response (or of a fully consumed stream) returned by a captured call, if any."""
    with _LOCK:
        return _RECEIPTS.get(id(obj))
