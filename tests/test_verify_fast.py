"""The verifier's fast content check agrees with the core reader: it vouches only for manifests whose
every digest the core recomputes, and never for one the core finds a problem in."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import verify_fixtures as vf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from run_identity.composition import Composition
from run_identity.errors import CompositionError, ManifestError
from run_identity.manifest import Manifest
from run_identity.signing import sign_run
from run_identity.verify._fast import fast_check

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

_text = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs", "Co")), max_size=12
) | st.sampled_from(["\U0001f600", "\ue000", "é", "e-mail", "1.0,", "x.0}", "3e-5", ""])
_numbers = (
    st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -0.0, 1e16, 1e21, 5e-324, 1e-7, 0.1, 2.5e-6, 123456789.125])
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _core_clean(body: str | bytes) -> bool:
    try:
        manifest = Manifest.from_json(body)
    except ManifestError:
        return False
    return manifest.salt_id is None and not manifest.recompute().problems


def _signed_body(extensions: Any) -> bytes:
    base = vf.compositions()[3][1]
    try:
        composition = Composition.from_dict(dict(base, extensions={"x": extensions}))
    except CompositionError:
        assume(False)
    return sign_run(composition, vf.signer(), trace_id=TRACE, span_id=SPAN).manifest_json()


def _respell(node: Any, ints_as_floats: bool) -> Any:
    if type(node) is dict:
        return {k: _respell(node[k], ints_as_floats) for k in reversed(list(node))}
    if type(node) is list:
        return [_respell(v, ints_as_floats) for v in node]
    if ints_as_floats and type(node) is int and abs(node) < 2**53:
        return float(node)
    return node


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json, ints_as_floats=st.booleans())
def test_fast_check_never_vouches_for_what_the_core_rejects(value: Any, ints_as_floats: bool) -> None:
    """On canonical and respelled manifests with arbitrary content the fast path is never more lenient."""
    body = _signed_body(value)
    respelled = json.dumps(_respell(orjson.loads(body), ints_as_floats), ensure_ascii=ints_as_floats)
    for text in (body, respelled):
        if fast_check(orjson.loads(text)) is not None:
            assert _core_clean(text)
    assert _core_clean(body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json, replacement=_json)
def test_fast_check_refuses_edited_content(value: Any, replacement: Any) -> None:
    """Content replaced after signing is never vouched for, whatever it is replaced with."""
    doc = orjson.loads(_signed_body(value))
    assume(orjson.dumps(replacement, option=orjson.OPT_SORT_KEYS) != orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    doc["components"]["extensions"]["value"] = {"x": replacement}
    assume(not _core_clean(orjson.dumps(doc)))
    assert fast_check(doc) is None


@pytest.mark.parametrize(("label", "composition"), vf.compositions())
def test_fast_check_vouches_for_ordinary_manifests(label: str, composition: dict[str, Any]) -> None:
    """Ordinary canonical manifests take the fast path, whole or with content withheld."""
    manifest = Manifest.from_json(
        sign_run(Composition.from_dict(composition), vf.signer(), trace_id=TRACE, span_id=SPAN).manifest_json()
    )
    assert fast_check(manifest.to_json()) is not None
    assert fast_check(manifest.withhold("messages", 0).to_json()) is not None
    assert fast_check(manifest.withhold("model").to_json()) is not None


def test_fast_check_leaves_salted_and_odd_manifests_to_the_core() -> None:
    """A salt, an unknown member or a malformed digest: the fast path steps aside (the core explains)."""
    body = sign_run(
        Composition.from_dict(vf.compositions()[0][1]),
        vf.signer(),
        trace_id=TRACE,
        span_id=SPAN,
        salt=b"s" * 16,
    ).manifest_json()
    assert fast_check(orjson.loads(body)) is None
    doc = Manifest.from_json(
        sign_run(
            Composition.from_dict(vf.compositions()[0][1]), vf.signer(), trace_id=TRACE, span_id=SPAN
        ).manifest_json()
    ).to_json()
    assert fast_check({**doc, "extra": 1}) is None
    doc["components"]["model"]["digest"] = doc["components"]["model"]["digest"].upper()
    assert fast_check(doc) is None
