"""docs/spec.md §12 step 6, captured content: one test per rule, on exports of the real SDK pipeline
(tests/verify_fixtures.py) edited as an instrumentation would have written them (tests/content_fixtures.py)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import content_fixtures as cf
import pytest
import verify_fixtures as vf
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from run_identity import Composition, compute_identity
from run_identity.core.keys import Keyring
from run_identity.core.manifest import Manifest, build_manifest_json
from run_identity.core.statement import run_statement
from run_identity.verify import Policy, VerificationResult, Verifier
from run_identity.verify._content import capture, content_mismatches, manifest_views

SALT = bytes(range(32))
QUESTION = "Hi! Do you sell cargo bikes?"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    return vf.export_runs(tmp_path_factory.mktemp("pristine") / "export")


def composition(label: str) -> dict[str, Any]:
    return copy.deepcopy(dict(vf.compositions())[label])


def captured(label: str) -> dict[str, Any]:
    return cf.conventions(composition(label))


def results(directory: Path, **options: Any) -> dict[str, VerificationResult]:
    report = Verifier(Keyring([vf.signer().public_key]), Policy(), **options).verify([directory])
    return {r.span_id or "": r for r in report.results()}


def result_of(export: vf.Export, directory: Path, label: str, **options: Any) -> VerificationResult:
    return results(directory, **options)[export.run(label).span_id]


def edited(pristine: vf.Export, tmp_path: Path) -> vf.Tamper:
    return vf.tamper_copy(pristine, tmp_path / "export")


def test_every_form_and_carrier_of_the_declared_content_verifies(pristine: vf.Export, tmp_path: Path) -> None:
    """JSON text and structured on the span, a span event, a log record: the five runs verify with no finding
    and nothing named unchecked, whichever carrier holds the content."""
    t = edited(pristine, tmp_path)
    forms = ["json", "structured"]
    for i, (label, _) in enumerate(vf.compositions()):
        content = captured(label)
        run = t.export.run(label)
        for key, value in content.items():
            cf.set_content(t.span(label), key, value, forms[i % 2])
        cf.add_event(t.span(label), content)
        t.manifests.append(cf.logs_line(cf.log_record(run.trace_id, run.span_id, content)))
    t.save()
    for result in results(t.directory).values():
        assert (result.code, result.findings, result.unchecked) == ("verified", (), ())


def test_the_issue_case_declared_spain_sent_portugal(pristine: vf.Export, tmp_path: Path) -> None:
    """One text changed in the capture: telemetry_mismatch at step 6, naming the attribute and the entry."""
    t = edited(pristine, tmp_path)
    content = captured("chat")
    content[cf.INPUT][0]["parts"][0]["content"] = "Hi! Do you sell road bikes?"
    cf.set_content(t.span("chat"), cf.INPUT, content[cf.INPUT])
    t.save()
    result = result_of(pristine, t.directory, "chat")
    assert result.code == "telemetry_mismatch" and not result.passed
    (finding,) = result.findings
    assert finding.step == 6
    assert finding.message == (
        "the span has gen_ai.input.messages that differs from the manifest's messages at entry 1, a text, tool "
        "call or tool response (1 shown, 1 declared)"
    )


def test_a_role_changed_is_a_mismatch_the_same_text_in_another_role(pristine: vf.Export, tmp_path: Path) -> None:
    t = edited(pristine, tmp_path)
    content = captured("chat")
    content[cf.INPUT][0]["role"] = "system"
    cf.set_content(t.span("chat"), cf.INPUT, content[cf.INPUT], "structured")
    t.save()
    assert result_of(pristine, t.directory, "chat").code == "telemetry_mismatch"


def test_a_message_added_or_dropped_is_a_mismatch(pristine: vf.Export, tmp_path: Path) -> None:
    t = edited(pristine, tmp_path)
    more = captured("multi-turn")[cf.INPUT] + [{"role": "user", "parts": [{"type": "text", "content": "Hello?"}]}]
    cf.set_content(t.span("multi-turn"), cf.INPUT, more)
    cf.set_content(t.span("chat"), cf.INPUT, [])
    t.save()
    found = results(t.directory)
    assert found[pristine.run("multi-turn").span_id].code == "telemetry_mismatch"
    assert "(4 shown, 3 declared)" in found[pristine.run("multi-turn").span_id].findings[0].message
    assert found[pristine.run("chat").span_id].code == "telemetry_mismatch"


def test_every_capture_is_compared_an_event_that_disagrees_with_the_span(pristine: vf.Export, tmp_path: Path) -> None:
    """The span's attribute is right, its event's is not: the event's finding makes the run a mismatch, with
    the event named as the carrier."""
    t = edited(pristine, tmp_path)
    right = captured("chat")
    wrong = copy.deepcopy(right)
    wrong[cf.SYSTEM][0]["content"] = "You are the sales assistant."
    for key, value in right.items():
        cf.set_content(t.span("chat"), key, value)
    cf.add_event(t.span("chat"), wrong)
    t.save()
    (finding,) = result_of(pristine, t.directory, "chat").findings
    assert finding.code == "telemetry_mismatch"
    assert finding.message.startswith(
        "the span's event 'gen_ai.client.inference.operation.details' has gen_ai.system_instructions"
    )


def test_tools_names_always_compared_optional_fields_only_when_given(pristine: vf.Export, tmp_path: Path) -> None:
    """A tool's description and parameters are compared when the capture gives them (null: not given); its
    name always; its type never (Anthropic custom tools are captured as function)."""
    tools = composition("tools")["tools"]
    bare = [{"name": tool["name"], "type": "custom", "description": None} for tool in tools]
    renamed = [dict(t, name="search_everything") if i == 0 else t for i, t in enumerate(captured("tools")[cf.TOOLS])]
    other_schema = copy.deepcopy(captured("tools")[cf.TOOLS])
    other_schema[1]["parameters"] = {"type": "object"}
    for capture_, code in ((bare, "verified"), (renamed, "telemetry_mismatch"), (other_schema, "telemetry_mismatch")):
        t = vf.tamper_copy(pristine, tmp_path / f"export-{code}-{len(str(capture_))}")
        cf.set_content(t.span("tools"), cf.TOOLS, capture_)
        t.save()
        assert result_of(pristine, t.directory, "tools").code == code


def test_a_component_the_manifest_lacks_is_compared_with_nothing(pristine: vf.Export, tmp_path: Path) -> None:
    """The chat run declares no tools: tool definitions on its span are a mismatch; an empty array is not."""
    t = edited(pristine, tmp_path)
    cf.set_content(t.span("chat"), cf.TOOLS, captured("tools")[cf.TOOLS])
    cf.set_content(t.span("nfc"), cf.TOOLS, [])
    t.save()
    found = results(t.directory)
    assert found[pristine.run("chat").span_id].code == "telemetry_mismatch"
    assert "2 tool definitions, the manifest declares 0" in found[pristine.run("chat").span_id].findings[0].message
    assert found[pristine.run("nfc").span_id].code == "verified"


def test_withheld_content_is_a_check_not_made_named_in_the_report(pristine: vf.Export, tmp_path: Path) -> None:
    """messages[0] withheld, the capture of messages different: no finding (it cannot be compared), the report
    says which capture was not compared and why; the instructions are still compared."""
    t = edited(pristine, tmp_path)
    content = captured("chat")
    content[cf.INPUT][0]["parts"][0]["content"] = "Anything at all"
    for key, value in content.items():
        cf.set_content(t.span("chat"), key, value)
    manifest = Manifest.from_json(t.record("chat")["body"]["stringValue"]).withhold("messages", 0)
    t.record("chat")["body"]["stringValue"] = manifest.to_json_bytes().decode()
    t.save()
    result = result_of(pristine, t.directory, "chat")
    assert (result.code, result.withheld) == ("verified", ("messages[0]",))
    assert result.unchecked == ("gen_ai.input.messages on the span not compared: messages[0] withheld",)
    content[cf.SYSTEM][0]["content"] = "Other instructions"
    cf.set_content(t.span("chat"), cf.SYSTEM, content[cf.SYSTEM])
    t.save()
    assert result_of(pristine, t.directory, "chat").code == "telemetry_mismatch"


def test_salted_content_without_its_salt_is_not_compared(tmp_path: Path) -> None:
    """A salted run whose salt the verifier lacks: content_unchecked, and the capture is named as not
    compared, never passed; with the salt, the same capture is compared (and here differs)."""
    salted = vf.export_runs(tmp_path / "salted", vf.compositions()[:1], salt=SALT)
    t = vf.tamper_copy(salted, tmp_path / "export")
    content = captured("chat")
    content[cf.INPUT][0]["parts"][0]["content"] = "Hi! Do you sell road bikes?"
    cf.set_content(t.span("chat"), cf.INPUT, content[cf.INPUT])
    t.save()
    without = result_of(salted, t.directory, "chat")
    assert {f.code for f in without.findings} == {"content_unchecked"}
    assert any("gen_ai.input.messages on the span not compared" in u and "salt" in u for u in without.unchecked)
    assert result_of(salted, t.directory, "chat", salts=[SALT]).code == "telemetry_mismatch"


def test_span_copies_that_differ_only_in_captured_content_are_binding_mismatch(
    pristine: vf.Export, tmp_path: Path
) -> None:
    """Step 5: a span delivered twice, its content once as JSON text and once structured (the same value in
    another AnyValue type): two different copies, binding_mismatch; the same copy twice counts once."""
    t = edited(pristine, tmp_path)
    content = captured("chat")
    cf.set_content(t.span("chat"), cf.INPUT, content[cf.INPUT], "json")
    t.traces.append(copy.deepcopy(t.traces[0]))
    t.save()
    assert result_of(pristine, t.directory, "chat").code == "verified"
    second = vf.find(vf.spans_of(t.traces[1:]), pristine.run("chat").span_id)
    cf.set_content(second, cf.INPUT, content[cf.INPUT], "structured")
    t.save()
    assert result_of(pristine, t.directory, "chat").code == "binding_mismatch"


def test_verdicts_do_not_depend_on_record_order(pristine: vf.Export, tmp_path: Path) -> None:
    t = edited(pristine, tmp_path)
    run = pristine.run("chat")
    wrong = captured("chat")
    wrong[cf.INPUT][0]["parts"][0]["content"] = "Other"
    t.manifests.append(cf.logs_line(cf.log_record(run.trace_id, run.span_id, wrong)))
    t.manifests.append(cf.logs_line(cf.log_record(run.trace_id, run.span_id, captured("chat"))))
    seen = set()
    for seed in range(3):
        random.Random(seed).shuffle(t.manifests)
        t.save()
        r = result_of(pristine, t.directory, "chat")
        seen.add((r.code, tuple(sorted(f.message for f in r.findings))))
    assert len(seen) == 1 and next(iter(seen))[0] == "telemetry_mismatch"


def test_log_records_of_captured_content_make_no_run(pristine: vf.Export, tmp_path: Path) -> None:
    """A content log record naming ids no span or manifest has is no run (nothing to compare it with); one
    without ids belongs to no run at all."""
    t = edited(pristine, tmp_path)
    t.manifests.append(cf.logs_line(cf.log_record("ab" * 16, "cd" * 8, captured("chat"))))
    t.manifests.append(cf.logs_line(cf.log_record("", "", captured("chat"))))
    t.save()
    found = results(t.directory)
    assert len(found) == len(pristine.runs) and all(r.code == "verified" for r in found.values())


@pytest.mark.parametrize(
    ("anyvalue", "code", "phrase"),
    [
        ({"stringValue": "[{"}, "telemetry_mismatch", "is not JSON text"),
        ({"stringValue": "[NaN]"}, "telemetry_mismatch", "is not JSON text"),
        ({"stringValue": '{"role": "user"}'}, "telemetry_mismatch", "is not an array of messages"),
        ({"stringValue": '[{"role": "user", "parts": [{"content": "x"}]}]'}, "telemetry_mismatch", "without a string type"),
        ({"arrayValue": {"values": [{"doubleValue": "NaN"}]}}, "telemetry_mismatch", "without a string role"),
        ({"intValue": "3"}, "telemetry_mismatch", "is not an array"),
        ({"stringValue": '[{"role": "user", "role": "user", "parts": []}]'}, "malformed", "without a single reading"),
        ({"stringValue": '[{"role": "\\ud800", "parts": []}]'}, "malformed", "lone surrogate"),
        ({"stringValue": '[{"role": "user", "parts": [], "n": 1e400}]'}, "malformed", "outside the range"),
    ],
)
def test_unreadable_content_is_a_mismatch_ambiguous_content_malformed(
    pristine: vf.Export, tmp_path: Path, anyvalue: dict[str, Any], code: str, phrase: str
) -> None:
    t = edited(pristine, tmp_path)
    cf.set_raw(t.span("chat"), cf.INPUT, anyvalue)
    t.save()
    result = result_of(pristine, t.directory, "chat")
    assert result.code == code
    assert any(phrase in f.message for f in result.findings), [f.message for f in result.findings]


def test_unreadable_content_is_not_compared_where_the_component_is_withheld(pristine: vf.Export, tmp_path: Path) -> None:
    t = edited(pristine, tmp_path)
    cf.set_raw(t.span("chat"), cf.INPUT, {"stringValue": "[{"})
    manifest = Manifest.from_json(t.record("chat")["body"]["stringValue"]).withhold("messages", None)
    t.record("chat")["body"]["stringValue"] = manifest.to_json_bytes().decode()
    t.save()
    result = result_of(pristine, t.directory, "chat")
    assert result.code == "verified" and result.unchecked == (
        "gen_ai.input.messages on the span not compared: messages withheld",
    )


def test_a_kvlist_naming_a_key_twice_is_malformed_in_protobuf_too(pristine: vf.Export, tmp_path: Path) -> None:
    """Structured content whose kvlist names a key twice, in a raw protobuf request: malformed."""
    t = edited(pristine, tmp_path)
    t.save()
    doc = t.traces[0]
    request = ExportTraceServiceRequest.FromString(vf.to_proto(doc))
    span_id = bytes.fromhex(pristine.run("chat").span_id)
    (span,) = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans if s.span_id == span_id]
    message = AnyValue()
    message.kvlist_value.values.extend(
        [KeyValue(key="role", value=AnyValue(string_value=r)) for r in ("user", "system")]
        + [KeyValue(key="parts", value=AnyValue())]
    )
    value = AnyValue()
    value.array_value.values.append(message)
    span.attributes.append(KeyValue(key=cf.INPUT, value=value))
    (t.directory / "traces.jsonl").unlink()
    (t.directory / "traces.pb").write_bytes(request.SerializeToString())
    assert result_of(pristine, t.directory, "chat").code == "malformed"


# --- the views themselves (docs/spec.md §12 step 6, "What is compared") ---------------------------------------


def _views(comp: dict[str, Any]) -> Any:
    return manifest_views(Manifest.from_json(_manifest_json(comp)))


def _manifest_json(comp: dict[str, Any]) -> str:
    identity = compute_identity(Composition.from_dict(comp))
    statement = run_statement(
        identity.id, trace_id="ab" * 16, span_id="cd" * 8, key_id=vf.signer().key_id, declared_at="2026-11-22T12:00:00.000000Z"
    )
    return build_manifest_json(identity, statement, bytes(64)).decode()


def _differences(comp: dict[str, Any], attribute: str, value: Any) -> list[str]:
    mismatches, not_made = content_mismatches([capture("the span", attribute, value)], _views(comp))
    assert not not_made
    return mismatches


def test_view_rules_on_messages() -> None:
    """Per message: texts (refusals included, empty ones left out), then tool calls (arguments as JSON
    values), then tool responses; message boundaries, names, media and reasoning are not compared."""
    comp = composition("chat")
    comp["messages"] = [
        {"role": "user", "parts": [{"type": "text", "content": ""}, {"type": "text", "content": "Q"}], "name": "ana"},
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "thinking"},
                {"type": "text", "content": "A"},
                {"type": "refusal", "refusal": "R"},
                {"type": "tool_call", "id": "c1", "name": "f", "arguments": '{"x": 1.0}'},
            ],
        },
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c2", "name": "g"}], "refusal": "No."},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"ok": True}}]},
        {"role": "user", "parts": [{"type": "uri", "modality": "image", "uri": "https://x.example/a.png"}]},
    ]
    same = [
        {"role": "user", "parts": [{"type": "text", "content": "Q"}], "name": None},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"x": 1}},
                {"type": "text", "content": "A"},
                {"type": "text", "content": "R"},
            ],
        },
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c2", "name": "g", "arguments": None}, {"type": "text", "content": "No."}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": {"ok": True}}]},
        {"role": "user", "parts": [{"type": "blob", "modality": "image", "content": "AAAA"}]},
    ]
    assert _differences(comp, cf.INPUT, same) == []
    assert _differences(comp, cf.INPUT, json.dumps(same)) == []
    for change in (
        lambda m: m[1]["parts"][0].update(arguments={"x": 2}),
        lambda m: m[1]["parts"][0].update(id="c9"),
        lambda m: m[1]["parts"][0].update(name="h"),
        lambda m: m[3]["parts"][0].update(response={"ok": 1}),  # true is not 1
        lambda m: m[1]["parts"].__setitem__(slice(1, 3), m[1]["parts"][2:0:-1]),  # two texts swapped
        lambda m: m[1].update(role="user"),
    ):
        other = copy.deepcopy(same)
        change(other)
        assert len(_differences(comp, cf.INPUT, other)) == 1, other


def test_bytes_values_read_as_base64_and_instruction_views() -> None:
    """A structured bytesValue is read as the standard base64 of its bytes; instructions compare their texts."""
    comp = composition("chat")
    comp["messages"][0]["parts"].append({"type": "tool_call_response", "response": "AQID"})
    captured_ = cf.conventions(comp)[cf.INPUT]
    captured_[0]["parts"][1]["response"] = b"\x01\x02\x03"
    assert _differences(comp, cf.INPUT, captured_) == []
    assert _differences(comp, cf.SYSTEM, [{"type": "text", "content": comp["instructions"][0]["content"]}]) == []
    assert len(_differences(comp, cf.SYSTEM, [{"type": "text", "content": "other"}])) == 1


def test_unmapped_and_withheld_extensions_make_the_comparison_impossible() -> None:
    comp = composition("chat")
    del comp["messages"]
    assert _views(comp)[0] == b""
    comp["extensions"] = {"input": "Hi"}
    assert "left unmapped in extensions" in str(_views(comp)[0])
    manifest = Manifest.from_json(_manifest_json(comp)).withhold("extensions", None)
    assert "extensions (which may hold the request's field) withheld" in str(manifest_views(manifest)[0])


def test_a_content_log_record_whose_ids_cannot_be_read_is_malformed(pristine: vf.Export, tmp_path: Path) -> None:
    """A log record read for its captured content follows step 1 like any record read: ids that are not hex
    (nor base64) are malformed, in OTLP/JSON and in protobuf alike."""
    keyring = Keyring([vf.signer().public_key])
    t = edited(pristine, tmp_path)
    t.manifests.append(cf.logs_line(cf.log_record("zz" * 16, "cd" * 8, captured("chat"))))
    t.save()
    report = Verifier(keyring, Policy()).verify([t.directory])
    loose = [r for r in report.results() if r.trace_id is None]
    assert [(r.code, "traceId" in r.findings[0].message) for r in loose] == [("malformed", True)]
    t.manifests.pop()
    t.save()
    request = ExportLogsServiceRequest.FromString(vf.to_proto(cf.logs_line(cf.log_record("ab" * 16, "cd" * 8, {}))))
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    record.trace_id = bytes(15)
    record.attributes.append(KeyValue(key=cf.INPUT, value=AnyValue(string_value="[]")))
    (t.directory / "content.pb").write_bytes(request.SerializeToString())
    report = Verifier(keyring, Policy()).verify([t.directory])
    loose = [r for r in report.results() if r.trace_id is None]
    assert [(r.code, "15 bytes" in r.findings[0].message) for r in loose] == [("malformed", True)]
