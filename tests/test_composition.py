"""Tests of run_identity.core.composition and run_identity.core.parts: building, validating, rejecting compositions."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest
from core_fixtures import PNG_B64, PNG_BYTES, full_dict, full_typed, minimal_dict, text_message
from hypothesis import given
from hypothesis import strategies as st

from run_identity.core.composition import COMPONENT_NAMES, PARAMETER_ATTRIBUTES, Composition, validate_component
from run_identity.core.digest import compute_identity
from run_identity.core.errors import CanonicalizationError, CompositionError, RunIdentityError
from run_identity.core.parts import (
    BlobPart,
    Document,
    FilePart,
    FunctionTool,
    InputMessage,
    Model,
    Parameters,
    TextPart,
    ToolCallPart,
    ToolCallResponsePart,
    UriPart,
)


def _with(**components: Any) -> dict[str, Any]:
    return {**minimal_dict(), **components}


def _identity(data: dict[str, Any]) -> str:
    return compute_identity(Composition.from_dict(data)).id


def _error(data: dict[str, Any]) -> RunIdentityError:
    """The one error that building and identifying ``data`` raises."""
    with pytest.raises((CompositionError, CanonicalizationError)) as info:
        compute_identity(Composition.from_dict(data))
    return info.value


def _rejects(data: dict[str, Any], expected: str) -> None:
    """``data`` is rejected with exactly the one-line message ``expected`` (path: reason)."""
    assert str(_error(data)) == expected


def _message(*parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"role": role, "parts": list(parts)}


# -- building ---------------------------------------------------------------------------------------


def test_dict_and_typed_give_same_json() -> None:
    """The typed objects of run_identity.core.parts convert to exactly the JSON of the dict form."""
    assert full_typed().to_dict() == full_dict()
    assert full_typed() == Composition.from_dict(full_dict())


def test_dict_and_typed_give_same_identity() -> None:
    """Dict and typed forms of the same composition have the same identity and component digests."""
    a = compute_identity(Composition.from_dict(full_dict()))
    b = compute_identity(full_typed())
    assert a.id == b.id
    assert a.components == b.components


def test_typed_objects_json_shapes() -> None:
    """Each typed part writes its OTel GenAI shape; optional fields left as None are absent."""
    assert TextPart("hi").to_json() == {"type": "text", "content": "hi"}
    assert ToolCallPart(name="f").to_json() == {"type": "tool_call", "name": "f"}
    assert ToolCallPart(name="f", arguments={}, id="c").to_json() == {
        "type": "tool_call",
        "name": "f",
        "arguments": {},
        "id": "c",
    }
    assert ToolCallResponsePart(response=None).to_json() == {"type": "tool_call_response", "response": None}
    assert BlobPart(content=PNG_BYTES, modality="image").to_json() == {
        "type": "blob",
        "modality": "image",
        "content": PNG_B64,
    }
    assert UriPart(uri="u", modality="image").to_json() == {"type": "uri", "uri": "u", "modality": "image"}
    assert FilePart(file_id="f", modality="audio", mime_type="audio/wav").to_json() == {
        "type": "file",
        "file_id": "f",
        "modality": "audio",
        "mime_type": "audio/wav",
    }
    assert InputMessage.text("user", "hi").to_json() == text_message("user", "hi")
    assert FunctionTool(name="f").to_json() == {"type": "function", "name": "f"}
    assert Document(id="d", uri="u", extra={"score": 1}).to_json() == {"id": "d", "uri": "u", "score": 1}
    assert Model("openai", "gpt-4o").to_json() == minimal_dict()["model"]
    assert Parameters().to_json() == {}
    assert Parameters(stop_sequences=("a",)).to_json() == {"stop_sequences": ["a"]}


def test_tool_call_response_without_response_is_rejected() -> None:
    """A tool_call_response part with no response member is rejected; response null is a value."""
    _rejects(
        _with(messages=[_message({"type": "tool_call_response"})]),
        "messages[0].parts[0]: missing required field 'response' for a 'tool_call_response' part",
    )
    typed_null = _with(messages=[InputMessage("tool", (ToolCallResponsePart(response=None),)).to_json()])
    with_null = _with(messages=[_message({"type": "tool_call_response", "response": None}, role="tool")])
    assert _identity(typed_null) == _identity(with_null)


def test_document_extra_cannot_shadow_declared_fields() -> None:
    """A Document's extra members may not repeat id, content or uri (a ValueError on construction)."""
    with pytest.raises(ValueError, match="'id' clashes"):
        Document(id="a", extra={"id": "b"})
    assert Document(id="a", content="c", extra={"extra": 1}).to_json() == {
        "id": "a",
        "content": "c",
        "extra": 1,
    }


def test_of_none_means_absent() -> None:
    """Composition.of leaves out components passed as None; operation defaults to chat."""
    comp = Composition.of(model=Model("openai", "gpt-4o"))
    assert comp.to_dict() == minimal_dict()
    assert sorted(comp.components) == ["model", "operation"]


def test_replace_adds_and_removes_components() -> None:
    """replace() returns a new validated composition; None removes a component."""
    base = Composition.from_dict(full_dict())
    fewer = base.replace(tools=None, context=None)
    assert "tools" not in fewer.components and "tools" in base.components
    assert fewer.replace(tools=[FunctionTool("noop")]).to_dict()["tools"] == [
        {"type": "function", "name": "noop"}
    ]
    with pytest.raises(CompositionError, match="missing required component 'model'"):
        base.replace(model=None)


def test_composition_is_not_hashable_and_compares_by_json() -> None:
    """Compositions compare by their JSON form and are not hashable (they hold mutable JSON)."""
    assert Composition.from_dict(minimal_dict()) == Composition.of(model=Model("openai", "gpt-4o"))
    assert Composition.from_dict(minimal_dict()) != minimal_dict()
    with pytest.raises(TypeError):
        hash(Composition.from_dict(minimal_dict()))


def test_every_component_name_is_accepted() -> None:
    """The eight component names of the spec are the ones accepted."""
    assert {
        "model",
        "operation",
        "parameters",
        "extensions",
        "instructions",
        "messages",
        "tools",
        "context",
    } == COMPONENT_NAMES
    assert set(Composition.from_dict(full_dict()).components) == COMPONENT_NAMES


def test_parameter_names_follow_gen_ai_request_attributes() -> None:
    """Every parameter of the typed Parameters is a parameter the schema accepts, and vice versa."""
    assert set(Parameters.__dataclass_fields__) == set(PARAMETER_ATTRIBUTES)


def test_other_part_types_accepted_verbatim() -> None:
    """A part of a type the spec does not list needs only 'type' and keeps every member."""
    part = {"type": "server_tool_call", "anything": [1, {"x": None}]}
    assert (
        Composition.from_dict(_with(messages=[_message(part)])).to_dict()["messages"][0]["parts"][0] == part
    )


def test_optional_part_strings_may_be_null() -> None:
    """id, mime_type and transcript may be strings or null."""
    part = {
        "type": "blob",
        "modality": "audio",
        "content": "",
        "mime_type": None,
        "transcript": "hi",
        "id": None,
    }
    assert _identity(_with(messages=[_message(part)]))


def test_extra_members_are_content() -> None:
    """Members beyond the listed ones are kept and change the identity."""
    plain = _with(messages=[text_message("user", "hi")])
    extra = _with(messages=[{**text_message("user", "hi"), "cache_control": {"type": "ephemeral"}}])
    assert _identity(plain) != _identity(extra)


# -- absent and empty -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "empty"),
    [
        ("tools", []),
        ("messages", []),
        ("instructions", []),
        ("context", []),
        ("parameters", {}),
        ("extensions", {}),
    ],
)
def test_absent_and_empty_differ(name: str, empty: Any) -> None:
    """A composition without a component and one with it empty have different identities."""
    assert _identity(minimal_dict()) != _identity(_with(**{name: empty}))


def test_null_and_absent_member_differ() -> None:
    """An optional member written as null differs from the member left out."""
    absent = _with(tools=[{"type": "function", "name": "f"}])
    null = _with(tools=[{"type": "function", "name": "f", "description": None}])
    assert _identity(absent) != _identity(null)


def test_empty_string_and_absent_content_differ() -> None:
    """A document with empty content differs from one with no content."""
    assert _identity(_with(context=[{"id": "d", "uri": "u"}])) != _identity(
        _with(context=[{"id": "d", "uri": "u", "content": ""}])
    )


# -- tuples and blobs -------------------------------------------------------------------------------


def test_tuples_are_arrays() -> None:
    """Tuples anywhere in a composition are arrays: same JSON, same identity as lists."""
    as_lists = _with(
        messages=[_message({"type": "tool_call", "name": "f", "arguments": {"xs": [1, [2, 3]]}})],
        parameters={"stop_sequences": ["a", "b"]},
        extensions={"v": [1, 2]},
    )
    as_tuples = _with(
        messages=(
            {
                "role": "user",
                "parts": ({"type": "tool_call", "name": "f", "arguments": {"xs": (1, (2, 3))}},),
            },
        ),
        parameters={"stop_sequences": ("a", "b")},
        extensions={"v": (1, 2)},
    )
    assert _identity(as_tuples) == _identity(as_lists)
    assert type(Composition.from_dict(as_tuples).to_dict()["messages"]) is list


def test_blob_bytes_become_standard_base64() -> None:
    """Raw bytes in a blob part are written as padded standard base64, in messages and instructions."""
    raw = b"\xfb\xff\xfe"  # encodes to characters outside the base64url alphabet
    data = _with(
        instructions=[{"type": "blob", "modality": "image", "content": raw}],
        messages=[_message({"type": "blob", "modality": "image", "content": raw})],
    )
    comp = Composition.from_dict(data).to_dict()
    assert comp["instructions"][0]["content"] == "+//+"
    assert comp["messages"][0]["parts"][0]["content"] == "+//+"
    assert data["messages"][0]["parts"][0]["content"] == raw, "the caller's dict is not modified"


def test_blob_bytes_string_and_typed_forms_agree() -> None:
    """Blob content given as bytes, as its base64 text or as a typed BlobPart has one identity."""
    as_bytes = _with(messages=[_message({"type": "blob", "modality": "image", "content": PNG_BYTES})])
    as_text = _with(messages=[_message({"type": "blob", "modality": "image", "content": PNG_B64})])
    typed = Composition.of(
        model=Model("openai", "gpt-4o"),
        messages=[InputMessage("user", [BlobPart(content=PNG_BYTES, modality="image")])],
    )
    assert _identity(as_bytes) == _identity(as_text) == compute_identity(typed).id


def test_empty_blob_is_valid() -> None:
    """Zero bytes of blob content is the empty string, which is canonical base64."""
    assert _identity(_with(messages=[_message({"type": "blob", "modality": "image", "content": b""})]))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("aGk", "blob content is not standard base64"),  # missing padding
        ("aGk==", "blob content is not standard base64"),  # superfluous padding
        ("aGl=", "blob content is not in canonical base64 form"),  # non-zero trailing bits
        ("-__-", "blob content is not standard base64"),  # base64url alphabet
        ("aG k=", "blob content is not standard base64"),  # whitespace
        ("aGk=\n", "blob content is not standard base64"),  # line break
        ("aGk=aGk=", "blob content is not standard base64"),  # padding in the middle
        ("é", "blob content is not standard base64"),  # not ASCII
    ],
)
def test_non_canonical_base64_rejected(content: str, reason: str) -> None:
    """Blob content that is not the canonical base64 of some bytes is rejected, naming the content."""
    data = _with(
        messages=[_message({"type": "text", "content": "x"}), _message({"type": "blob", "modality": "m"})]
    )
    data["messages"][1]["parts"][0]["content"] = content
    _rejects(data, f"messages[1].parts[0].content: {reason}")


def test_blob_content_of_other_type_rejected() -> None:
    """Blob content that is neither bytes nor a string is rejected (bytearray is not bytes)."""
    _rejects(
        _with(instructions=[{"type": "blob", "modality": "m", "content": bytearray(b"x")}]),
        "instructions[0].content: expected a string, got bytearray",
    )


# -- canonical-form rejections through the composition ----------------------------------------------


def test_lone_surrogate_exact_message() -> None:
    """A lone surrogate in message 3's first part is reported exactly as in the spec's example."""
    data = _with(
        messages=[text_message("user", f"m{i}") for i in range(3)] + [text_message("user", "x\ud800y")]
    )
    err = _error(data)
    assert isinstance(err, CanonicalizationError)
    assert str(err) == "messages[3].parts[0].content: lone surrogate U+D800"
    assert err.path == "messages[3].parts[0].content"


@pytest.mark.parametrize("surrogate", ["\udfff", "\udc00a", "a\ud83d", "\ude00\ud83d"])
def test_lone_surrogates_anywhere_are_rejected(surrogate: str) -> None:
    """Low, high and reversed surrogates are rejected in values and in member names, with the path."""
    assert isinstance(_error(_with(extensions={"k": surrogate})), CanonicalizationError)
    err = _error(_with(extensions={"outer": {surrogate: 1}}))
    assert err.path.startswith("extensions.outer[")
    assert "lone surrogate" in str(err)


def test_paired_surrogates_are_text() -> None:
    """A proper astral character (one code point in Python) is accepted."""
    assert _identity(_with(messages=[text_message("user", "\U0001f600")]))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "NaN is not allowed"),
        (float("inf"), "+Infinity is not allowed"),
        (float("-inf"), "-Infinity is not allowed"),
    ],
)
def test_nan_and_infinity_rejected(value: float, reason: str) -> None:
    """NaN and ±Infinity are rejected wherever they are, naming the path."""
    _rejects(_with(parameters={"temperature": value}), f"parameters.temperature: {reason}")
    _rejects(_with(extensions={"a": [1, {"b": value}]}), f"extensions.a[1].b: {reason}")
    tool = {"type": "tool_call_response", "response": {"score": value}}
    _rejects(_with(messages=[_message(tool)]), f"messages[0].parts[0].response.score: {reason}")


@pytest.mark.parametrize("value", [2**53 - 1, -(2**53 - 1), 0, -1])
def test_safe_integers_accepted(value: int) -> None:
    """Integers within ±(2^53-1) are accepted."""
    assert _identity(_with(parameters={"seed": value}))


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, -(2**100)])
def test_integers_outside_safe_range_rejected(value: int) -> None:
    """Integers outside ±(2^53-1) are rejected, never rounded, naming the path."""
    err = _error(_with(parameters={"seed": value}))
    assert isinstance(err, CanonicalizationError)
    assert err.path == "parameters.seed"
    assert "outside \u00b1(2^53\u22121)" in err.reason
    assert _error(_with(extensions={"big": [value]})).path == "extensions.big[0]"


@pytest.mark.parametrize("key", [1, 1.5, True, ("a",), None])
def test_non_string_keys_rejected(key: Any) -> None:
    """Member names that are not strings are rejected, naming the object that holds them."""
    err = _error(_with(extensions={"outer": {key: 1}}))
    assert isinstance(err, CanonicalizationError)
    assert err.path == "extensions.outer"
    assert "is not a string" in err.reason
    part = {"type": "tool_call", "name": "f", "arguments": {key: 1}}
    assert _error(_with(messages=[_message(part)])).path == "messages[0].parts[0].arguments"


@pytest.mark.parametrize("name", ["model", "parameters"])
def test_non_string_keys_in_validated_objects(name: str) -> None:
    """A non-string key in model or parameters is reported as such (not as an unknown field or an index)."""
    data = minimal_dict()
    data.setdefault(name, {})[7] = "x"
    _rejects(data, f"{name}: object key 7 of type int is not a string")


def test_non_string_component_name_rejected() -> None:
    """A non-string key at the top level is reported as such."""
    data: dict[Any, Any] = {**minimal_dict(), 1: []}
    _rejects(data, "object key 1 of type int is not a string")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"raw", "bytes"),
        ({1, 2}, "set"),
        (decimal.Decimal("1.5"), "Decimal"),
        (datetime.date(2026, 1, 1), "date"),
        (uuid.UUID(int=0), "UUID"),
        (object(), "object"),
        (TextPart("x"), "TextPart"),
        (1 + 2j, "complex"),
    ],
)
def test_unsupported_value_types_rejected(value: Any, type_name: str) -> None:
    """Values without a JSON meaning are rejected, naming the path and the type."""
    _rejects(_with(extensions={"x": {"y": value}}), f"extensions.x.y: unsupported value type {type_name}")


def test_subclasses_of_json_types_rejected() -> None:
    """Subclasses of str, int or dict are not silently treated as their base type."""

    class Tag(str):
        pass

    assert "unsupported value type" in str(_error(_with(extensions={"x": Tag("a")})))


def test_cycle_rejected() -> None:
    """A container inside itself is rejected rather than recursing forever."""
    loop: list[Any] = []
    loop.append(loop)
    err = _error(_with(extensions={"x": loop}))
    assert isinstance(err, CanonicalizationError)
    assert err.path.startswith("extensions.x")


def test_odd_member_names_are_quoted_in_paths() -> None:
    """Member names that are not identifiers appear as JSON strings in the path."""
    _rejects(_with(extensions={"a b": {"c.d": float("nan")}}), 'extensions["a b"]["c.d"]: NaN is not allowed')


def test_first_error_only() -> None:
    """A composition with several problems raises one error (the first found)."""
    data = _with(extensions={"a": float("nan"), "b": float("inf")})
    assert str(_error(data)).count("\n") == 0


# -- schema rejections ------------------------------------------------------------------------------


def test_unknown_component_rejected() -> None:
    """A member that is not a component name is rejected, listing the allowed names."""
    err = _error(_with(prompt="hi"))
    assert isinstance(err, CompositionError)
    assert err.path == "prompt"
    assert "unknown component" in err.reason and "instructions" in err.reason


def test_unknown_component_name_with_odd_characters_is_quoted() -> None:
    """An unknown component whose name is not an identifier is written as a JSON string in the path."""
    assert _error(_with(**{"system prompt": "x"})).path == '["system prompt"]'


@pytest.mark.parametrize("name", ["model", "operation"])
def test_missing_required_component(name: str) -> None:
    """model and operation are required."""
    data = minimal_dict()
    del data[name]
    _rejects(data, f"missing required component {name!r}")


def test_composition_must_be_an_object() -> None:
    """A composition that is not a JSON object is rejected."""
    with pytest.raises(CompositionError, match="a composition is a JSON object, got list"):
        Composition.from_dict([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("part", "missing"),
    [
        ({"type": "text"}, "content"),
        ({"type": "tool_call"}, "name"),
        ({"type": "tool_call_response"}, "response"),
        ({"type": "blob", "content": ""}, "modality"),
        ({"type": "blob", "modality": "image"}, "content"),
        ({"type": "uri", "uri": "u"}, "modality"),
        ({"type": "uri", "modality": "image"}, "uri"),
        ({"type": "file", "file_id": "f"}, "modality"),
        ({"type": "file", "modality": "image"}, "file_id"),
        ({"type": "reasoning"}, "content"),
    ],
)
def test_missing_required_part_field(part: dict[str, Any], missing: str) -> None:
    """Each known part type names the required member it lacks, in messages and in instructions."""
    kind = part["type"]
    reason = f"missing required field {missing!r} for a {kind!r} part"
    _rejects(
        _with(messages=[text_message("user", "x"), _message(dict(part))]), f"messages[1].parts[0]: {reason}"
    )
    _rejects(_with(instructions=[{"type": "text", "content": "x"}, dict(part)]), f"instructions[1]: {reason}")


def test_part_without_type_rejected() -> None:
    """A part needs a string 'type'."""
    _rejects(
        _with(messages=[_message({"content": "x"})]), "messages[0].parts[0]: missing required field 'type'"
    )
    _rejects(_with(instructions=[{"type": 3}]), "instructions[0].type: expected a string, got int")


@pytest.mark.parametrize(
    ("part", "path", "got"),
    [
        ({"type": "text", "content": 3}, "content", "int"),
        ({"type": "text", "content": None}, "content", "null"),
        ({"type": "tool_call", "name": ["f"]}, "name", "list"),
        ({"type": "uri", "modality": "image", "uri": {}}, "uri", "dict"),
        ({"type": "file", "modality": 1, "file_id": "f"}, "modality", "int"),
        ({"type": "text", "content": "x", "id": 5}, "id", "int"),
        ({"type": "text", "content": "x", "mime_type": True}, "mime_type", "bool"),
    ],
)
def test_wrong_type_of_part_field(part: dict[str, Any], path: str, got: str) -> None:
    """A part member of the wrong type is rejected at its own path."""
    _rejects(_with(messages=[_message(part)]), f"messages[0].parts[0].{path}: expected a string, got {got}")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"parts": []}, "messages[0]: missing required field 'role'"),
        ({"role": "user"}, "messages[0]: missing required field 'parts'"),
        ({"role": 1, "parts": []}, "messages[0].role: expected a string, got int"),
        ({"role": "user", "parts": "hi"}, "messages[0].parts: expected an array, got str"),
        ({"role": "user", "parts": [], "name": 2}, "messages[0].name: expected a string, got int"),
        ("hello", "messages[0]: expected an object, got str"),
    ],
)
def test_malformed_message(message: Any, expected: str) -> None:
    """Messages need a string role and an array of parts."""
    _rejects(_with(messages=[message]), expected)


def test_messages_must_be_an_array() -> None:
    """A list component given as an object is rejected."""
    _rejects(_with(messages={"role": "user"}), "messages: expected an array, got dict")


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ({"name": "f"}, "tools[0]: missing required field 'type'"),
        ({"type": "function"}, "tools[0]: missing required field 'name'"),
        (
            {"type": "function", "name": "f", "description": 1},
            "tools[0].description: expected a string, got int",
        ),
        (
            {"type": "function", "name": "f", "parameters": "{}"},
            "tools[0].parameters: expected a JSON Schema",
        ),
    ],
)
def test_malformed_tool(tool: dict[str, Any], expected: str) -> None:
    """Tools need type and name; parameters must be an object or null."""
    assert str(_error(_with(tools=[tool]))).startswith(expected)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"content": "c"}, "context[0]: missing required field 'id'"),
        ({"id": "d"}, "context[0]: a document needs 'content' or 'uri'"),
        ({"id": "d", "content": 1}, "context[0].content: expected a string, got int"),
        ({"id": 1, "content": "c"}, "context[0].id: expected a string, got int"),
    ],
)
def test_malformed_document(doc: dict[str, Any], expected: str) -> None:
    """Documents need an id and content or uri."""
    _rejects(_with(context=[doc]), expected)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"name": "x"}, "model: missing required field 'provider'"),
        ({"provider": "openai"}, "model: missing required field 'name'"),
        ({"provider": "openai", "name": 4}, "model.name: expected a string, got int"),
        ({"provider": "openai", "name": "x", "family": "gpt"}, "model.family: unknown model field"),
        (
            {"provider": "openai", "name": "x", "weights_digest": "sha256:ABC"},
            "model.weights_digest: expected",
        ),
        ({"provider": "openai", "name": "x", "endpoint": "http://u@[::1"}, "model.endpoint: endpoint carries credentials"),
        ("openai/gpt-4o", "model: expected an object, got str"),
    ],
)
def test_malformed_model(model: Any, expected: str) -> None:
    """The model needs provider and name, allows only its listed members, and checks their form."""
    assert str(_error(_with(model=model))).startswith(expected)


def test_weights_digest_accepted() -> None:
    """A well-formed weights digest is accepted and changes the identity."""
    digest = "sha256:" + "ab" * 32
    with_digest = _with(model={"provider": "openai", "name": "gpt-4o", "weights_digest": digest})
    assert _identity(with_digest) != _identity(minimal_dict())


@pytest.mark.parametrize("operation", ["", 3, None, ["chat"]])
def test_malformed_operation(operation: Any) -> None:
    """operation is a non-empty string."""
    err = _error(_with(operation=operation))
    assert err.path == "operation" and "non-empty string" in str(err)


@pytest.mark.parametrize("name", ["temprature", "max_completion_tokens", "logit_bias", "n", "Temperature"])
def test_unknown_parameter_rejected(name: str) -> None:
    """A parameter not in the gen_ai.request.* table is rejected and pointed to extensions."""
    err = _error(_with(parameters={"temperature": 0.5, name: 1}))
    assert isinstance(err, CompositionError)
    assert err.path == f"parameters.{name}"
    assert "extensions" in err.reason


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"temperature": "0.5"}, "parameters.temperature: expected a number, got str"),
        ({"temperature": True}, "parameters.temperature: expected a number, got bool"),
        ({"max_tokens": 1.5}, "parameters.max_tokens: expected an integer, got 1.5"),
        ({"max_tokens": 2.0**53}, "parameters.max_tokens: expected an integer, got 9007199254740992.0"),
        ({"seed": False}, "parameters.seed: expected an integer, got bool"),
        ({"choice_count": None}, "parameters.choice_count: expected an integer, got null"),
        ({"stop_sequences": "\n"}, "parameters.stop_sequences: expected an array, got str"),
        ({"stop_sequences": ["a", 1]}, "parameters.stop_sequences[1]: expected a string, got int"),
        ({"output_type": 1}, "parameters.output_type: expected a string, got int"),
        ({"response_format": ["json"]}, "parameters.response_format: expected an object or a string, got"),
    ],
)
def test_parameter_types(params: dict[str, Any], expected: str) -> None:
    """Each parameter has its type; integers are whole numbers and booleans are not numbers."""
    assert str(_error(_with(parameters=params))).startswith(expected)


def test_an_integer_is_a_whole_number_whatever_its_spelling() -> None:
    """Spec §2.4: 256.0 is the integer 256 (a reader of doubles cannot tell them apart) and hashes as 256."""
    whole = _identity(_with(parameters={"max_tokens": 256.0, "seed": -3.0}))
    assert whole == _identity(_with(parameters={"max_tokens": 256, "seed": -3}))


@pytest.mark.parametrize(
    "endpoint",
    ["not a url at all", "http://[::1", "https://api.example.com/v1?q=%zz", "//host/path?model=x"],
)
def test_an_endpoint_need_not_parse_as_a_url(endpoint: str) -> None:
    """Spec §2.1: only user information and credential-named query parameters are refused."""
    Composition.from_dict({"model": {"provider": "openai", "name": "x", "endpoint": endpoint}, "operation": "chat"})


# -- credentials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://user:secret@api.example.com/v1",
        "https://token@api.example.com/v1",
        "https://api.example.com/v1?api_key=sk-123",
        "https://api.example.com/v1?API-KEY=sk-123",
        "https://api.example.com/v1?x-api-key=sk-123",
        "https://api.example.com/v1?foo=1&access_token=abc",
        "https://blob.example.com/c?sv=2024&sig=abc",
        "https://api.example.com/v1?password=",
    ],
)
def test_credentials_in_endpoint_rejected(endpoint: str) -> None:
    """An endpoint with user info or a credential-like query parameter is rejected at model.endpoint."""
    err = _error(_with(model={"provider": "openai", "name": "gpt-4o", "endpoint": endpoint}))
    assert isinstance(err, CompositionError)
    assert err.path == "model.endpoint"
    assert "credential" in err.reason
    assert "sk-123" not in str(err) and "secret" not in str(err).replace("credential", "")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://api.openai.com/v1",
        "https://x.openai.azure.com/openai?api-version=2024-06-01",
        "http://localhost:8000",
    ],
)
def test_plain_endpoints_accepted(endpoint: str) -> None:
    """Endpoints without credentials are accepted."""
    assert _identity(_with(model={"provider": "openai", "name": "gpt-4o", "endpoint": endpoint}))


@pytest.mark.parametrize(
    ("extensions", "path"),
    [
        ({"api_key": "sk-1"}, "extensions.api_key"),
        ({"Authorization": "Bearer sk-1"}, "extensions.Authorization"),
        ({"extra_headers": {"X": "1"}}, "extensions.extra_headers"),
        ({"headers": {}}, "extensions.headers"),
        ({"client": {"x-api-key": "sk-1"}}, 'extensions.client["x-api-key"]'),
        ({"hooks": [{"cfg": {"Cookie": "a=b"}}]}, "extensions.hooks[0].cfg.Cookie"),
        ({"a b": {"TOKEN": "t"}}, 'extensions["a b"].TOKEN'),
    ],
)
def test_credentials_in_extensions_rejected(extensions: dict[str, Any], path: str) -> None:
    """A credential-like member of extensions, at any depth, is rejected at its path, without its value."""
    err = _error(_with(extensions=extensions))
    assert isinstance(err, CompositionError)
    assert err.path == path
    assert "credential" in err.reason
    assert "sk-1" not in str(err)


def test_credentials_inside_tuples_rejected() -> None:
    """Credentials are found inside tuples too (a tuple is an array)."""
    err = _error(_with(extensions={"hooks": ({"cfg": ({"api_key": "sk-1"},)},)}))
    assert err.path == "extensions.hooks[0].cfg[0].api_key"


def test_deeply_nested_extensions_rejected_cleanly() -> None:
    """Nesting beyond the canonical form's limit is one CanonicalizationError, not a RecursionError."""
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": [deep]}
    err = _error(_with(extensions={"d": deep}))
    assert isinstance(err, CanonicalizationError)
    assert "nesting deeper than" in err.reason


def test_credential_like_names_elsewhere_are_content() -> None:
    """The credential rule applies to extensions and endpoints; a tool schema property named token is fine."""
    tool = {"type": "function", "name": "login", "parameters": {"properties": {"token": {"type": "string"}}}}
    assert _identity(_with(tools=[tool], extensions={"max_tokens_hint": 3, "tokenizer": "x"}))


# -- validate_component -----------------------------------------------------------------------------


def test_validate_component_unknown_name() -> None:
    """validate_component rejects a name that is not a component."""
    with pytest.raises(CompositionError, match="unknown component"):
        validate_component("prompt", "x")


def test_validate_component_uses_given_path() -> None:
    """Errors from validate_component are located under the path given by the caller."""
    with pytest.raises(CompositionError) as info:
        validate_component("messages", [{"role": "user"}], "request.messages")
    assert info.value.path == "request.messages[0]"


# -- properties -------------------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


_turns = st.lists(st.tuples(st.sampled_from(["user", "assistant", "tool"]), _text), max_size=6)


@given(turns=_turns, system=_text)
def test_typed_and_dict_agree_for_any_text(turns: list[tuple[str, str]], system: str) -> None:
    """For any roles and texts, typed and dict forms give one identity."""
    typed = Composition.of(
        model=Model("anthropic", "claude"),
        instructions=[TextPart(system)],
        messages=[InputMessage.text(role, text) for role, text in turns],
    )
    as_dict = _with(
        model={"provider": "anthropic", "name": "claude"},
        instructions=[{"type": "text", "content": system}],
        messages=[text_message(role, text) for role, text in turns],
    )
    assert compute_identity(typed).id == _identity(as_dict)


@given(st.binary(max_size=64))
def test_blob_bytes_round_trip_for_any_bytes(raw: bytes) -> None:
    """Any bytes encode to base64 that validates again and identifies the same."""
    as_bytes = _with(messages=[_message({"type": "blob", "modality": "m", "content": raw})])
    encoded = Composition.from_dict(as_bytes).to_dict()
    assert _identity(encoded) == _identity(as_bytes)


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [("https://g.example/v1beta?key=AIza", "key"), ("https://f.example/api/chat?code=abc", "code")],
)
def test_endpoint_key_and_code_query_parameters_are_credentials(endpoint: str, name: str) -> None:
    """Gemini's ?key= and Azure Functions' ?code= are rejected from model.endpoint as credentials."""
    with pytest.raises(CompositionError) as info:
        Composition.from_dict({"model": {"provider": "p", "name": "m", "endpoint": endpoint}, "operation": "chat"})
    assert info.value.path == "model.endpoint"
    assert repr(name) in info.value.reason


def test_goog_api_key_header_name_is_a_credential_in_extensions() -> None:
    """An extensions member named x-goog-api-key is rejected with its path."""
    with pytest.raises(CompositionError) as info:
        Composition.from_dict({"model": {"provider": "p", "name": "m"}, "operation": "chat", "extensions": {"x-goog-api-key": "k"}})
    assert info.value.path == 'extensions["x-goog-api-key"]'


def test_tool_call_response_of_null_is_present() -> None:
    """A typed tool call response of None is written as response: null, which the schema accepts."""
    from run_identity.core.parts import ToolCallResponsePart

    part = ToolCallResponsePart(None, id="call_1")
    assert part.to_json() == {"response": None, "id": "call_1", "type": "tool_call_response"}
    Composition.of(model={"provider": "p", "name": "m"}, messages=[InputMessage("tool", (part,))])
