"""Tests of run_identity.manifest and run_identity.core.manifest_proto: both forms, withholding, recomputation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from core_fixtures import SPAN_ID, TRACE_ID, full_dict, keyring, minimal_dict, sign

from run_identity.core._proto import manifest_pb2 as pb
from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition
from run_identity.core.digest import compute_identity, prepare
from run_identity.core.errors import CanonicalizationError, ManifestError
from run_identity.core.manifest import Manifest, ManifestComponent, ManifestElement
from run_identity.core.manifest_proto import manifest_from_proto, manifest_to_proto
from run_identity.core.signing import SignedRun

SALT = b"pepper-pepper-16"


def _run(data: dict[str, Any] | None = None, **options: Any) -> SignedRun:
    return sign(Composition.from_dict(data if data is not None else full_dict()), **options)


def _manifest(data: dict[str, Any] | None = None, **options: Any) -> Manifest:
    return Manifest.from_json(_run(data, **options).manifest_json())


def _signature_verifies(m: Manifest) -> bool:
    return keyring().verify(m.statement.key_id, m.signature, m.statement.signing_input())


def _doc() -> dict[str, Any]:
    """The full composition's manifest as parsed JSON, for tampering."""
    doc: dict[str, Any] = orjson.loads(_run().manifest_json())
    return doc


# -- the JSON form as produced ----------------------------------------------------------------------


def test_manifest_json_is_canonical() -> None:
    """The produced manifest is already in JCS form."""
    for data in (
        full_dict(),
        minimal_dict(),
        {**minimal_dict(), "tools": [], "extensions": {"\U0001f600": 1}},
    ):
        produced = _run(data).manifest_json()
        assert canonicalize(orjson.loads(produced)) == produced


def test_manifest_json_shape() -> None:
    """The manifest holds spec version, identity, components with digests, statement and signature."""
    run = _run()
    doc = orjson.loads(run.manifest_json())
    assert set(doc) == {"spec_version", "identity", "components", "statement", "signature"}
    assert doc["spec_version"] == "1"
    assert doc["identity"] == run.identity.id
    assert doc["statement"] == run.statement.to_json()
    assert doc["signature"] == run.span_attributes()["run_identity.signature"]
    assert doc["components"]["model"] == {
        "digest": run.identity.components["model"].digest,
        "value": full_dict()["model"],
    }
    messages = doc["components"]["messages"]
    assert set(messages) == {"digest", "elements"}
    assert [e["value"] for e in messages["elements"]] == full_dict()["messages"]
    assert [e["digest"] for e in messages["elements"]] == list(
        run.identity.components["messages"].element_digests or ()
    )


def test_manifest_parses_and_recomputes() -> None:
    """from_json of the produced manifest recomputes to the run's identity without problems."""
    run = _run()
    m = Manifest.from_json(run.manifest_json())
    result = m.recompute()
    assert result.problems == ()
    assert result.identity == m.identity == run.identity.id
    assert result.component_digests == {n: d.digest for n, d in run.identity.components.items()}
    assert m.statement == run.statement
    assert m.signature == run.signature
    assert m.salt_id is None
    assert _signature_verifies(m)


def test_manifest_from_bytes_text_or_object() -> None:
    """from_json accepts bytes, text and an already parsed object alike."""
    produced = _run().manifest_json()
    m = Manifest.from_json(produced)
    assert Manifest.from_json(produced.decode()) == m
    assert Manifest.from_json(orjson.loads(produced)) == m
    assert Manifest.from_json(bytearray(produced)) == m


def test_to_json_bytes_reproduces_the_produced_bytes() -> None:
    """A parsed manifest writes back exactly the bytes it was produced as."""
    produced = _run().manifest_json()
    assert Manifest.from_json(produced).to_json_bytes() == produced


def test_composition_json_reproduces_the_run() -> None:
    """The composition rebuilt from a full manifest has the run's identity."""
    run = _run()
    rebuilt = Composition.from_dict(Manifest.from_json(run.manifest_json()).composition_json())
    assert compute_identity(rebuilt).id == run.identity.id
    assert rebuilt == Composition.from_dict(full_dict())


def test_span_and_manifest_carry_the_same_statement() -> None:
    """The statement rebuilt from the span attributes equals the manifest's, so one signature serves both."""
    from run_identity.core.statement import BindingStatement

    run = _run()
    from_span = BindingStatement.from_span(run.span_attributes(), TRACE_ID, SPAN_ID)
    assert from_span == Manifest.from_json(run.manifest_json()).statement


def test_prepared_components_give_the_same_manifest() -> None:
    """A run with prepared instructions and tools produces byte-identical manifest JSON."""
    data = full_dict()
    prepared = {
        **data,
        "instructions": prepare("instructions", data["instructions"]),
        "tools": prepare("tools", data["tools"]),
    }
    assert _run(prepared).manifest_json() == _run(data).manifest_json()


def test_manifest_of_typed_composition_equals_dict_form() -> None:
    """Typed and dict compositions give the same manifest bytes."""
    from core_fixtures import full_typed

    assert sign(full_typed()).manifest_json() == _run().manifest_json()


# -- withholding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "index", "secret"),
    [
        ("messages", 3, "Thanks"),
        ("messages", 0, "Weather in Lisbon?"),
        ("context", 0, "Lisbon is a capital."),
        ("context", 1, "It rains little in summer."),
        ("instructions", 0, "You are terse."),
        ("tools", 0, "get_weather"),
    ],
)
def test_withheld_element_still_recomputes_and_verifies(component: str, index: int, secret: str) -> None:
    """Replacing one element by its digest keeps the identity and the signature; the content is gone."""
    run = _run()
    withheld = Manifest.from_json(run.manifest_json()).withhold(component, index)
    text = withheld.to_json_bytes()
    if component != "tools":
        assert secret.encode() not in text
    again = Manifest.from_json(text)
    assert again == withheld
    assert again.components[component].elements[index] == ManifestElement(  # type: ignore[index]
        run.identity.components[component].element_digests[index],  # type: ignore[index]
        None,
        True,
    )
    result = again.recompute()
    assert result.problems == ()
    assert result.identity == run.identity.id
    assert _signature_verifies(again)
    assert again.withholds_content


@pytest.mark.parametrize(
    "component", ["model", "parameters", "extensions", "instructions", "messages", "context"]
)
def test_withheld_component_still_recomputes_and_verifies(component: str) -> None:
    """Replacing a whole component by its digest keeps the identity and the signature."""
    run = _run()
    withheld = Manifest.from_json(run.manifest_json()).withhold(component)
    doc = orjson.loads(withheld.to_json_bytes())
    assert doc["components"][component] == {
        "digest": run.identity.components[component].digest,
        "withheld": True,
    }
    again = Manifest.from_json(withheld.to_json_bytes())
    assert again.recompute().problems == ()
    assert again.recompute().identity == run.identity.id
    assert _signature_verifies(again)


def test_withholding_many_things_at_once() -> None:
    """Several elements and components withheld together still recompute to the identity."""
    run = _run()
    m = Manifest.from_json(run.manifest_json())
    m = (
        m.withhold("messages", 0)
        .withhold("messages", 2)
        .withhold("context", 1)
        .withhold("parameters")
        .withhold("model")
    )
    again = Manifest.from_json(m.to_json_bytes())
    assert again.recompute().identity == run.identity.id
    assert again.recompute().problems == ()


def test_withheld_manifest_cannot_rebuild_the_composition() -> None:
    """A manifest with withheld content refuses to give a composition for replay."""
    m = _manifest().withhold("messages", 1)
    with pytest.raises(ManifestError, match="withheld"):
        m.composition_json()
    assert not _manifest().withholds_content


@pytest.mark.parametrize(
    ("component", "index", "path"),
    [
        ("prompt", None, "components.prompt"),
        ("messages", 4, "components.messages.elements[4]"),
        ("messages", -1, "components.messages.elements[-1]"),
        ("model", 0, "components.model.elements[0]"),
    ],
)
def test_withhold_something_that_is_not_there(component: str, index: int | None, path: str) -> None:
    """Withholding an absent component or element is a ManifestError naming it."""
    with pytest.raises(ManifestError) as info:
        _manifest().withhold(component, index)
    assert info.value.path == path


def test_withheld_element_json_shape() -> None:
    """A withheld element is exactly {digest, withheld: true}."""
    doc = orjson.loads(_manifest().withhold("messages", 1).to_json_bytes())
    assert set(doc["components"]["messages"]["elements"][1]) == {"digest", "withheld"}
    assert doc["components"]["messages"]["elements"][1]["withheld"] is True


# -- tampering --------------------------------------------------------------------------------------


def test_tampered_message_is_reported_with_its_path() -> None:
    """Changing one message's text is reported at that element, and the identity no longer matches."""
    doc = _doc()
    doc["components"]["messages"]["elements"][3]["value"]["parts"][0]["content"] = "Thanks!"
    result = Manifest.from_json(doc).recompute()
    assert result.identity != doc["identity"]
    assert any(p.startswith("components.messages.elements[3]: content digest") for p in result.problems)
    assert any(p.startswith("components.messages: content digest") for p in result.problems)
    assert any(p.startswith("identity: recomputed") for p in result.problems)
    assert any(p.startswith("statement.identity: recomputed") for p in result.problems)
    assert not any("elements[0]" in p or "elements[1]" in p for p in result.problems)


def test_tampered_single_component_is_reported_with_its_path() -> None:
    """Changing a parameter is reported at components.parameters."""
    doc = _doc()
    doc["components"]["parameters"]["value"]["temperature"] = 0.3
    problems = Manifest.from_json(doc).recompute().problems
    assert problems[0].startswith("components.parameters: content digest")
    assert len(problems) == 3


def test_tampered_stated_element_digest_is_reported() -> None:
    """A stated element digest that does not match its content is reported, though the list digest holds."""
    doc = _doc()
    doc["components"]["context"]["elements"][0]["digest"] = "sha256:" + "1" * 64
    problems = Manifest.from_json(doc).recompute().problems
    assert len(problems) == 1
    assert problems[0].startswith("components.context.elements[0]: content digest")


def test_tampered_withheld_digest_changes_the_identity() -> None:
    """Changing the stated digest of a withheld element makes the recomputed identity differ."""
    doc = orjson.loads(_manifest().withhold("messages", 2).to_json_bytes())
    doc["components"]["messages"]["elements"][2]["digest"] = "sha256:" + "2" * 64
    result = Manifest.from_json(doc).recompute()
    assert result.identity != doc["identity"]
    assert [p.split(":")[0] for p in result.problems] == [
        "components.messages",
        "identity",
        "statement.identity",
    ]


def test_tampered_withheld_component_digest_changes_the_identity() -> None:
    """Changing the stated digest of a withheld component makes the recomputed identity differ."""
    doc = orjson.loads(_manifest().withhold("model").to_json_bytes())
    doc["components"]["model"]["digest"] = "sha256:" + "3" * 64
    assert [p.split(":")[0] for p in Manifest.from_json(doc).recompute().problems] == [
        "identity",
        "statement.identity",
    ]


def test_removed_component_changes_the_identity() -> None:
    """Dropping a component from the manifest (instead of withholding it) is detected."""
    doc = _doc()
    del doc["components"]["extensions"]
    assert Manifest.from_json(doc).recompute().identity != doc["identity"]


def test_removed_element_changes_the_identity() -> None:
    """Dropping an element (instead of withholding it) is detected at the list digest."""
    doc = _doc()
    del doc["components"]["messages"]["elements"][1]
    problems = Manifest.from_json(doc).recompute().problems
    assert problems[0].startswith("components.messages: content digest")


def test_tampered_statement_breaks_the_signature() -> None:
    """A statement changed after signing still parses but its signature no longer verifies."""
    doc = _doc()
    doc["statement"]["span_id"] = "00f067aa0ba902b8"
    m = Manifest.from_json(doc)
    assert m.recompute().problems == ()
    assert not _signature_verifies(m)


def test_content_that_cannot_be_canonicalized_is_a_problem_not_an_exception() -> None:
    """A manifest value holding a lone surrogate is reported by recompute with its path."""
    doc = _doc()
    doc["components"]["messages"]["elements"][0]["value"]["parts"][0]["content"] = "\ud800"
    problems = Manifest.from_json(doc).recompute().problems
    assert problems[0] == "components.messages.elements[0].value.parts[0].content: lone surrogate U+D800"


def test_lone_surrogate_escape_in_json_text_is_malformed() -> None:
    """JSON text with a lone surrogate escape is not a manifest: the reader refuses it and names the path."""
    text = json.dumps(_doc()).replace("Weather in Lisbon?", "\\ud800")
    with pytest.raises(ManifestError, match="lone surrogate U\\+D800") as info:
        Manifest.from_json(text)
    assert info.value.path == "components.messages.elements[0].value.parts[0].content"


def test_content_too_deep_is_a_problem_not_an_exception() -> None:
    """Nesting deeper than the canonical form allows (but readable JSON) is reported by recompute, not raised."""
    doc = _doc()
    doc["components"]["extensions"]["value"]["deep"] = json.loads("[" * 400 + "]" * 400)
    problems = Manifest.from_json(json.dumps(doc)).recompute().problems
    assert problems[0].startswith("components.extensions.value.deep")


# -- reformatting -----------------------------------------------------------------------------------


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def test_reformatted_json_recomputes_to_the_same_identity() -> None:
    """Member order, whitespace, escaping and number spelling do not change the recomputed identity."""
    data = {**full_dict(), "parameters": {"temperature": 1, "top_p": 1.0, "max_tokens": 256}}
    run = _run(data)
    doc = _reversed_keys(orjson.loads(run.manifest_json()))
    text = json.dumps(doc, indent=3, ensure_ascii=True)
    text = text.replace('"temperature": 1,', '"temperature": 1.0,').replace('"top_p": 1', '"top_p": 1E0')
    text = text.replace('"max_tokens": 256', '"max_tokens": 2.56e2')
    assert "1.0" in text and "1E0" in text and "2.56e2" in text
    m = Manifest.from_json(text)
    assert m.recompute().problems == ()
    assert m.recompute().identity == run.identity.id
    assert m.to_json_bytes() == run.manifest_json()


@pytest.mark.parametrize("number", [2.0**53, 1.5e18, 1e19, -(2.0**60), 1e20, 1e21, 2.0**63])
def test_large_integral_doubles_survive_the_round_trip(number: float) -> None:
    """Doubles that JCS writes in integer notation (such as 2^53 or 1e18) read back and recompute."""
    run = _run({**minimal_dict(), "extensions": {"big": number, "in": [number]}})
    m = Manifest.from_json(run.manifest_json())
    assert m.recompute().problems == ()
    assert m.to_json_bytes() == run.manifest_json()
    assert manifest_from_proto(manifest_to_proto(m)).recompute().problems == ()


def test_large_integer_spelling_of_a_double_is_read_as_that_double() -> None:
    """An integer token beyond 2^53 in a reformatted manifest denotes the double it rounds to."""
    run = _run({**minimal_dict(), "extensions": {"big": 2.0**60}})
    text = run.manifest_json().replace(b"1152921504606847000", b"1152921504606846976")
    assert text != run.manifest_json()
    assert Manifest.from_json(text).recompute().problems == ()


def test_number_beyond_double_range_is_malformed() -> None:
    """A number too large for a double is a ManifestError naming its path, from text and from objects."""
    text = _run({**minimal_dict(), "extensions": {"big": 1e20}}).manifest_json()
    with pytest.raises(ManifestError) as parsing:
        Manifest.from_json(text.replace(b"100000000000000000000", b"1" + b"0" * 400))
    assert parsing.value.path == "components.extensions.value.big"
    with pytest.raises(ManifestError, match="outside the range of an IEEE 754 double"):
        Manifest.from_json(text.replace(b"100000000000000000000", b"1e400"))
    doc = orjson.loads(text)
    doc["components"]["extensions"]["value"]["big"] = [10**400]
    with pytest.raises(ManifestError) as reading:
        Manifest.from_json(doc)
    assert reading.value.path == "components.extensions.value.big[0]"


# -- salt -------------------------------------------------------------------------------------------


def test_salted_manifest() -> None:
    """A salted manifest names its salt id; it recomputes with the salt and not without."""
    run = _run(salt=SALT)
    m = Manifest.from_json(run.manifest_json())
    assert m.salt_id == run.identity.salt_id and m.salt_id is not None
    assert SALT not in run.manifest_json() and SALT.hex().encode() not in run.manifest_json()
    assert m.recompute(salt=SALT).problems == ()
    assert m.recompute().problems != ()
    assert m.withhold("messages", 0).recompute(salt=SALT).identity == run.identity.id


# -- protobuf form ----------------------------------------------------------------------------------


def _variants() -> list[Manifest]:
    full = _manifest()
    return [
        full,
        _manifest(minimal_dict()),
        _manifest({**minimal_dict(), "tools": [], "parameters": {}}),
        full.withhold("messages", 1),
        full.withhold("context", 0).withhold("instructions"),
        full.withhold("model").withhold("operation"),
        _manifest(salt=SALT),
        _manifest({**minimal_dict(), "extensions": {"\U0001f600": "\ue000", "big": 1e18, "f": 0.1}}),
    ]


@pytest.mark.parametrize("index", range(8))
def test_protobuf_round_trip(index: int) -> None:
    """JSON -> protobuf -> manifest gives an equal manifest with the same identity and JSON bytes."""
    m = _variants()[index]
    data = manifest_to_proto(m)
    back = manifest_from_proto(data)
    assert back == m
    assert back.to_json_bytes() == m.to_json_bytes()
    salt = SALT if m.salt_id else b""
    assert back.recompute(salt=salt).identity == m.recompute(salt=salt).identity == m.identity
    assert back.recompute(salt=salt).problems == ()
    assert manifest_to_proto(back) == data
    assert keyring().verify(back.statement.key_id, back.signature, back.statement.signing_input())


def test_protobuf_keeps_absent_and_empty_apart() -> None:
    """An empty list component stays an empty list (not absent, not withheld) in the protobuf form."""
    m = _manifest({**minimal_dict(), "tools": []})
    back = manifest_from_proto(manifest_to_proto(m))
    assert back.components["tools"] == ManifestComponent("tools", m.components["tools"].digest, elements=())
    assert "context" not in back.components


def test_protobuf_carries_jcs_bytes_and_raw_signature() -> None:
    """Values travel as their JCS bytes, the signature as 64 raw bytes, components sorted by name."""
    run = _run()
    msg = pb.Manifest()
    msg.ParseFromString(manifest_to_proto(Manifest.from_json(run.manifest_json())))
    names = [c.name for c in msg.components]
    assert names == sorted(names)
    model = next(c for c in msg.components if c.name == "model")
    assert model.value == run.identity.canonical["model"]
    messages = next(c for c in msg.components if c.name == "messages")
    assert tuple(e.value for e in messages.elements.elements) == run.identity.canonical["messages"]
    assert msg.signature == run.signature
    assert msg.salt_id == ""


def _proto_with(change: Callable[[pb.Manifest], None]) -> bytes:
    msg = pb.Manifest()
    msg.ParseFromString(manifest_to_proto(_manifest()))
    change(msg)
    return msg.SerializeToString()


def _set_first_value(msg: pb.Manifest, value: bytes) -> None:
    next(c for c in msg.components if c.name == "model").value = value


def _clear_element(msg: pb.Manifest) -> None:
    next(c for c in msg.components if c.name == "messages").elements.elements[0].ClearField("content")


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda m: m.components.append(m.components[0]), "components[8]"),
        (lambda m: setattr(m.components[0], "name", "prompt"), "components[0]"),
        (lambda m: setattr(m.components[4], "name", "prompt"), "components.prompt"),
        (lambda m: m.components[0].ClearField("content"), "components[0]"),
        (lambda m: _set_first_value(m, b"{not json"), "components[4].value"),
        (lambda m: _set_first_value(m, b'{"name":"a","name":"b"}'), "components[4].value"),
        (lambda m: _set_first_value(m, b'{"x":[[{"k":1,"k":2}]]}'), "components[4].value.x[0][0]"),
        (lambda m: _set_first_value(m, b"[" * 1000 + b"]" * 1000), "components[4].value"),
        (_clear_element, "components[3].elements[0]"),
        (lambda m: setattr(m, "spec_version", "2"), "spec_version"),
        (lambda m: setattr(m, "signature", b"\x00" * 63), "signature"),
        (lambda m: setattr(m.statement, "trace_id", "0" * 32), "statement.trace_id"),
        (lambda m: setattr(m, "identity", "sha256:"), "identity"),
        (lambda m: setattr(m, "salt_id", "pepper"), "salt_id"),
    ],
)
def test_malformed_protobuf(change: Callable[[pb.Manifest], None], path: str) -> None:
    """Malformed protobuf manifests are ManifestErrors naming the field."""
    with pytest.raises(ManifestError) as info:
        manifest_from_proto(_proto_with(change))
    assert info.value.path == path


def test_protobuf_values_read_large_whole_numbers_as_doubles() -> None:
    """JCS writes 1e20 and 2^60 as integers; the protobuf reader takes them as doubles, like the JSON reader."""
    m = _manifest({**minimal_dict(), "extensions": {"big": [1e20, 2.0**60]}})
    back = manifest_from_proto(manifest_to_proto(m))
    assert back.components["extensions"].value == {"big": [1e20, 2.0**60]}
    assert back.recompute().problems == ()


def test_protobuf_value_on_list_component_is_malformed() -> None:
    """A list component carrying a single value (or the reverse) is refused."""

    def swap(msg: pb.Manifest) -> None:
        next(c for c in msg.components if c.name == "messages").value = b"[]"
        next(c for c in msg.components if c.name == "model").elements.SetInParent()

    with pytest.raises(ManifestError, match="list component"):
        manifest_from_proto(_proto_with(swap))


def test_protobuf_garbage_is_malformed() -> None:
    """Bytes that are not a protobuf Manifest are a ManifestError."""
    with pytest.raises(ManifestError):
        manifest_from_proto(b"\xff\xff\xff\xff not protobuf")


# -- malformed JSON manifests -----------------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


_BAD_DIGEST = "sha256:" + "A" * 64


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (_set(["extra"], 1), "extra"),
        (_set(["spec_version"], "2"), "spec_version"),
        (_set(["spec_version"], 1), "spec_version"),
        (_drop(["spec_version"]), "spec_version"),
        (_set(["identity"], _BAD_DIGEST), "identity"),
        (_set(["identity"], "sha256:abc"), "identity"),
        (_drop(["identity"]), "identity"),
        (_set(["components"], []), "components"),
        (_set(["components", "prompt"], {"digest": "sha256:" + "0" * 64, "value": "x"}), "components.prompt"),
        (_set(["components", "model", "extra"], 1), "components.model"),
        (_set(["components", "model", "digest"], _BAD_DIGEST), "components.model.digest"),
        (_drop(["components", "model", "value"]), "components.model"),
        (_set(["components", "model", "withheld"], True), "components.model"),
        (_set(["components", "model", "elements"], []), "components.model"),
        (_set(["components", "messages", "value"], []), "components.messages"),
        (_set(["components", "messages", "elements"], {}), "components.messages.elements"),
        (_set(["components", "messages", "elements", 0, "extra"], 1), "components.messages.elements[0]"),
        (
            _set(["components", "messages", "elements", 0, "digest"], 7),
            "components.messages.elements[0].digest",
        ),
        (
            _set(["components", "messages", "elements", 0, "withheld"], False),
            "components.messages.elements[0]",
        ),
        (
            _set(["components", "messages", "elements", 0, "withheld"], True),
            "components.messages.elements[0]",
        ),
        (
            _set(["components", "messages", "elements", 1], "sha256:" + "0" * 64),
            "components.messages.elements[1]",
        ),
        (_drop(["statement", "key_id"]), "statement"),
        (_set(["statement", "extra"], "x"), "statement.extra"),
        (_set(["statement", "trace_id"], "XYZ"), "statement.trace_id"),
        (_set(["statement", "declared_at"], "yesterday"), "statement.declared_at"),
        (_set(["statement", "spec_version"], "2"), "statement.spec_version"),
        (_set(["statement"], None), "statement"),
        (_drop(["signature"]), "signature"),
        (_set(["signature"], "not base64"), "signature"),
        (_set(["salt_id"], "pepper"), "salt_id"),
    ],
)
def test_malformed_json_manifest(change: Callable[[dict[str, Any]], None], path: str) -> None:
    """Each structural defect is one ManifestError naming its path."""
    doc = _doc()
    change(doc)
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(orjson.dumps(doc))
    assert info.value.path == path


@pytest.mark.parametrize("text", [b"", b"{", b"[]", b'"manifest"', b"null", b"\xff"])
def test_not_a_manifest_at_all(text: bytes) -> None:
    """Text that is not a JSON object is a ManifestError at the root."""
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(text)
    assert info.value.path == ""


def test_protobuf_refuses_values_that_are_not_json() -> None:
    """Writing a manifest whose content cannot be canonicalized names the value's path."""
    m = _manifest()
    bad = ManifestElement(m.components["messages"].elements[0].digest, {"x": float("nan")})  # type: ignore[index]
    messages = m.components["messages"]
    broken = Manifest(
        m.spec_version,
        m.identity,
        {**m.components, "messages": ManifestComponent("messages", messages.digest, elements=(bad,))},
        m.statement,
        m.signature,
    )
    with pytest.raises(CanonicalizationError) as info:
        manifest_to_proto(broken)
    assert str(info.value) == "components.messages.elements[0].value.x: NaN is not allowed"
