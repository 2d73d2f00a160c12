"""The typed OTLP/JSON reader (run_identity.verify._records_json) agrees with the general one, or gives way.

For every line it returns records for, the general reader (orjson and run_identity.verify._records) must
accept the same JSON and make exactly the same records and tally; on everything else it returns None. The
lines are real exports and generated requests full of what OTLP/JSON writers get wrong.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import verify_fixtures as vf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from run_identity.verify import _inputs
from run_identity.verify._inputs import BadRequest, RawRequest
from run_identity.verify._records import Tally, records
from run_identity.verify._records_json import decode_line

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def _general(line: bytes) -> tuple[str, Tally]:
    """What the general reader makes of one line: the repr of its records (NaN-safe), and its tally."""
    real = _inputs.decode_line
    _inputs.decode_line = lambda _line, _position: None  # type: ignore[assignment]
    try:
        found = list(_inputs._json_lines(line, 1))
    finally:
        _inputs.decode_line = real
    tally = Tally()
    out: list[Any] = []
    for request in found:
        if isinstance(request, BadRequest):
            out.append(request)
        else:
            assert isinstance(request, RawRequest)
            out.extend(records(request, tally))
    return repr(out), tally


def _fast(line: bytes) -> tuple[str, Tally] | None:
    decoded = decode_line(line, 1)
    if decoded is None:
        return None
    tally = Tally()
    out = list(records(RawRequest(1, decoded.kind, decoded), tally))
    return repr(out), tally


def _agrees(line: bytes) -> bool:
    """Asserts agreement where the fast reader answers; True when it did."""
    fast = _fast(line)
    if fast is None:
        return False
    assert fast == _general(line), line[:300]
    return True


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    return vf.export_runs(tmp_path_factory.mktemp("fast") / "export")


def test_real_exports_take_the_fast_path_and_agree(export: vf.Export) -> None:
    """Every line the SDK pipeline wrote is read by the typed reader, with the general reader's result."""
    lines = [line for path in (export.traces, export.manifests) for line in path.read_bytes().splitlines()]
    assert lines
    assert all(_agrees(line) for line in lines)


def _line(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def _span_doc(**span: Any) -> dict[str, Any]:
    base = {"traceId": TRACE, "spanId": SPAN, "name": "chat", "attributes": []}
    base.update(span)
    return {"resourceSpans": [{"scopeSpans": [{"spans": [base]}]}]}


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"resourceSpans":[],"x":"\xff"}', id="invalid UTF-8 in an unknown member"),
        pytest.param(
            b'{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"stringValue":"\xc0\xaf"}}]}}]}',
            id="overlong UTF-8",
        ),
        pytest.param(b'{"resourceSpans":[{"schemaUrl":1e999}]}', id="a number past a double"),
        pytest.param(_line(_span_doc(flags=10**400)), id="an integer past a double"),
        pytest.param(_line(_span_doc(trace_id=TRACE)), id="a snake_case member"),
        pytest.param(_line({"resourceSpans": [], "resourceLogs": []}), id="traces and logs in one request"),
        pytest.param(_line(_span_doc(attributes=[{"key": "gen_ai.x", "value": None}])), id="a null value"),
        pytest.param(
            _line(_span_doc(attributes=[{"key": "gen_ai.x", "value": {"stringValue": "a", "intValue": "1"}}])),
            id="two kinds in one AnyValue",
        ),
        pytest.param(
            _line(_span_doc(attributes=[{"key": "gen_ai.x", "value": {"intValue": str(1 << 63)}}])),
            id="an intValue past int64",
        ),
        pytest.param(
            _line(_span_doc(attributes=[{"key": "gen_ai.x", "value": {"stringValue": "a"}}] * 2)),
            id="a kept attribute repeated",
        ),
        pytest.param(_line(_span_doc(spanId="xyz")), id="a malformed span id"),
    ],
)
def test_what_the_general_reader_reports_is_left_to_it(line: bytes) -> None:
    """Lines that are not JSON to orjson, or that hold a record the general reader reports, give way."""
    assert _fast(line) is None
    _general(line)  # and the general reader reads them without raising


# --- generated requests ------------------------------------------------------------------------------------

_KEYS = ["gen_ai.request.model", "gen_ai.request.seed", "run_identity.id", "event.name", "server.address", "g"]
_IDS_16 = [TRACE, TRACE.upper(), "", base64.b64encode(bytes.fromhex(TRACE)).decode(), "xyz", "0" * 31]
_IDS_8 = [SPAN, "", base64.b64encode(bytes.fromhex(SPAN)).decode(), "12"]
_EVENTS = ["run_identity.manifest", "run_identity.receipt", "other", ""]

_ints = st.integers(-(1 << 70), 1 << 70)
#: Values every OTLP/JSON writer might send, and (odd) values only a broken one would.
_clean_scalar = st.one_of(
    st.builds(lambda s: {"stringValue": s}, st.text(max_size=8)),
    st.builds(lambda b: {"boolValue": b}, st.booleans()),
    st.builds(
        lambda i: {"intValue": i}, st.one_of(st.integers(-(1 << 63), (1 << 63) - 1).map(str), st.integers(-9, 9))
    ),
    st.builds(
        lambda d: {"doubleValue": d}, st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just("NaN"))
    ),
    st.builds(lambda b: {"bytesValue": base64.b64encode(b).decode()}, st.binary(max_size=6)),
    st.just({}),
)
_odd_scalar = st.one_of(
    st.builds(lambda i: {"intValue": i}, st.one_of(_ints.map(str), _ints, st.sampled_from(["1.5", "-", "x", "٣"]))),
    st.builds(lambda d: {"doubleValue": d}, st.one_of(_ints, st.sampled_from(["-Infinity", "x"]))),
    st.just({"bytesValue": "!"}),
    st.just({"stringValue": "a", "boolValue": True}),
    st.just({"string_value": "a"}),
    st.just({"stringValue": None}),
)


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    kv = st.fixed_dictionaries({"key": st.sampled_from(_KEYS), "value": inner})
    return st.one_of(
        st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(inner, max_size=3)),
        st.builds(lambda v: {"kvlistValue": {"values": v}}, st.lists(kv, max_size=3)),
    )


_CLEAN = st.recursive(_clean_scalar, _nested, max_leaves=6)
_ODD = st.recursive(st.one_of(_clean_scalar, _odd_scalar), _nested, max_leaves=6)


@st.composite
def _request(draw: st.DrawFn) -> dict[str, Any]:
    clean = draw(st.booleans())  # half the requests in the plain shape, so the fast path has its share
    values = _CLEAN if clean else _ODD
    attribute = st.fixed_dictionaries({"key": st.sampled_from(_KEYS), "value": values})
    if not clean:
        attribute = st.one_of(
            attribute, st.fixed_dictionaries({"key": st.sampled_from(_KEYS)}), st.just({"value": {"stringValue": "k"}})
        )
    attributes = st.lists(attribute, max_size=5, unique_by=(lambda a: a.get("key")) if clean else None)
    ids_16, ids_8 = ([_IDS_16[i] for i in (0, 1, 3)], [_IDS_8[i] for i in (0, 2)]) if clean else (_IDS_16, _IDS_8)
    logs = draw(st.booleans())
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item: dict[str, Any] = {
            "traceId": draw(st.sampled_from(ids_16)),
            "spanId": draw(st.sampled_from(ids_8)),
            "attributes": draw(attributes),
        }
        if logs:
            if draw(st.booleans()):
                item["eventName"] = draw(st.sampled_from(_EVENTS))
            if draw(st.booleans()):
                item["body"] = draw(values)
        else:
            item["name"] = draw(st.text(max_size=4) if clean else st.one_of(st.text(max_size=4), st.integers()))
        if not clean:
            item.update(
                draw(st.dictionaries(st.sampled_from(["kind", "unknownMember"]), st.integers(0, 3), max_size=2))
            )
        items.append(item)
    inner = {"logRecords": items} if logs else {"spans": items}
    outer = {"scopeLogs": [inner]} if logs else {"scopeSpans": [inner]}
    if draw(st.booleans()):
        outer["resource"] = {"attributes": draw(attributes)}
    return {"resourceLogs" if logs else "resourceSpans": [outer]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_request())
def test_generated_requests_agree_wherever_the_fast_path_answers(doc: dict[str, Any]) -> None:
    _agrees(_line(doc))


def test_the_generated_requests_reach_the_fast_path() -> None:
    """The property above is not vacuous: clean generated requests are read by the typed reader."""
    attributes = [
        {"key": "gen_ai.request.seed", "value": {"intValue": "7"}},
        {"key": "gen_ai.request.stop_sequences", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
        {"key": "gen_ai.x", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": "NaN"}}]}}},
        {"key": "run_identity.b", "value": {"bytesValue": "AAE="}},
        {"key": "server.address", "value": {"stringValue": "h"}},
    ]
    assert _agrees(_line(_span_doc(attributes=attributes, kind=3, status={})))
    log = {"traceId": TRACE, "spanId": SPAN, "eventName": "run_identity.manifest", "body": {"stringValue": "{}"}}
    assert _agrees(_line({"resourceLogs": [{"scopeLogs": [{"logRecords": [log, {"attributes": attributes}]}]}]}))


def test_base64_ids_take_the_fast_path() -> None:
    """A line with the base64 ids of protobuf's JSON mapping is read by the typed reader too."""
    doc = _span_doc(
        traceId=_IDS_16[3], spanId=_IDS_8[2], attributes=[{"key": "gen_ai.a", "value": {"boolValue": True}}]
    )
    assert _agrees(_line(doc))
