"""What ``run-identity tlog serve`` appends: the log entry of each manifest record of a submission (spec §15).

A request is taken whole or not at all: the first record that is not a manifest with a well-formed
statement, signed by a producer key the log accepts (and, with a maximum age, declared recently enough),
refuses the request with 400 naming it.
"""

from __future__ import annotations

import datetime
import time
from http import HTTPStatus
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from run_identity.core.attributes import MANIFEST_EVENT_NAME
from run_identity.core.errors import ManifestError
from run_identity.core.keys import Keyring
from run_identity.core.statement import BindingStatement, decode_signature
from run_identity.core.strict_json import StrictJsonError, loads_strict
from run_identity.core.tlog import TlogError, entry_bytes
from run_identity.pipeline.serve._otlp import RequestError, event_of

__all__ = ["MAX_CLOCK_SKEW", "entries_of_request"]

#: Seconds a ``declared_at`` may lie ahead of the log's clock when a maximum age is set.
MAX_CLOCK_SKEW = 300.0


def _declared_seconds(declared_at: str) -> float:
    """POSIX seconds of a valid ``declared_at`` (RFC 3339 UTC, six fractional digits)."""
    moment = datetime.datetime.strptime(declared_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _entry_of(record: Any, keyring: Keyring, max_age: float | None) -> bytes:
    """The log entry of one manifest record. Raises ValueError saying what is wrong."""
    if record.body.WhichOneof("value") != "string_value":
        raise ValueError("the body is not a string holding the manifest JSON")
    try:
        manifest = loads_strict(record.body.string_value)
    except StrictJsonError as exc:
        raise ValueError(f"the manifest is not JSON with one reading: {exc}") from None
    if type(manifest) is not dict or "statement" not in manifest or "signature" not in manifest:
        raise ValueError("the manifest is not an object with 'statement' and 'signature'")
    try:
        statement = BindingStatement.from_json(manifest["statement"])
    except ManifestError as exc:
        raise ValueError(f"malformed statement: {exc}") from None
    signature = decode_signature(manifest["signature"])
    if signature is None:
        raise ValueError("'signature' is not the canonical base64 of 64 bytes")
    for name, value in (("trace_id", record.trace_id), ("span_id", record.span_id)):
        if value and value.hex() != getattr(statement, name):
            raise ValueError(f"the record's {name} is not the statement's")
    if statement.key_id not in keyring:
        raise ValueError(f"key {statement.key_id} is not a producer key this log accepts")
    if not keyring.verify(statement.key_id, signature, statement.signing_input()):
        raise ValueError(f"the signature does not verify under key {statement.key_id}")
    if max_age is not None:
        age = time.time() - _declared_seconds(statement.declared_at)
        if age > max_age:
            raise ValueError(f"declared_at {statement.declared_at} is {age:.0f} s old, more than this log accepts")
        if age < -MAX_CLOCK_SKEW:
            raise ValueError(f"declared_at {statement.declared_at} is {-age:.0f} s in the future")
    return entry_bytes(statement, signature)


def entries_of_request(
    request: ExportLogsServiceRequest, keyring: Keyring, *, max_age: float | None = None
) -> list[bytes]:
    """The entries of every manifest record of a logs request, in order. Raises RequestError (400) naming the
    first bad record: a request is taken whole or not at all. With ``max_age``, a statement declared more than
    that many seconds ago (or more than :data:`MAX_CLOCK_SKEW` ahead) is a bad record."""
    entries = []
    for i, resource_logs in enumerate(request.resource_logs):
        for j, scope_logs in enumerate(resource_logs.scope_logs):
            for k, record in enumerate(scope_logs.log_records):
                if event_of(record) != MANIFEST_EVENT_NAME:
                    continue
                try:
                    entries.append(_entry_of(record, keyring, max_age))
                except (ValueError, TlogError) as exc:
                    where = f"resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]"
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: {exc}") from None
    return entries
