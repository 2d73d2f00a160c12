"""docs/spec.md §8: ``declared_at`` (and a receipt's ``completed_at``) names a real time, checked field by field."""

from __future__ import annotations

import pytest

from run_identity.core.statement import is_calendar_time


@pytest.mark.parametrize(
    ("text", "real"),
    [
        ("2024-02-29T00:00:00.000000Z", True),
        ("9999-12-31T23:59:59.999999Z", True),
        ("0001-01-01T00:00:00.000000Z", True),
        ("2026-02-29T00:00:00.000000Z", False),
        ("1900-02-29T00:00:00.000000Z", False),
        ("2026-02-30T12:00:00.000000Z", False),
        ("2026-13-01T00:00:00.000000Z", False),
        ("2026-01-01T24:00:00.000000Z", False),
        ("2026-12-31T23:59:60.000000Z", False),
        ("2026-01-01T00:60:00.000000Z", False),
        ("0000-01-01T00:00:00.000000Z", False),
    ],
)
def test_a_time_is_real_only_on_the_calendar(text: str, real: bool) -> None:
    assert is_calendar_time(text) is real
