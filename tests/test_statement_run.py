"""run_statement, the statement sign_run makes, agrees with BindingStatement's validating constructor."""

from __future__ import annotations

import pytest
from core_fixtures import SPAN_ID, TEST1_KEY_ID, TRACE_ID

from run_identity.errors import ManifestError
from run_identity.statement import BindingStatement, format_timestamp, run_statement

IDENTITY = "sha256:" + "ab" * 32
DECLARED_AT = "2026-11-22T02:07:12.123456Z"


def _fields(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "key_id": TEST1_KEY_ID,
        "declared_at": DECLARED_AT,
    }
    fields.update(changes)
    return fields


def test_equals_the_constructed_statement() -> None:
    """A valid run statement equals the one the constructor builds, with the same signing input."""
    made = run_statement(IDENTITY, **_fields())  # type: ignore[arg-type]
    built = BindingStatement(identity=IDENTITY, **_fields())  # type: ignore[arg-type]
    assert made == built
    assert made.signing_input() == built.signing_input()
    assert made.spec_version == "1"


def test_dated_now_by_default() -> None:
    """Without declared_at the statement is dated now, in the spec's form."""
    made = run_statement(IDENTITY, **_fields(declared_at=None))  # type: ignore[arg-type]
    assert made.declared_at[:4] == format_timestamp()[:4]
    assert made == BindingStatement(identity=IDENTITY, **_fields(declared_at=made.declared_at))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_id", TRACE_ID.upper()),
        ("trace_id", TRACE_ID[:-1]),
        ("trace_id", TRACE_ID[:16] + "/" + TRACE_ID[17:]),
        ("trace_id", "0" * 32),
        ("trace_id", int(TRACE_ID, 16)),
        ("span_id", SPAN_ID + "0"),
        ("span_id", "0" * 16),
        ("span_id", SPAN_ID + "\n"),
        ("key_id", TEST1_KEY_ID[:-1]),
        ("key_id", TEST1_KEY_ID + "="),
        ("key_id", None),
        ("declared_at", "2026-11-22T02:07:12.12345Z"),  # same second as a checked one, five digits
        ("declared_at", "2026-11-22T02:07:12.123456Z\n"),
        ("declared_at", "2026-02-30T02:07:12.123456Z"),
        ("declared_at", "2026-11-22T02:07:12Z"),
        ("declared_at", 12),
    ],
)
def test_malformed_fields_get_the_constructor_error(field: str, value: object) -> None:
    """Every malformed field is refused with exactly the constructor's ManifestError, even after a good call."""
    run_statement(IDENTITY, **_fields())  # type: ignore[arg-type]  # remembers the key id and the second
    with pytest.raises(ManifestError) as expected:
        BindingStatement(identity=IDENTITY, **_fields(**{field: value}))  # type: ignore[arg-type]
    with pytest.raises(ManifestError) as got:
        run_statement(IDENTITY, **_fields(**{field: value}))  # type: ignore[arg-type]
    assert (got.value.path, got.value.reason) == (expected.value.path, expected.value.reason)


def test_a_new_second_is_checked_as_a_calendar_time() -> None:
    """A remembered second does not vouch for another one: 29 February exists only in leap years."""
    assert run_statement(IDENTITY, **_fields(declared_at="2028-02-29T00:00:00.000000Z"))  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="not a real date"):
        run_statement(IDENTITY, **_fields(declared_at="2027-02-29T00:00:00.000000Z"))  # type: ignore[arg-type]
