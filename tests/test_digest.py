"""Tests of run_identity.core.digest: element, component, list and identity digests, salts and prepared components.

Known answers are computed here with hashlib from the construction written in the module docstring of
digest.py (and docs/spec.md section 4), never through the module's own helpers.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

import pytest
from core_fixtures import full_dict, minimal_dict, text_message
from hypothesis import given, settings
from hypothesis import strategies as st

from run_identity.core._component_schema import _CREDENTIAL_NAME as CREDENTIAL_NAME
from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition, PreparedComponent
from run_identity.core.digest import (
    ComponentDigest,
    component_digest,
    compute_identity,
    element_digest,
    identity_digest,
    list_digest,
    prepare,
    salt_id,
)
from run_identity.core.errors import CanonicalizationError, CompositionError

SALT = b"pepper-pepper-16"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _content_prefix(kind: str, name: str, salt: bytes = b"") -> bytes:
    return (
        b"run-identity/v1/"
        + kind.encode()
        + b"/"
        + name.encode()
        + b"\x00"
        + struct.pack(">I", len(salt))
        + salt
    )


def _by_hand_element(name: str, jcs: bytes, salt: bytes = b"") -> str:
    return _sha(_content_prefix("element", name, salt) + jcs)


def _by_hand_component(name: str, jcs: bytes, salt: bytes = b"") -> str:
    return _sha(_content_prefix("component", name, salt) + jcs)


def _by_hand_list(name: str, digests: list[str]) -> str:
    body = "[" + ",".join(f'"{d}"' for d in digests) + "]"
    return _sha(b"run-identity/v1/list/" + name.encode() + b"\x00" + body.encode())


def _by_hand_identity(digests: dict[str, str]) -> str:
    body = "{" + ",".join(f'"{k}":"{digests[k]}"' for k in sorted(digests)) + "}"
    return _sha(b"run-identity/v1/identity\x00" + body.encode())


def _identity(data: dict[str, Any], salt: bytes = b"") -> str:
    return compute_identity(Composition.from_dict(data), salt=salt).id


MODEL_JCS = b'{"name":"gpt-4o","provider":"openai"}'
MESSAGE_JCS = b'{"parts":[{"content":"hi","type":"text"}],"role":"user"}'
# Golden values: the hand construction below, pinned so that any change of the construction is caught.
MODEL_DIGEST = "sha256:48da21365e0533e71bf444716213eadc03ab24947779205bdb0f0b1edea3c83d"
OPERATION_DIGEST = "sha256:a16d2319fb4412c5897f9c92f31ddf7d40e294fc083193610dac303cf9de7c79"
MESSAGE_DIGEST = "sha256:6de56d4df5ae403cd3da040bccaef437c007bfad1be7e77a0c4eed0a251081a6"
MESSAGES_DIGEST = "sha256:99fd393bce774f8dd6f4c3d106294fd1f3c2794eb8c1e43e964f715b2a57fba0"
MINIMAL_IDENTITY = "sha256:17ba712228a7e048193f8e795076b407833614933d83d45eb8c8001c7d7e6eb9"
WITH_MESSAGE_IDENTITY = "sha256:03131d05348defde9ef48732efd50cd32378962657131d6648337c46ace95c89"
SALTED_MESSAGE_DIGEST = "sha256:6fd5b70ec77363f5be4bc2e1d72d7351937d57d29ec12213f6b470ff25be093c"
SALT_ID = "sha256:400374343a56166c4d94179fc8542e9f3b4a0ed8a8a444159dfb39a54b896d52"


def _with_message() -> dict[str, Any]:
    return {**minimal_dict(), "messages": [text_message("user", "hi")]}


# -- known answers ----------------------------------------------------------------------------------


def test_hand_construction_matches_golden_values() -> None:
    """The docstring's construction, done with hashlib here, gives the pinned golden digests."""
    prefix = b"run-identity/v1/component/model\x00\x00\x00\x00\x00"
    assert _sha(prefix + MODEL_JCS) == MODEL_DIGEST
    assert _by_hand_component("operation", b'"chat"') == OPERATION_DIGEST
    assert _by_hand_element("messages", MESSAGE_JCS) == MESSAGE_DIGEST
    assert _sha(b'run-identity/v1/list/messages\x00["' + MESSAGE_DIGEST.encode() + b'"]') == MESSAGES_DIGEST
    identity_body = f'{{"model":"{MODEL_DIGEST}","operation":"{OPERATION_DIGEST}"}}'.encode()
    assert _sha(b"run-identity/v1/identity\x00" + identity_body) == MINIMAL_IDENTITY
    assert (
        _by_hand_identity({"model": MODEL_DIGEST, "operation": OPERATION_DIGEST, "messages": MESSAGES_DIGEST})
        == WITH_MESSAGE_IDENTITY
    )


def test_minimal_composition_known_answer() -> None:
    """compute_identity of the minimal composition gives the hand-computed component digests and identity."""
    result = compute_identity(Composition.from_dict(minimal_dict()))
    assert result.id == MINIMAL_IDENTITY
    assert result.components == {
        "model": ComponentDigest("model", MODEL_DIGEST),
        "operation": ComponentDigest("operation", OPERATION_DIGEST),
    }
    assert result.canonical == {"model": MODEL_JCS, "operation": b'"chat"'}
    assert result.salt_id is None


def test_list_component_known_answer() -> None:
    """A list component digests each element and then the list of element digests."""
    result = compute_identity(Composition.from_dict(_with_message()))
    assert result.components["messages"] == ComponentDigest("messages", MESSAGES_DIGEST, (MESSAGE_DIGEST,))
    assert result.canonical["messages"] == (MESSAGE_JCS,)
    assert result.id == WITH_MESSAGE_IDENTITY


def test_salted_known_answer() -> None:
    """With a salt, element digests include u32be(len(salt)) and the salt; the salt id is its own digest."""
    assert _by_hand_element("messages", MESSAGE_JCS, SALT) == SALTED_MESSAGE_DIGEST
    prefix = b"run-identity/v1/element/messages\x00\x00\x00\x00\x10" + SALT
    assert _sha(prefix + MESSAGE_JCS) == SALTED_MESSAGE_DIGEST
    result = compute_identity(Composition.from_dict(_with_message()), salt=SALT)
    assert result.components["messages"].element_digests == (SALTED_MESSAGE_DIGEST,)
    assert result.components["messages"].digest == _by_hand_list("messages", [SALTED_MESSAGE_DIGEST])
    assert result.components["model"].digest == _by_hand_component("model", MODEL_JCS, SALT)
    assert result.salt_id == SALT_ID == _sha(b"run-identity/v1/salt-id\x00" + SALT)


def test_full_composition_matches_hand_construction() -> None:
    """Every component of the full composition, and its identity, match the hand construction."""
    data = full_dict()
    result = compute_identity(Composition.from_dict(data))
    expected: dict[str, str] = {}
    for name, value in Composition.from_dict(data).to_dict().items():
        if isinstance(value, list):
            elements = [_by_hand_element(name, canonicalize(v)) for v in value]
            assert result.components[name].element_digests == tuple(elements)
            expected[name] = _by_hand_list(name, elements)
        else:
            expected[name] = _by_hand_component(name, canonicalize(value))
            assert result.components[name].element_digests is None
        assert result.components[name].digest == expected[name]
    assert result.id == _by_hand_identity(expected)


def test_helpers_match_hand_construction() -> None:
    """element_digest, component_digest, list_digest and identity_digest follow the docstring."""
    assert element_digest("tools", b"{}") == _by_hand_element("tools", b"{}")
    assert element_digest("tools", b"{}", SALT) == _by_hand_element("tools", b"{}", SALT)
    assert component_digest("extensions", b"{}") == _by_hand_component("extensions", b"{}")
    assert component_digest("extensions", b"{}", SALT) == _by_hand_component("extensions", b"{}", SALT)
    digests = [MODEL_DIGEST, OPERATION_DIGEST]
    assert list_digest("context", digests) == _by_hand_list("context", digests)
    assert identity_digest({"operation": OPERATION_DIGEST, "model": MODEL_DIGEST}) == MINIMAL_IDENTITY


def test_empty_list_digest() -> None:
    """The digest of an empty list component is over the text []."""
    assert list_digest("tools", []) == _sha(b"run-identity/v1/list/tools\x00[]")
    result = compute_identity(Composition.from_dict({**minimal_dict(), "tools": []}))
    assert result.components["tools"] == ComponentDigest(
        "tools", _sha(b"run-identity/v1/list/tools\x00[]"), ()
    )


def test_digests_are_lowercase_sha256_text() -> None:
    """Every digest is written sha256: and 64 lowercase hex digits."""
    result = compute_identity(Composition.from_dict(full_dict()))
    everything = [result.id] + [d.digest for d in result.components.values()]
    everything += [e for d in result.components.values() for e in d.element_digests or ()]
    for digest in everything:
        assert digest.startswith("sha256:") and len(digest) == 71
        assert all(c in "0123456789abcdef" for c in digest[7:])


# -- domain separation ------------------------------------------------------------------------------


def test_same_bytes_under_two_component_names_differ() -> None:
    """The component name is part of the digest input: {} as parameters and as extensions differ."""
    result = compute_identity(Composition.from_dict({**minimal_dict(), "parameters": {}, "extensions": {}}))
    assert result.canonical["parameters"] == result.canonical["extensions"] == b"{}"
    assert result.components["parameters"].digest != result.components["extensions"].digest


def test_same_element_under_two_list_names_differ() -> None:
    """An element with the same bytes in two list components has two digests."""
    part = {"type": "text", "content": "x"}
    doc = {"id": "x", "content": "x", "type": "text", "name": "x"}
    result = compute_identity(
        Composition.from_dict({**minimal_dict(), "instructions": [part], "context": [doc], "tools": [doc]})
    )
    assert result.components["context"].element_digests != result.components["tools"].element_digests
    assert result.components["context"].digest != result.components["tools"].digest


def test_kinds_have_distinct_prefixes() -> None:
    """Element, component, list and identity digests of the same bytes all differ."""
    body = b'["' + MODEL_DIGEST.encode() + b'"]'
    digests = {
        element_digest("messages", body),
        component_digest("messages", body),
        list_digest("messages", [MODEL_DIGEST]),
        _sha(b"run-identity/v1/identity\x00" + body),
        _sha(body),
    }
    assert len(digests) == 5


def test_name_boundary_is_unambiguous() -> None:
    """The 0x00 after the name keeps (tool, s...) and (tools, ...) apart."""
    assert element_digest("tools", b"{}") != element_digest("tool", b"s{}")


def test_salt_length_prefix_prevents_shifting_bytes_between_salt_and_content() -> None:
    """Moving a byte from the salt into the content changes the digest."""
    assert element_digest("messages", b"{}", b"ab") != element_digest("messages", b"b{}", b"a")


# -- what the identity depends on -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["messages", "tools", "context", "instructions"])
def test_list_order_matters(name: str) -> None:
    """Reversing the elements of a list component changes the identity."""
    data = full_dict()
    data["instructions"].append({"type": "text", "content": "Second instruction."})
    before = _identity(data)
    data[name].reverse()
    assert _identity(data) != before


def test_message_order_permutes_element_digests() -> None:
    """Reversing the messages reverses their element digests but changes the list digest."""
    data = full_dict()
    before = compute_identity(Composition.from_dict(data)).components["messages"]
    data["messages"].reverse()
    after = compute_identity(Composition.from_dict(data)).components["messages"]
    assert after.element_digests == tuple(reversed(before.element_digests or ()))
    assert after.digest != before.digest


def _reorder(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's members in a shuffled insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _reorder(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_reorder(v, rng) for v in value]
    return value


def test_member_order_does_not_matter() -> None:
    """Reordering members of every object, at every depth, keeps the identity."""
    expected = _identity(full_dict())
    for seed in range(5):
        assert _identity(_reorder(full_dict(), random.Random(seed))) == expected


def test_component_insertion_order_does_not_matter() -> None:
    """The identity is independent of the order in which components are given."""
    data = full_dict()
    backwards = dict(reversed(list(data.items())))
    assert list(backwards) != list(data)
    assert _identity(backwards) == _identity(data)
    assert identity_digest(dict(reversed(list({"a": "1", "b": "2"}.items())))) == identity_digest(
        {"a": "1", "b": "2"}
    )


@pytest.mark.parametrize(("a", "b"), [(1.0, 1), (0.0, 0), (-0.0, 0), (1e2, 100), (2.5e-1, 0.25)])
def test_equal_numbers_hash_equally(a: float, b: int | float) -> None:
    """1.0 and 1 (and other spellings of one double) give the same identity."""
    assert _identity({**minimal_dict(), "parameters": {"temperature": a}}) == _identity(
        {**minimal_dict(), "parameters": {"temperature": b}}
    )
    assert _identity({**minimal_dict(), "extensions": {"x": [a]}}) == _identity(
        {**minimal_dict(), "extensions": {"x": [b]}}
    )


def test_different_numbers_hash_differently() -> None:
    """0.1 and 0.10000000000000002 are different doubles and different content."""
    assert _identity({**minimal_dict(), "extensions": {"x": 0.1}}) != _identity(
        {**minimal_dict(), "extensions": {"x": 0.10000000000000002}}
    )


def test_unicode_normalization_is_not_applied() -> None:
    """NFC and NFD spellings of the same text are different content."""
    nfc = {**minimal_dict(), "messages": [text_message("user", "caf\u00e9")]}
    nfd = {**minimal_dict(), "messages": [text_message("user", "cafe\u0301")]}
    assert _identity(nfc) != _identity(nfd)


def test_identity_is_repeatable() -> None:
    """Computing the identity twice gives the same result (no time, no randomness)."""
    assert compute_identity(Composition.from_dict(full_dict())) == compute_identity(
        Composition.from_dict(full_dict())
    )


# -- salt -------------------------------------------------------------------------------------------


def test_empty_salt_is_the_default() -> None:
    """salt=b'' gives exactly the default identity and no salt id."""
    comp = Composition.from_dict(full_dict())
    assert compute_identity(comp, salt=b"") == compute_identity(comp)
    assert salt_id(b"") is None


def test_salt_changes_every_content_digest() -> None:
    """A salt changes every element and single-valued component digest, hence the identity."""
    comp = Composition.from_dict(full_dict())
    plain, salted = compute_identity(comp), compute_identity(comp, salt=SALT)
    assert salted.id != plain.id
    for name, digest in plain.components.items():
        assert salted.components[name].digest != digest.digest
        for a, b in zip(
            digest.element_digests or (), salted.components[name].element_digests or (), strict=True
        ):
            assert a != b
    assert salted.canonical == plain.canonical


def test_two_salts_give_two_identities() -> None:
    """Identities agree within a salt and differ across salts."""
    comp = Composition.from_dict(full_dict())
    assert compute_identity(comp, salt=SALT).id == compute_identity(comp, salt=SALT).id
    assert compute_identity(comp, salt=SALT).id != compute_identity(comp, salt=SALT + b"!").id


def test_salt_id_names_but_never_reveals_the_salt() -> None:
    """The salt id is a digest: stable, different per salt, and not containing the salt."""
    assert salt_id(SALT) == SALT_ID
    assert salt_id(SALT) != salt_id(SALT[::-1])
    assert SALT.hex() not in (salt_id(SALT) or "")


# -- prepared components ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["instructions", "tools", "model", "parameters", "messages", "context"])
def test_prepared_component_gives_same_identity(name: str) -> None:
    """A prepared component gives the same component digest, canonical bytes and identity as the raw one."""
    data = full_dict()
    raw = compute_identity(Composition.from_dict(data))
    prepared = prepare(name, data[name])
    assert isinstance(prepared, PreparedComponent) and prepared.digest == raw.components[name].digest
    with_prepared = compute_identity(Composition.from_dict({**data, name: prepared}))
    assert with_prepared.id == raw.id
    assert with_prepared.components == raw.components
    assert with_prepared.canonical == raw.canonical


def test_prepared_typed_component() -> None:
    """Typed objects can be prepared and give the same digest as their JSON form."""
    from core_fixtures import full_typed

    typed = full_typed().to_dict()
    assert (
        prepare("tools", full_typed().components["tools"]).digest == prepare("tools", typed["tools"]).digest
    )


def test_prepared_component_reused_across_calls() -> None:
    """One prepared component serves many compositions, each identified as if raw."""
    tools = prepare("tools", full_dict()["tools"])
    for i in range(3):
        data = {**full_dict(), "messages": [text_message("user", f"turn {i}")]}
        assert _identity({**data, "tools": tools}) == _identity(data)


def test_prepared_with_salt_matches_salted_raw() -> None:
    """A component prepared with the salt gives the salted identity."""
    data = full_dict()
    prepared = prepare("instructions", data["instructions"], salt=SALT)
    assert prepared.salt_id == SALT_ID
    assert _identity({**data, "instructions": prepared}, salt=SALT) == _identity(data, salt=SALT)


def test_prepared_with_another_salt_rejected() -> None:
    """Mixing a component prepared under one salt into an identity under another is refused."""
    data = full_dict()
    unsalted = prepare("tools", data["tools"])
    salted = prepare("tools", data["tools"], salt=SALT)
    with pytest.raises(CompositionError, match="another blinding salt") as info:
        _identity({**data, "tools": unsalted}, salt=SALT)
    assert info.value.path == "tools"
    with pytest.raises(CompositionError, match="another blinding salt"):
        _identity({**data, "tools": salted})
    with pytest.raises(CompositionError, match="another blinding salt"):
        _identity({**data, "tools": salted}, salt=SALT + b"x")


def test_prepared_under_the_wrong_name_rejected() -> None:
    """A component prepared as tools cannot stand in for instructions."""
    prepared = prepare("tools", full_dict()["tools"])
    with pytest.raises(CompositionError, match="prepared component is 'tools', not 'instructions'"):
        Composition.from_dict({**minimal_dict(), "instructions": prepared})


def test_prepare_validates_and_canonicalizes() -> None:
    """prepare rejects what a raw composition would reject, naming the path."""
    with pytest.raises(CompositionError) as schema:
        prepare("tools", [{"type": "function"}])
    assert str(schema.value) == "tools[0]: missing required field 'name'"
    with pytest.raises(CanonicalizationError) as canonical:
        prepare("instructions", [{"type": "text", "content": "\udc00"}])
    assert str(canonical.value) == "instructions[0].content: lone surrogate U+DC00"
    with pytest.raises(CompositionError, match="unknown component"):
        prepare("prompt", "x")


# -- properties -------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            # Names such as "sig" or "token" are refused as credentials (spec §2.7), not this property's
            # subject.
            st.text(st.characters(exclude_categories=("Cs",)), max_size=6).filter(
                lambda k: not CREDENTIAL_NAME.match(k)
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    extensions=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _json, max_size=4),
    seed=st.integers(0, 99),
)
def test_identity_is_the_construction_for_any_json(extensions: dict[str, Any], seed: int) -> None:
    """For any JSON extensions, the identity is the hand construction, whatever the member order."""
    data = {**minimal_dict(), "extensions": extensions}
    expected = _by_hand_identity(
        {
            "model": MODEL_DIGEST,
            "operation": OPERATION_DIGEST,
            "extensions": _by_hand_component("extensions", canonicalize(extensions)),
        }
    )
    assert _identity(data) == expected
    assert _identity(_reorder(data, random.Random(seed))) == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=20), min_size=2, max_size=6, unique=True
    )
)
def test_distinct_orders_give_distinct_identities(texts: list[str]) -> None:
    """Two different orders of distinct messages never share an identity."""
    forward = {**minimal_dict(), "messages": [text_message("user", t) for t in texts]}
    backward = {**minimal_dict(), "messages": [text_message("user", t) for t in reversed(texts)]}
    assert _identity(forward) != _identity(backward)
