"""The verifier's reading of canonical manifest text agrees with the parsed fast path: whenever it vouches for
a text, :func:`fast_check` on the parsed text finds the same statement, signature, fingerprint and values."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import verify_fixtures as vf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from run_identity.canonical import canonicalize
from run_identity.composition import Composition
from run_identity.errors import CanonicalizationError, CompositionError, ManifestError
from run_identity.manifest import Manifest
from run_identity.signing import sign_run
from run_identity.verify._fast import fast_check
from run_identity.verify._text import _SEEN, read_canonical

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

# Strings that look like the punctuation the reader follows, inside values.
_TRICKY = [
    "}]}",
    '},{"digest":"sha256:',
    '","value":',
    '"withheld":true}',
    "\\",
    '"',
    "\U0001f600",
    "\ue000",
    "é",
    "1.0",
    "e-5",
]
_text = st.text(max_size=8) | st.sampled_from(_TRICKY)
_numbers = (
    st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1.0, -0.0])
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)


def _same(text: str) -> None:
    """``read_canonical`` either steps aside or finds exactly what the parsed fast path finds."""
    found = read_canonical(text)
    if found is None:
        return
    parsed = fast_check(orjson.loads(text))
    assert parsed is not None
    assert (found.statement, found.signature, found.shape, found.parts) == (
        parsed.statement,
        parsed.signature,
        parsed.shape,
        parsed.parts,
    )


def _body(extensions: Any, message: Any = None) -> str:
    base = dict(vf.compositions()[3][1])
    if message is not None:
        base["messages"] = [*base["messages"], {"role": "user", "parts": [{"type": "text", "content": message}]}]
    try:
        composition = Composition.from_dict(dict(base, extensions={"x": extensions}))
        return sign_run(composition, vf.signer(), trace_id=TRACE, span_id=SPAN).manifest_json().decode()
    except (CompositionError, CanonicalizationError):
        assume(False)
        raise


@pytest.mark.parametrize(("label", "composition"), vf.compositions())
def test_canonical_manifests_are_read_from_their_text(label: str, composition: dict[str, Any]) -> None:
    """Signed manifests, whole or with content withheld, are read from their text, before and after a memo hit."""
    body = sign_run(Composition.from_dict(composition), vf.signer(), trace_id=TRACE, span_id=SPAN).manifest_json()
    manifest = Manifest.from_json(body)
    for text in (body.decode(), canonicalize(manifest.withhold("model").to_json()).decode()):
        for _ in range(2):
            assert read_canonical(text) is not None
            _same(text)
    withheld = canonicalize(manifest.withhold("messages", 0).to_json()).decode()
    assert read_canonical(withheld) is not None
    _same(withheld)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json, message=_text, cut=st.integers(0, 10_000), insert=st.sampled_from(["", " ", ",", "}", "]", '"']))
def test_text_reading_agrees_with_the_parsed_path(value: Any, message: str, cut: int, insert: str) -> None:
    """On signed manifests with tricky content, edited or not, the text reader never disagrees with the parsed
    fast path (and never vouches for text that is not JSON)."""
    body = _body(value, message or None)
    _same(body)
    at = cut % (len(body) + 1)
    for text in (body[:at] + insert + body[at:], body[:at] + body[at + 1 :]):
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            assert read_canonical(text) is None
            continue
        _same(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json, replacement=_json)
def test_a_value_seen_before_does_not_vouch_for_an_edited_one(value: Any, replacement: Any) -> None:
    """Content replaced after signing is refused even when the original was read (and remembered) just before."""
    body = _body(value)
    read_canonical(body)
    doc = orjson.loads(body)
    doc["components"]["extensions"]["value"] = {"x": replacement}
    text = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
    assume(not _core_clean(text))
    assert read_canonical(text) is None


def _core_clean(text: str) -> bool:
    try:
        manifest = Manifest.from_json(text)
    except ManifestError:
        return False
    return not manifest.recompute().problems


def test_the_memory_of_seen_text_is_bounded() -> None:
    """The remembered text is freed whole once past its limit, so it never grows with the input."""
    before = _SEEN.limit
    _SEEN.limit = 10_000
    try:
        for i in range(40):
            assert read_canonical(_body({"i": i}, f"message {i} " * 50)) is not None
            assert _SEEN.held <= 10_000 + 20_000
    finally:
        _SEEN.limit = before
