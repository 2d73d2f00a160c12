"""vf.Tamper suite: real exported data, altered one way at a time, fails verification with the right code and
leaves every other run verified. (Benign re-encodings: tests/test_verify_encodings.py.)"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import verify_fixtures as vf

from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition
from run_identity.core.keys import Ed25519Signer
from run_identity.core.signing import sign_run
from run_identity.core.statement import BindingStatement, encode_signature

# --- the pristine export, made once -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    """Five runs, exported by the real SDK pipeline into traces.jsonl and manifests.jsonl."""
    return vf.export_runs(tmp_path_factory.mktemp("pristine") / "export")


def _sign(statement: dict[str, str], signer: Ed25519Signer) -> str:
    return encode_signature(signer.sign(BindingStatement.from_json(statement).signing_input()))


def _flip(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


# --- the tamperings -----------------------------------------------------------------------------------------

vf.TamperFn = Callable[[vf.Tamper], None]
CASES: list[tuple[str, vf.TamperFn, dict[str, str]]] = []


def case(name: str, **expected: str) -> Callable[[vf.TamperFn], vf.TamperFn]:
    """Register a tampering; ``expected`` maps run labels (``extra`` for runs at new ids) to codes."""

    def register(fn: vf.TamperFn) -> vf.TamperFn:
        CASES.append((name, fn, expected))
        return fn

    return register


@case("one byte of one message", **{"multi-turn": "identity_mismatch"})
def _one_byte(t: vf.Tamper) -> None:
    t.body("multi-turn", lambda s: _flip(s, "Disc, hydraulic.", "Disc, hydraulik."))


@case("two messages swapped", **{"multi-turn": "identity_mismatch"})
def _swap_messages(t: vf.Tamper) -> None:
    doc = t.manifest("multi-turn")
    elements = doc["components"]["messages"]["elements"]
    elements[0], elements[2] = elements[2], elements[0]
    t.set_manifest("multi-turn", doc)


@case("a temperature changed in the manifest", chat="identity_mismatch")
def _temperature_manifest(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["components"]["parameters"]["value"]["temperature"] = 0.9
    t.set_manifest("chat", doc)


@case("a temperature changed on the span", chat="telemetry_mismatch")
def _temperature_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "gen_ai.request.temperature", 0.9)


@case("a temperature changed with its component digest recomputed", chat="identity_mismatch")
def _temperature_redigested(t: vf.Tamper) -> None:
    from run_identity.core.digest import component_digest

    doc = t.manifest("chat")
    params = doc["components"]["parameters"]
    params["value"]["temperature"] = 0.9
    params["digest"] = component_digest("parameters", canonicalize(params["value"]))
    t.set_manifest("chat", doc)


@case("the model changed on the span", rag="telemetry_mismatch")
def _model_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("rag"), "gen_ai.request.model", "claude-opus-4")


@case("the operation changed on the span", chat="telemetry_mismatch")
def _operation_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "gen_ai.operation.name", "text_completion")


@case("stop sequences reordered on the span", tools="telemetry_mismatch")
def _stops_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("tools"), "gen_ai.request.stop_sequences", ["END", "\n\n"])


@case("a parameter added on the span that the manifest lacks", rag="telemetry_mismatch")
def _extra_parameter(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("rag"), "gen_ai.request.seed", 42)


@case("manifests of two runs swapped", chat="binding_mismatch", rag="binding_mismatch")
def _swap_manifests(t: vf.Tamper) -> None:
    a, b = t.record("chat"), t.record("rag")
    a["body"], b["body"] = b["body"], a["body"]


@case("the span signed by another key", chat="bad_signature")
def _span_other_key(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "run_identity.signature", _sign(t.manifest("chat")["statement"], t.other))


@case("the manifest signed by another key", chat="bad_signature")
def _manifest_other_key(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["signature"] = _sign(doc["statement"], t.other)
    t.set_manifest("chat", doc)


@case("the span's key id swapped to another trusted key", chat="bad_signature")
def _key_id_trusted(t: vf.Tamper) -> None:
    t.keyring_signers.append(t.other)
    vf.set_attribute(t.span("chat"), "run_identity.key_id", t.other.key_id)


@case("the span's key id swapped to an untrusted key", chat="unknown_key")
def _key_id_untrusted(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "run_identity.key_id", t.other.key_id)


@case("a run re-signed throughout by an untrusted key", rag="unknown_key")
def _resigned(t: vf.Tamper) -> None:
    doc = t.manifest("rag")
    doc["statement"]["key_id"] = t.other.key_id
    doc["signature"] = _sign(doc["statement"], t.other)
    t.set_manifest("rag", doc)
    span = t.span("rag")
    vf.set_attribute(span, "run_identity.key_id", t.other.key_id)
    vf.set_attribute(span, "run_identity.signature", doc["signature"])


@case("the identity attribute edited on the span", chat="bad_signature")
def _identity_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "run_identity.id", t.export.run("rag").identity)


@case("the span's identity garbled and its key id removed", chat="malformed")
def _identity_removed(t: vf.Tamper) -> None:
    span = t.span("chat")
    vf.set_attribute(span, "run_identity.id", None)
    vf.set_attribute(span, "run_identity.key_id", None)
    vf.set_attribute(span, "run_identity.id", "sha256:not-a-digest")


@case("all run_identity attributes stripped from the span", chat="binding_mismatch")
def _stripped(t: vf.Tamper) -> None:
    span = t.span("chat")
    for key in ("id", "signature", "key_id", "spec_version", "declared_at"):
        vf.set_attribute(span, f"run_identity.{key}", None)


@case("the signature attribute removed from the span", tools="bad_signature")
def _signature_removed(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("tools"), "run_identity.signature", None)


@case("one bit of the span's signature flipped", tools="bad_signature")
def _signature_bit(t: vf.Tamper) -> None:
    span = t.span("tools")
    raw = bytearray(base64.b64decode(vf.attribute(span, "run_identity.signature")))
    raw[10] ^= 1
    vf.set_attribute(span, "run_identity.signature", base64.b64encode(bytes(raw)).decode())


@case("declared_at edited on the span", nfc="bad_signature")
def _declared_at_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("nfc"), "run_identity.declared_at", "2020-01-01T00:00:00.000000Z")


@case("declared_at edited in the manifest statement", nfc="bad_signature")
def _declared_at_manifest(t: vf.Tamper) -> None:
    doc = t.manifest("nfc")
    doc["statement"]["declared_at"] = "2020-01-01T00:00:00.000000Z"
    t.set_manifest("nfc", doc)


@case("the trace id edited on the span", chat="span_missing", extra="bad_signature")
def _trace_id_span(t: vf.Tamper) -> None:
    span = t.span("chat")
    span["traceId"] = "f" * 32


@case("the trace id edited on the manifest record", chat="manifest_missing", extra="binding_mismatch")
def _trace_id_record(t: vf.Tamper) -> None:
    t.record("chat")["traceId"] = "e" * 32


@case("the trace id edited in the manifest statement", chat="bad_signature")
def _trace_id_statement(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["statement"]["trace_id"] = "d" * 32
    t.set_manifest("chat", doc)


@case("a manifest dropped", tools="manifest_missing")
def _manifest_dropped(t: vf.Tamper) -> None:
    for scope in t.manifests[0]["resourceLogs"][0]["scopeLogs"]:
        scope["logRecords"] = [r for r in scope["logRecords"] if r["spanId"] != t.export.run("tools").span_id]


@case("a span dropped", tools="span_missing")
def _span_dropped(t: vf.Tamper) -> None:
    for scope in t.traces[0]["resourceSpans"][0]["scopeSpans"]:
        scope["spans"] = [s for s in scope["spans"] if s["spanId"] != t.export.run("tools").span_id]


@case("a second manifest with the same identity but other content", **{"multi-turn": "identity_mismatch"})
def _second_manifest(t: vf.Tamper) -> None:
    forged = t.manifest("multi-turn")
    forged["components"]["messages"]["elements"][0]["value"]["parts"][0]["content"] = "My brakes are fine."
    record = orjson.loads(orjson.dumps(t.record("multi-turn")))
    record["body"]["stringValue"] = canonicalize(forged).decode()
    t.manifests[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append(record)


@case("a second, validly signed manifest for the same span", chat="binding_mismatch")
def _second_signed(t: vf.Tamper) -> None:
    run = t.export.run("chat")
    other = dict(vf.compositions()[0][1], parameters={"temperature": 0.3, "max_tokens": 201})
    signed = sign_run(Composition.from_dict(other), vf.signer(), trace_id=run.trace_id, span_id=run.span_id)
    record = orjson.loads(orjson.dumps(t.record("chat")))
    record["body"]["stringValue"] = signed.manifest_json().decode()
    t.manifests[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append(record)


@case("a prompt re-normalized from NFC to NFD", nfc="identity_mismatch")
def _nfd(t: vf.Tamper) -> None:
    t.body("nfc", lambda s: _flip(s, vf.NFC_TEXT, unicodedata.normalize("NFD", vf.NFC_TEXT)))


@case("a message removed from the manifest", **{"multi-turn": "identity_mismatch"})
def _message_removed(t: vf.Tamper) -> None:
    doc = t.manifest("multi-turn")
    del doc["components"]["messages"]["elements"][1]
    t.set_manifest("multi-turn", doc)


@case("a tool description changed", tools="identity_mismatch")
def _tool_changed(t: vf.Tamper) -> None:
    t.body("tools", lambda s: _flip(s, "Find a customer's orders.", "Find any customer's orders."))


@case("a retrieved document edited", rag="identity_mismatch")
def _document_changed(t: vf.Tamper) -> None:
    t.body("rag", lambda s: _flip(s, "Frames: 10 years.", "Frames: 1 year."))


@case("an extension value changed", rag="identity_mismatch")
def _extension_changed(t: vf.Tamper) -> None:
    t.body("rag", lambda s: _flip(s, "u-17", "u-18"))


@case("an element withheld under a wrong digest", chat="identity_mismatch")
def _withheld_wrong(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["components"]["messages"]["elements"][0] = {"digest": "sha256:" + "ab" * 32, "withheld": True}
    t.set_manifest("chat", doc)


@case("the manifest's content replaced by another run's, digests consistent", chat="identity_mismatch")
def _content_replaced(t: vf.Tamper) -> None:
    doc, other = t.manifest("chat"), t.manifest("nfc")
    doc["components"], doc["identity"] = other["components"], other["identity"]
    t.set_manifest("chat", doc)


@case("the manifest's identity replaced everywhere by another run's", chat="bad_signature")
def _identity_manifest(t: vf.Tamper) -> None:
    doc, other = t.manifest("chat"), t.manifest("nfc")
    doc["components"], doc["identity"] = other["components"], other["identity"]
    doc["statement"]["identity"] = other["identity"]
    t.set_manifest("chat", doc)
    vf.set_attribute(t.span("chat"), "run_identity.id", other["identity"])


@case("the manifest record's identity attribute edited", tools="binding_mismatch")
def _record_identity(t: vf.Tamper) -> None:
    vf.set_attribute(t.record("tools"), "run_identity.id", t.export.run("chat").identity)


@case("the manifest record's model attribute edited", tools="telemetry_mismatch")
def _record_model(t: vf.Tamper) -> None:
    vf.set_attribute(t.record("tools"), "gen_ai.request.model", "gpt-4o")


@case("an unknown member added to the manifest", tools="malformed")
def _unknown_member(t: vf.Tamper) -> None:
    doc = t.manifest("tools")
    doc["note"] = "added later"
    t.set_manifest("tools", doc)


@case("the manifest body garbled", tools="malformed")
def _garbled(t: vf.Tamper) -> None:
    t.body("tools", lambda s: s[: len(s) // 2])


@case("the span's spec version changed", chat="malformed")
def _spec_version(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "run_identity.spec_version", "2")


@case("a second span with the same ids and other attributes", rag="binding_mismatch")
def _duplicate_span(t: vf.Tamper) -> None:
    twin = orjson.loads(orjson.dumps(t.span("rag")))
    vf.set_attribute(twin, "gen_ai.request.max_tokens", 999)
    t.traces[0]["resourceSpans"][0]["scopeSpans"][0]["spans"].append(twin)


@case("a manifest member repeated with another value (readers disagree on which holds)", chat="malformed")
def _repeated_member(t: vf.Tamper) -> None:
    # A parser that keeps the last "temperature" reads the signed value, one that keeps the first reads 0.9.
    t.body("chat", lambda s: _flip(s, '"value":{"max_tokens"', '"value":{"temperature":0.9,"max_tokens"'))


@case("the span's identity attribute repeated with another value", chat="malformed")
def _repeated_attribute(t: vf.Tamper) -> None:
    span = t.span("chat")
    (first,) = [kv for kv in span["attributes"] if kv["key"] == "run_identity.id"]
    other = {"key": "run_identity.id", "value": {"stringValue": "sha256:" + "0" * 64}}
    span["attributes"].insert(span["attributes"].index(first), other)


# --- forgeries that passed before the verdict issue (each reproduces one attack) ---------------------------

_UNKNOWN_SALT_ID = "sha256:" + "0" * 64


@case("an unsigned salt_id added to an unsalted manifest whose content was rewritten", chat="identity_mismatch")
def _salt_id_switches_content_check_off(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["components"]["parameters"]["value"]["temperature"] = 0.9
    doc["salt_id"] = _UNKNOWN_SALT_ID
    t.set_manifest("chat", doc)


@case("an unsigned salt_id added to an unsalted manifest, content untouched", tools="identity_mismatch")
def _salt_id_added(t: vf.Tamper) -> None:
    doc = t.manifest("tools")
    doc["salt_id"] = _UNKNOWN_SALT_ID
    t.set_manifest("tools", doc)


@case("a salt_id added to the manifest's signed statement", chat="bad_signature")
def _salt_id_in_statement(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["salt_id"] = doc["statement"]["salt_id"] = _UNKNOWN_SALT_ID
    t.set_manifest("chat", doc)


@case("a run_identity.salt_id attribute added to the span", rag="bad_signature")
def _salt_id_on_span(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("rag"), "run_identity.salt_id", _UNKNOWN_SALT_ID)


@case("a receipt reporting another model than the declared one", chat="model_substituted")
def _receipt_substitutes(t: vf.Tamper) -> None:
    t.add_receipt("chat", response_model="gpt-3.5-turbo")


@case(
    "model withheld, the span's model set to the served one, a substituting receipt",
    chat="model_substituted",
)
def _hidden_substitution(t: vf.Tamper) -> None:
    doc = t.manifest("chat")
    doc["components"]["model"] = {"digest": doc["components"]["model"]["digest"], "withheld": True}
    t.set_manifest("chat", doc)
    vf.set_attribute(t.span("chat"), "gen_ai.request.model", "gpt-3.5-turbo")
    vf.set_attribute(t.record("chat"), "gen_ai.request.model", "gpt-3.5-turbo")
    t.add_receipt("chat", response_model="gpt-3.5-turbo")


@case("a span carrying both run_identity.id and run_identity.error", tools="malformed")
def _id_and_error(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("tools"), "run_identity.error", "CompositionError: parameters.bogus")
    t.add_receipt("tools", response_model="gpt-3.5-turbo")


@case("a receipt whose request_model is not the declared model", rag="binding_mismatch")
def _receipt_request_model(t: vf.Tamper) -> None:
    t.add_receipt("rag", request_model="claude-opus-4", response_model="claude-opus-4")


@case("two receipts of one run naming different outputs", nfc="binding_mismatch")
def _two_receipts(t: vf.Tamper) -> None:
    t.add_receipt("nfc")
    t.add_receipt("nfc", output=[{"role": "assistant", "parts": [{"type": "text", "content": "Other."}]}])


@case("a receipt signed by an untrusted key", **{"multi-turn": "unknown_key"})
def _receipt_untrusted(t: vf.Tamper) -> None:
    t.add_receipt("multi-turn", signer=t.other)


@case("a receipt naming another run's identity", chat="binding_mismatch")
def _receipt_other_identity(t: vf.Tamper) -> None:
    t.add_receipt("chat", identity=t.export.run("rag").identity)


@case("a receipt member named twice (output)", tools="malformed")
def _receipt_output_twice(t: vf.Tamper) -> None:
    record = t.add_receipt("tools")
    body = record["body"]["stringValue"]
    record["body"]["stringValue"] = body[:-1] + ',"output":[]}'


@case("a manifest statement member named twice", chat="malformed")
def _statement_member_twice(t: vf.Tamper) -> None:
    t.body("chat", lambda s: _flip(s, '"statement":{', '"statement":{"identity":"sha256:' + "0" * 64 + '",'))


@case("a manifest member repeated inside a value nested 1000 deep", rag="malformed")
def _deep_repeat(t: vf.Tamper) -> None:
    deep = "[" * 1000 + '{"a":1,"a":2}' + "]" * 1000
    t.body("rag", lambda s: _flip(s, '"value":{"max_tokens"', '"value":{"deep":' + deep + ',"max_tokens"'))


@case("a span delivered twice, one copy with temperature=true (the manifest says 1.0)", tools="binding_mismatch")
def _span_copy_bool(t: vf.Tamper) -> None:
    copy = orjson.loads(orjson.dumps(t.span("tools")))
    vf.set_attribute(copy, "gen_ai.request.temperature", True)
    t.traces.append({"resourceSpans": [{"scopeSpans": [{"spans": [copy]}]}]})


@case("a manifest record delivered twice, one copy with another model attribute", rag="telemetry_mismatch")
def _manifest_copy_attribute(t: vf.Tamper) -> None:
    copy = orjson.loads(orjson.dumps(t.record("rag")))
    vf.set_attribute(copy, "gen_ai.request.model", "claude-opus-4")
    t.manifests.append({"resourceLogs": [{"scopeLogs": [{"logRecords": [copy]}]}]})


@case("a span given both spanId and span_id", chat="malformed")
def _camel_and_snake(t: vf.Tamper) -> None:
    t.span("chat")["span_id"] = t.span("chat")["spanId"]


@case("a manifest record given both traceId and trace_id", tools="malformed")
def _camel_and_snake_log(t: vf.Tamper) -> None:
    t.record("tools")["trace_id"] = t.record("tools")["traceId"]


@case("an AnyValue with two kinds on the span's model", rag="malformed")
def _two_kinds(t: vf.Tamper) -> None:
    for kv in t.span("rag")["attributes"]:
        if kv["key"] == "gen_ai.request.model":
            kv["value"]["intValue"] = "7"


@case("an OTLP/JSON member named twice in a span (its line unreadable)", nfc="span_missing", extra="malformed")
def _json_member_twice(t: vf.Tamper) -> None:
    t.traces = vf.rebatch(t.traces, 1)
    t.span("nfc")["name"] = "MARK-nfc"
    t.edit_text("traces.jsonl", '"name":"MARK-nfc"', '"name":"chat","name":"MARK-nfc"')


@case("a log record whose event_name and event.name attribute differ", chat="malformed")
def _event_names_differ(t: vf.Tamper) -> None:
    t.record("chat")["attributes"].append({"key": "event.name", "value": {"stringValue": "run_identity.receipt"}})


@case("the manifest record's key id attribute edited", nfc="binding_mismatch")
def _record_key_id(t: vf.Tamper) -> None:
    vf.set_attribute(t.record("nfc"), "run_identity.key_id", "A" * 43)


@case("the span's model changed to the served model, a receipt confirming it", chat="telemetry_mismatch")
def _span_model_served(t: vf.Tamper) -> None:
    vf.set_attribute(t.span("chat"), "gen_ai.request.model", "gpt-3.5-turbo")
    t.add_receipt("chat", response_model="gpt-3.5-turbo")


@case("a NaN in the manifest body", **{"multi-turn": "malformed"})
def _nan(t: vf.Tamper) -> None:
    t.body("multi-turn", lambda s: _flip(s, '"value":{"max_tokens"', '"value":{"x":NaN,"max_tokens"'))


@case("a manifest salt_id given as null", tools="malformed")
def _salt_null(t: vf.Tamper) -> None:
    t.body("tools", lambda s: s[:-1] + ',"salt_id":null}')


@case("the span's ANSI-escaped run_identity.error replacing its identity", nfc="binding_mismatch")
def _ansi_error(t: vf.Tamper) -> None:
    span = t.span("nfc")
    span["attributes"] = [kv for kv in span["attributes"] if not kv["key"].startswith("run_identity.")]
    vf.set_attribute(span, "run_identity.error", "\x1b[2J\x1b[HPASS: every run verified")


@case("a traces line that also holds resourceLogs (its logs would be lost)", chat="span_missing", extra="malformed")
def _both_signals(t: vf.Tamper) -> None:
    t.traces = vf.rebatch(t.traces, 1)
    doc = next(d for d in t.traces if t.span("chat") in d["resourceSpans"][0]["scopeSpans"][0]["spans"])
    doc["resourceLogs"] = [{"scopeLogs": [{"logRecords": [orjson.loads(orjson.dumps(t.record("chat")))]}]}]


@pytest.mark.parametrize(("name", "tamper", "expected"), CASES, ids=[c[0] for c in CASES])
def test_tampering_is_detected(
    pristine: vf.Export, tmp_path: Path, name: str, tamper: vf.TamperFn, expected: dict[str, str]
) -> None:
    """Each tampering gives the expected code to the runs it touches and leaves every other run verified."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    tamper(t)
    t.save()
    codes = vf.codes_by_label(vf.verify_with([t.directory], t.keyring_signers), pristine)
    extra = {k: v for k, v in codes.items() if k.startswith("+")}
    want_extra = expected.get("extra")
    assert sorted(extra.values()) == ([want_extra] if want_extra else [])
    for run in pristine.runs:
        assert codes[run.label] == expected.get(run.label, "verified"), run.label


def test_the_suite_is_large_enough() -> None:
    """The issues ask for at least 25 distinct tamperings, then 25 more (the verdict issue)."""
    assert len(CASES) >= 70
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_truncated_file_is_malformed_and_the_rest_still_verifies(pristine: vf.Export, tmp_path: Path) -> None:
    """A manifests file cut mid-line: the cut line is malformed (file and line), other files still checked."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    t.manifests = vf.rebatch(t.manifests, 1)
    t.save()
    path = t.directory / "manifests.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])
    report = vf.verify_with([t.directory], t.keyring_signers)
    codes = vf.codes_by_label(report, pristine)
    (loose,) = [r for r in report.results() if r.trace_id is None]
    assert loose.code == "malformed"
    assert loose.findings[0].location == f"{path}:5"
    assert codes["nfc"] == "manifest_missing"
    assert [codes[r.label] for r in pristine.runs[:4]] == ["verified"] * 4


def test_a_truncated_proto_frame_is_malformed_with_its_offset(pristine: vf.Export, tmp_path: Path) -> None:
    """The length-prefixed proto format cut inside a frame: malformed at that frame's byte offset."""
    framed = vf.write_framed(tmp_path / "manifests.bin", vf.rebatch(vf.read_lines(pristine.manifests), 2))
    data = framed.read_bytes()
    framed.write_bytes(data[:-10])
    report = vf.verify_with([pristine.traces, framed], [vf.signer()])
    codes = vf.codes_by_label(report, pristine)
    (loose,) = [r for r in report.results() if r.trace_id is None]
    assert loose.code == "malformed" and "truncated" in loose.findings[0].message
    assert loose.findings[0].location is not None and loose.findings[0].location.startswith(f"{framed}@")
    assert codes["nfc"] == "manifest_missing"
    assert sum(c == "verified" for c in codes.values()) == 4


def test_a_corrupt_protobuf_file_is_malformed(pristine: vf.Export, tmp_path: Path) -> None:
    """A raw protobuf request that no longer parses is malformed at offset 0; the spans are still checked."""
    raw = bytearray(vf.to_proto(vf.read_lines(pristine.manifests)[0]))
    raw[1] ^= 0x7F
    (tmp_path / "manifests.pb").write_bytes(bytes(raw))
    report = vf.verify_with([pristine.traces, tmp_path / "manifests.pb"], [vf.signer()])
    codes = [r.code for r in report.results()]
    assert codes == ["manifest_missing"] * 5 + ["malformed"]
    assert list(report.results())[-1].findings[0].location == f"{tmp_path / 'manifests.pb'}@0"
