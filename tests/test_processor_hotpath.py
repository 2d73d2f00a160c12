"""The hot path's shortcuts give exactly the results of the careful code they skip (on_start relies on it)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from run_identity import CanonicalizationError, Composition, compute_identity
from run_identity.core._element_schema import (
    document_ok,
    message_ok,
    part_ok,
    tool_ok,
    validate_document,
    validate_message,
    validate_part,
    validate_tool,
)
from run_identity.core.errors import CompositionError

_KEYS = st.sampled_from(
    [
        "type",
        "content",
        "name",
        "role",
        "parts",
        "id",
        "mime_type",
        "transcript",
        "modality",
        "uri",
        "file_id",
        "response",
        "arguments",
        "description",
        "parameters",
    ]
)
_TYPES = st.sampled_from(["text", "tool_call", "tool_call_response", "blob", "uri", "file", "reasoning", "x"])
_SCALARS = st.one_of(st.none(), st.text(max_size=4), st.integers(-2, 2), st.booleans(), st.just(b"\x00"))


def _objects(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(_KEYS, st.just("type")), values, max_size=5).flatmap(
        lambda d: st.one_of(st.just(d), _TYPES.map(lambda t: {**d, "type": t}))
    )


_PARTS = _objects(st.one_of(_SCALARS, st.dictionaries(st.text(max_size=2), _SCALARS, max_size=2)))
_ELEMENTS = st.one_of(
    _PARTS,
    _objects(st.one_of(_SCALARS, st.lists(_PARTS, max_size=3), st.tuples(_PARTS))),
    _SCALARS,
    st.lists(_SCALARS, max_size=2),
)


def _outcome(validate: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", validate(value, "x")
    except CompositionError as exc:
        return "error", str(exc)


@pytest.mark.parametrize(
    ("ok", "validate"),
    [
        (part_ok, validate_part),
        (message_ok, validate_message),
        (tool_ok, validate_tool),
        (document_ok, validate_document),
    ],
)
@settings(max_examples=200, deadline=None)
@given(value=_ELEMENTS)
def test_fast_check_only_passes_what_the_validator_returns_unchanged(
    ok: Any, validate: Any, value: Any
) -> None:
    """Whenever a fast element check says yes, the full validator accepts the element and returns it as is."""
    if ok(value):
        kind, result = _outcome(validate, value)
        assert kind == "ok" and result is value


@pytest.mark.parametrize(
    ("ok", "element"),
    [
        (part_ok, {"type": "text", "content": "hi", "id": None}),
        (part_ok, {"type": "tool_call", "name": "f", "arguments": {"a": 1}}),
        (part_ok, {"type": "custom", "anything": [1]}),
        (message_ok, {"role": "user", "parts": [{"type": "text", "content": "x"}], "name": "n"}),
        (tool_ok, {"type": "function", "name": "f", "description": None, "parameters": {"type": "object"}}),
        (document_ok, {"id": "d", "uri": "kb://x"}),
    ],
)
def test_fast_check_accepts_the_common_valid_shapes(ok: Any, element: dict[str, Any]) -> None:
    """The ordinary valid elements take the fast path."""
    assert ok(element)


def _composition(messages: list[Any]) -> Composition:
    return Composition.from_dict(
        {"model": {"provider": "p", "name": "m"}, "operation": "chat", "messages": messages}
    )


def test_element_error_paths_are_reported_as_before() -> None:
    """A value that cannot be canonicalized inside a list element is reported with its full element path."""
    good = {"role": "user", "parts": [{"type": "text", "content": "a"}]}
    bad = {"role": "user", "parts": [{"type": "tool_call", "name": "f", "arguments": {"x": float("inf")}}]}
    with pytest.raises(CanonicalizationError) as info:
        compute_identity(_composition([good, good, bad]))
    assert info.value.path == "messages[2].parts[0].arguments.x"


def test_tuples_and_blob_bytes_still_go_through_the_validator() -> None:
    """Elements the validator transforms (tuples, blob bytes) are still transformed, not skipped."""
    part = {"type": "blob", "modality": "image", "content": b"\x89PNG"}
    composition = _composition([{"role": "user", "parts": (part,)}])
    (message,) = composition.components["messages"]
    assert message["parts"] == [{"type": "blob", "modality": "image", "content": "iVBORw=="}]
