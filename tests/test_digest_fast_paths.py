"""The identity hot path's shortcuts agree with the careful path: shaped lists, flat objects, fast validators.

Expected digests are computed here from the reference ``rfc8785`` package and hashlib, or, for values the
canonical form rejects, from the error the careful pass (``_careful``) gives; never from the shortcuts.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from types import MappingProxyType
from typing import Any

import orjson
import pytest
import rfc8785
from core_fixtures import full_dict, minimal_dict
from hypothesis import given, settings
from hypothesis import strategies as st

from run_identity.core._element_schema import text_messages_ok, text_parts_ok
from run_identity.core.canonical import _careful, canonicalize, canonicalize_elements
from run_identity.core.composition import Composition, validate_component
from run_identity.core.digest import compute_identity, identity_of_new
from run_identity.core.errors import CanonicalizationError, CompositionError
from run_identity.core.parts import FunctionTool

MODEL = {"provider": "openai", "name": "gpt-4o"}
ELEMENT = b"run-identity/v1/element/messages\x00\x00\x00\x00\x00"


class Text(str):
    """A str subclass: not JSON, whatever it holds."""


class Color(enum.Enum):
    RED = "red"


def _message(content: object = "hi", role: object = "user", **extra: object) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}], **extra}


def _element_digests(messages: list[Any]) -> tuple[str, ...]:
    """The messages' element digests, from rfc8785 where it accepts the value, else the careful pass."""
    out = []
    for message in messages:
        try:
            jcs = rfc8785.dumps(message)
        except Exception:  # rfc8785 refuses something: the careful pass must then refuse it too
            jcs = _careful(message, "")
        out.append("sha256:" + hashlib.sha256(ELEMENT + jcs).hexdigest())
    return tuple(out)


def _careful_error(messages: list[Any]) -> str:
    """The error the careful pass gives for the first message it refuses."""
    for i, message in enumerate(messages):
        try:
            _careful(message, f"messages[{i}]")
        except CanonicalizationError as error:
            return str(error)
    raise AssertionError("the careful pass accepts every message")


def _identified(messages: list[Any]) -> Composition:
    """A composition built from valid messages and then given ``messages`` (as a caller may mutate it)."""
    built = [_message() for _ in messages]
    composition = Composition.from_dict({"model": MODEL, "operation": "chat", "messages": built})
    built[:] = messages
    return composition


# -- the shape checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        _message(),
        _message(name="alice"),
        _message(name=None),
        {"role": "assistant", "parts": [{"type": "reasoning", "content": "so"}, {"type": "text", "content": ""}]},
        {"parts": [], "role": "user"},
    ],
)
def test_shape_accepts_common_messages(message: dict[str, Any]) -> None:
    """Text messages (optional name, text and reasoning parts, no parts) are in the common shape."""
    assert text_messages_ok([message])
    assert validate_component("messages", [message]) == [message]


@pytest.mark.parametrize(
    "message",
    [
        _message(content=1.5),
        _message(content=uuid.UUID(int=7)),
        _message(content=Color.RED),
        _message(content=Text("hi")),
        _message(content=None),
        _message(role=Text("user")),
        _message(role=1),
        _message(name=2),
        _message(name=Text("alice")),
        _message(extra="x"),
        {"role": "user", "parts": ({"type": "text", "content": "hi"},)},
        {"role": "user", "parts": [{"type": "text", "content": "hi", "id": "p1"}]},
        {"role": "user", "parts": [{"type": Text("text"), "content": "hi"}]},
        {"role": "user", "parts": [{"type": "tool_call", "content": "hi"}]},
        {"role": "user", "parts": [{"type": "blob", "content": "aGk="}]},
        {"role": "user", "parts": [{"kind": "text", "content": "hi"}]},
        {"role": "user", "parts": ["hi"]},
        {"role": "user"},
        {"parts": []},
        {"role": "user", "parts": [], "name": "a", "other": 1},
        ["user", []],
    ],
)
def test_shape_refuses_anything_else(message: object) -> None:
    """Floats, UUIDs, Enums, subclasses, tuples, optional or unknown members all leave the common shape."""
    assert not text_messages_ok([_message(), message])


@pytest.mark.parametrize(
    "part",
    [
        {"type": "text", "content": 1.5},
        {"type": "text", "content": Text("hi")},
        {"type": Text("text"), "content": "hi"},
        {"type": "uri", "content": "hi"},
        {"type": "text", "content": "hi", "mime_type": None},
        {"type": "text"},
        ("text", "hi"),
    ],
)
def test_part_shape_refuses_anything_else(part: object) -> None:
    """Instructions are in the common shape only as exact text (or reasoning) parts with string content."""
    assert text_parts_ok([{"type": "text", "content": "hi"}, {"type": "reasoning", "content": ""}])
    assert not text_parts_ok([{"type": "text", "content": "hi"}, part])


def test_shaped_list_has_the_reference_bytes() -> None:
    """For shaped elements, the orjson shortcut writes exactly RFC 8785's bytes (escapes, non-ASCII, U+E000)."""
    texts = ['q"\\/\b\f\n\r\t\x00\x1f\x7f', "caf\u00e9 \u2028 \ue000 \U0001f600", "", "x" * 5000]
    messages = [_message(text, name=None if i % 2 else "n") for i, text in enumerate(texts)]
    assert text_messages_ok(messages)
    assert canonicalize_elements(messages, "messages", plain=True) == [rfc8785.dumps(m) for m in messages]


# -- values changed after construction -------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        [_message(), _message(content=1.0)],
        [_message(content=-0.0), _message(content=1e21)],
        [_message(content=[1, 2.5, {"a": 0.1}])],
        [_message(name=3)],
        [{"role": "user", "parts": [{"type": "text", "content": "hi", "score": 0.25}]}],
    ],
)
def test_mutated_to_floats_is_digested_as_the_careful_path_does(messages: list[Any]) -> None:
    """A message changed after construction is checked again: floats get their ECMAScript form."""
    identity = compute_identity(_identified(messages))
    assert identity.components["messages"].element_digests == _element_digests(messages)


@pytest.mark.parametrize(
    "messages",
    [
        [_message(), _message(content=float("nan"))],
        [_message(content=float("inf"))],
        [_message(content=uuid.UUID(int=7))],
        [_message(content=Color.RED)],
        [_message(role=Text("user"))],
        [_message(content="\ud800")],
        [_message(content=2**53)],
        [_message(content=orjson.Fragment(b"1"))],
        [{"role": "user", "parts": [{"type": "text", Text("content"): "hi"}]}],
        [{"role": "user", "parts": [{"type": "text", "content": "hi", 1: "x"}]}],
    ],
)
def test_mutated_to_non_json_is_refused_as_the_careful_path_does(messages: list[Any]) -> None:
    """NaN, UUID, Enum, subclasses, lone surrogates, big integers, Fragments, non-str keys: the careful error."""
    with pytest.raises(CanonicalizationError) as info:
        compute_identity(_identified(messages))
    assert str(info.value) == _careful_error(messages)


def test_non_str_key_in_a_shaped_message_is_refused_with_its_path() -> None:
    """A str-subclass key passes the shape check by lookup; orjson refuses it and the careful pass names it."""
    message = {Text("role"): "user", "parts": [{"type": "text", "content": "hi"}]}
    composition = Composition.from_dict({"model": MODEL, "operation": "chat", "messages": [message]})
    with pytest.raises(CanonicalizationError) as info:
        compute_identity(composition)
    assert str(info.value) == _careful_error([message])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet=st.characters(blacklist_categories=())),
            st.sampled_from(["user", "assistant", "\U0001f600", "\ue000"]),
            st.one_of(st.none(), st.text(max_size=3)),
        ),
        max_size=6,
    )
)
def test_any_text_messages_match_the_reference(rows: list[tuple[str, str, str | None]]) -> None:
    """Random text messages (any code point, lone surrogates included) give the reference digests or error."""
    messages = [_message(content, role, **({} if name is None else {"name": name})) for content, role, name in rows]
    try:
        expected: tuple[str, ...] | str = _element_digests(messages)
    except CanonicalizationError:
        expected = _careful_error(messages)
    doc = {"model": MODEL, "operation": "chat", "messages": messages}
    try:
        got: tuple[str, ...] | str = compute_identity(Composition.from_dict(doc)).components["messages"].element_digests  # type: ignore[assignment]
    except CanonicalizationError as error:
        got = str(error)
    assert got == expected


# -- flat objects: parameters, a model, extensions -------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"temperature": 0.7, "top_p": 1.0, "seed": 42, "stop_sequences": ["\n\nUser:", "\u2028"], "x": None},
        {"a": -0.0, "b": 1e21, "c": 1e-7, "d": 5e-324, "e": 2**53 - 1, "f": True, "g": [1, "x", None, False]},
        {"\ue000": 1, "\U0001f600": 2, "a": 0.5},
        {"\U0001f600": [], "\uffff": "z"},
        {},
    ],
)
def test_flat_objects_have_the_reference_bytes(value: dict[str, Any]) -> None:
    """One level of scalars and scalar lists (floats, astral and U+E000..U+FFFF keys) gives RFC 8785's bytes."""
    assert canonicalize(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [
        {"a": float("nan")},
        {"a": float("-inf")},
        {"a": 2**53},
        {"a": [0.5]},
        {"a": [uuid.UUID(int=1)]},
        {"a": Text("x")},
        {"a": "\udfff"},
        {Text("a"): 1},
        {1: 1.5},
        {"a": Color.RED},
    ],
)
def test_flat_objects_refuse_as_the_careful_path_does(value: dict[Any, Any]) -> None:
    """A flat object the shortcut cannot vouch for goes to the general passes, which name the problem."""
    try:
        expected = _careful(value, "parameters")
    except CanonicalizationError as error:
        with pytest.raises(CanonicalizationError) as info:
            canonicalize(value, "parameters")
        assert str(info.value) == str(error)
    else:
        assert canonicalize(value, "parameters") == expected


def test_string_component_refuses_a_lone_surrogate_with_its_path() -> None:
    """A top-level string is written by orjson; a lone surrogate is still named by the careful pass."""
    assert canonicalize("chat") == b'"chat"'
    with pytest.raises(CanonicalizationError, match=r"^operation: lone surrogate U\+D800$"):
        canonicalize("a\ud800", "operation")


# -- the fast validators ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ({"temperature": True}, "parameters.temperature: expected a number, got bool"),
        ({"max_tokens": 1.5}, "parameters.max_tokens: expected an integer, got 1.5"),
        ({"stop_sequences": ("a", Text("b"))}, "parameters.stop_sequences[1]: expected a string, got Text"),
        ({"output_type": Text("text")}, "parameters.output_type: expected a string, got Text"),
        ({Text("seed"): 1}, "parameters: object key 'seed' of type Text is not a string"),
        ({"seed": 1, "best_of": 2}, "parameters.best_of: unknown parameter"),
    ],
)
def test_parameters_shortcut_leaves_errors_to_the_validator(parameters: dict[Any, Any], error: str) -> None:
    """Parameters the one-lookup check does not accept get the validator's exact error."""
    with pytest.raises(CompositionError) as info:
        Composition.from_dict({"model": MODEL, "operation": "chat", "parameters": parameters})
    assert str(info.value).startswith(error)


def test_parameters_shortcut_accepts_what_the_validator_accepts() -> None:
    """Tuple stop sequences, integer numbers and an object response format pass unchanged."""
    parameters = {"temperature": 1, "stop_sequences": ("a",), "response_format": {"type": "json"}, "seed": 3}
    composition = Composition.from_dict({"model": MODEL, "operation": "chat", "parameters": parameters})
    assert composition.components["parameters"] is parameters


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ({"provider": Text("openai"), "name": "m"}, "model.provider: expected a string, got Text"),
        ({"provider": "openai", "name": "m", "revision": None}, None),
        ({"provider": "openai", "name": "m", "weights_digest": "sha256:00"}, "model.weights_digest: expected"),
        ({"provider": "openai", "name": "m", "endpoint": "https://u:p@example.com"}, "model.endpoint: endpoint"),
        ({"provider": "openai", "name": "m", "endpoint": "https://example.com/?api_key=1"}, "model.endpoint: end"),
    ],
)
def test_model_shortcut_leaves_the_rest_to_the_validator(model: dict[str, Any], error: str | None) -> None:
    """A model with anything but known string members, or an endpoint not seen clean, is fully validated."""
    doc = {"model": model, "operation": "chat"}
    if error is None:
        assert Composition.from_dict(doc).components["model"] is model
        return
    with pytest.raises(CompositionError) as info:
        Composition.from_dict(doc)
    assert str(info.value).startswith(error)


# -- a composition digested right after it is built ------------------------------------------------------


def test_identity_of_new_agrees_with_build_then_compute() -> None:
    for doc in (minimal_dict(), full_dict()):
        expected = compute_identity(Composition.from_dict(doc))
        assert identity_of_new(doc) == expected
        assert identity_of_new(Composition.from_dict(doc)) == expected
        assert identity_of_new(doc, salt=b"s" * 16) == compute_identity(Composition.from_dict(doc), salt=b"s" * 16)


def test_shapes_proved_by_the_constructor_are_trusted_only_when_no_caller_code_ran() -> None:
    """A typed component's to_json runs during construction and may change a list already checked; then
    nothing is trusted and the change is caught (a NaN is rejected, never written as null)."""
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]

    class Meddling:
        def to_json(self) -> dict[str, Any]:
            messages[0]["parts"][0]["content"] = float("nan")
            return {"provider": "openai", "name": "gpt-4o"}

    plain = {"model": {"provider": "openai", "name": "gpt-4o"}, "operation": "chat", "messages": messages}
    assert Composition.from_dict(plain).shaped == frozenset({"messages"})
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    assert Composition.from_dict({**plain, "tools": [tool]}).shaped == frozenset({"messages"})
    assert Composition.from_dict({**plain, "tools": [FunctionTool("f")]}).shaped == frozenset()
    meddled = {"operation": "chat", "messages": messages, "model": Meddling()}
    assert Composition.from_dict(dict(meddled)).shaped == frozenset()
    messages[0]["parts"][0]["content"] = "hi"
    with pytest.raises(CanonicalizationError, match=r"messages\[0\]\.parts\[0\]\.content: NaN"):
        identity_of_new(meddled)


def test_a_mapping_that_is_not_a_dict_trusts_no_shape() -> None:
    doc = {
        "model": {"provider": "openai", "name": "gpt-4o"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
    }
    assert Composition.from_dict(MappingProxyType(doc)).shaped == frozenset()
