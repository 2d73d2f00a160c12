"""The ``decision-captured-content-*`` conformance cases (docs/spec.md §12 step 6, "Captured content").

Imported by ``scripts/gen_conformance.py``, which passes its ``decision`` writer and its ``_resign`` helper.
Each case puts the content an instrumentation captures (``tests/content_fixtures.py``) on the runs of the
pristine export: on the span, on a span event or on a log record, as JSON text or structured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import content_fixtures as cf
import verify_fixtures as vf

from run_identity.core.manifest import Manifest

Build = Callable[[vf.Tamper], None]


def _composition(label: str) -> dict[str, Any]:
    return copy.deepcopy(dict(vf.compositions())[label])


def _captured(label: str, change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """What an instrumentation captures of run ``label``'s request (after ``change`` to the composition)."""
    composition = _composition(label)
    if change is not None:
        change(composition)
    return cf.conventions(composition)


def _on_span(form: str, labels: tuple[str, ...] = ("chat", "tools"), change: Any = None) -> Build:
    def build(t: vf.Tamper) -> None:
        for label in labels:
            for key, value in _captured(label, change).items():
                cf.set_content(t.span(label), key, value, form)

    return build


def _sent_other_question(composition: dict[str, Any]) -> None:
    composition["messages"][0]["parts"][0]["content"] = "Hi! Do you sell road bikes?"


def _rewrites_composition() -> dict[str, Any]:
    """A conversation with tool calls, a refusal, an image and an empty text, as Annex A maps it."""
    composition = _composition("chat")
    composition["messages"] = [
        {"role": "user", "parts": [{"type": "text", "content": "Where is order TB-204518?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me look."},
                {"type": "tool_call", "id": "call_1", "name": "search_orders", "arguments": '{"email": "a@b.example"}'},
            ],
        },
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_2", "name": "get_weather", "arguments": ""}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "1 order: shipped"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_2", "response": "sunny"}]},
        {"role": "assistant", "parts": [], "content": None, "refusal": "I cannot share the address."},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": ""},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0KGgo="},
                {"type": "text", "content": "And this photo?"},
            ],
            "name": "ana",
        },
    ]
    return composition


def _rewritten_capture() -> list[dict[str, Any]]:
    """What genai-openai captures of that conversation: tool calls first, their arguments parsed, the two
    tool-call turns merged, the refusal as text, the empty text and the message name dropped, the image
    re-typed."""
    return [
        {"role": "user", "parts": [{"content": "Where is order TB-204518?", "type": "text"}], "name": None},
        {
            "role": "assistant",
            "parts": [
                {"arguments": {"email": "a@b.example"}, "name": "search_orders", "id": "call_1", "type": "tool_call"},
                {"content": "Let me look.", "type": "text"},
            ],
            "name": None,
        },
        {
            "role": "assistant",
            "parts": [{"arguments": None, "name": "get_weather", "id": "call_2", "type": "tool_call"}],
            "name": None,
        },
        {"role": "tool", "parts": [{"response": "1 order: shipped", "id": "call_1", "type": "tool_call_response"}]},
        {"role": "tool", "parts": [{"response": "sunny", "id": "call_2", "type": "tool_call_response"}]},
        {"role": "assistant", "parts": [{"content": "I cannot share the address.", "type": "text"}], "name": None},
        {
            "role": "user",
            "parts": [
                {"uri": "https://img.example/p.png", "modality": "image", "mime_type": None, "type": "uri"},
                {"content": "And this photo?", "type": "text"},
            ],
            "name": None,
        },
    ]


def captured_content(decision: Callable[..., None], resign: Callable[..., None]) -> None:
    """The cases of the captured-content decision."""

    def case(name: str, description: str, build: Build, **options: Any) -> None:
        decision(f"captured-content-{name}", description, build, **options)

    case(
        "span-json-text",
        "gen_ai.input.messages, gen_ai.system_instructions and gen_ai.tool.definitions on the spans as JSON text, "
        "as util-genai writes them (name null, type last): they equal the manifests' views, verified",
        _on_span("json"),
    )
    case(
        "span-structured",
        "the same content on the spans as structured AnyValues (arrays and kvlists): verified",
        _on_span("structured"),
    )

    def on_event(t: vf.Tamper) -> None:
        for label in ("chat", "tools"):
            cf.add_event(t.span(label), _captured(label))

    case(
        "span-event",
        "the content on a gen_ai.client.inference.operation.details event of each run span: verified",
        on_event,
    )
    case(
        "span-event-protobuf",
        "the same span events in raw protobuf requests: verified",
        on_event,
        encoding="raw",
    )

    def on_log_record(t: vf.Tamper) -> None:
        for label in ("chat", "tools"):
            run = t.export.run(label)
            t.manifests.append(cf.logs_line(cf.log_record(run.trace_id, run.span_id, _captured(label))))

    case(
        "log-record",
        "the content on gen_ai.client.inference.operation.details log records with the runs' ids, as the "
        "OpenTelemetry Python instrumentations emit them: verified",
        on_log_record,
    )
    case(
        "message-differs",
        "declared 'Hi! Do you sell cargo bikes?', the span's gen_ai.input.messages shows 'Hi! Do you sell road "
        "bikes?' was sent: telemetry_mismatch",
        _on_span("json", ("chat",), _sent_other_question),
        want={"chat": "telemetry_mismatch"},
    )

    def other_instructions(composition: dict[str, Any]) -> None:
        composition["instructions"][0]["content"] = "You are the sales assistant."

    case(
        "instructions-differ",
        "the span's gen_ai.system_instructions differ from the manifest's instructions: telemetry_mismatch",
        _on_span("structured", ("chat",), other_instructions),
        want={"chat": "telemetry_mismatch"},
    )

    def other_description(composition: dict[str, Any]) -> None:
        composition["tools"][0]["description"] = "Find any customer's orders and addresses."

    case(
        "tool-differs",
        "a tool definition's description in gen_ai.tool.definitions differs from the manifest's: telemetry_mismatch",
        _on_span("json", ("tools",), other_description),
        want={"tools": "telemetry_mismatch"},
    )

    def tools_without_optional_fields(t: vf.Tamper) -> None:
        tools = [{"name": tool["name"], "type": "function"} for tool in _composition("tools")["tools"]]
        cf.set_content(t.span("tools"), cf.TOOLS, tools)

    case(
        "tool-optional-fields",
        "tool definitions captured without description and parameters (optional in the conventions): the names "
        "are compared, verified",
        tools_without_optional_fields,
    )

    def log_record_disagrees(t: vf.Tamper) -> None:
        _on_span("json", ("chat",))(t)
        run = t.export.run("chat")
        content = _captured("chat", _sent_other_question)
        t.manifests.append(cf.logs_line(cf.log_record(run.trace_id, run.span_id, content)))

    case(
        "log-record-disagrees-with-span",
        "the span's content equals the manifest, the run's log record shows another question: every capture is "
        "compared, telemetry_mismatch",
        log_record_disagrees,
        want={"chat": "telemetry_mismatch"},
    )

    def tools_not_declared(t: vf.Tamper) -> None:
        cf.set_content(t.span("chat"), cf.TOOLS, _captured("tools")[cf.TOOLS])

    case(
        "component-absent",
        "the chat manifest has no tools component, its span shows tool definitions: telemetry_mismatch",
        tools_not_declared,
        want={"chat": "telemetry_mismatch"},
    )

    def withheld(t: vf.Tamper) -> None:
        _on_span("json", ("chat",), _sent_other_question)(t)
        manifest = Manifest.from_json(t.record("chat")["body"]["stringValue"]).withhold("messages", 0)
        t.record("chat")["body"]["stringValue"] = manifest.to_json_bytes().decode()

    case(
        "messages-withheld",
        "the manifest withholds messages[0]: gen_ai.input.messages cannot be compared (a check not made, named "
        "in the report), the instructions still are: verified",
        withheld,
    )

    def unmapped(t: vf.Tamper) -> None:
        composition = _composition("chat")
        composition.pop("messages")
        composition["extensions"] = {"messages": [{"role": "user", "content": "Hi! Do you sell cargo bikes?"}]}
        resign(t, "chat", composition)
        _on_span("json", ("chat",))(t)

    case(
        "unmapped-in-extensions",
        "no messages component, the request's messages left unmapped in extensions (Annex A rule 4): "
        "gen_ai.input.messages cannot be compared (a check not made), verified",
        unmapped,
    )

    def rewrites(t: vf.Tamper) -> None:
        resign(t, "chat", _rewrites_composition())
        cf.set_content(t.span("chat"), cf.INPUT, _rewritten_capture())

    case(
        "instrumentation-rewrites",
        "tool calls before the text, arguments parsed, two tool-call turns merged, a refusal as text, the empty "
        "text, the message name and the image not compared: the views are equal, verified",
        rewrites,
    )

    def rewrites_other_arguments(t: vf.Tamper) -> None:
        resign(t, "chat", _rewrites_composition())
        capture = _rewritten_capture()
        capture[1]["parts"][0]["arguments"] = {"email": "eve@b.example"}
        cf.set_content(t.span("chat"), cf.INPUT, capture)

    case(
        "tool-call-arguments-differ",
        "the same conversation with other tool call arguments in the capture: telemetry_mismatch",
        rewrites_other_arguments,
        want={"chat": "telemetry_mismatch"},
    )

    def raw(anyvalue: dict[str, Any]) -> Build:
        def build(t: vf.Tamper) -> None:
            cf.set_raw(t.span("chat"), cf.INPUT, anyvalue)

        return build

    case(
        "not-json-text",
        "gen_ai.input.messages is a string that is not JSON text (truncated): it does not show the declared "
        "content, telemetry_mismatch",
        raw({"stringValue": '[{"role":"user","parts":[{"content":"Hi! Do you sell car'}),
        want={"chat": "telemetry_mismatch"},
    )
    case(
        "not-the-shape",
        "gen_ai.input.messages is JSON text of an object, not an array of messages: telemetry_mismatch",
        raw({"stringValue": '{"role":"user","content":"Hi! Do you sell cargo bikes?"}'}),
        want={"chat": "telemetry_mismatch"},
    )
    case(
        "json-member-twice",
        "gen_ai.input.messages is JSON text naming a member twice (no single reading): malformed",
        raw({"stringValue": '[{"role":"user","role":"system","parts":[{"type":"text","content":"Hi"}]}]'}),
        want={"chat": "malformed"},
    )
    case(
        "kvlist-key-twice",
        "a structured gen_ai.input.messages whose message kvlist names role twice: malformed",
        raw(
            {
                "arrayValue": {
                    "values": [
                        {
                            "kvlistValue": {
                                "values": [
                                    {"key": "role", "value": {"stringValue": "user"}},
                                    {"key": "role", "value": {"stringValue": "system"}},
                                    {"key": "parts", "value": {"arrayValue": {"values": []}}},
                                ]
                            }
                        }
                    ]
                }
            }
        ),
        want={"chat": "malformed"},
    )

    def attribute_twice(t: vf.Tamper) -> None:
        run = t.export.run("chat")
        record = cf.log_record(run.trace_id, run.span_id, _captured("chat"))
        record["attributes"].append({"key": cf.INPUT, "value": {"stringValue": "[]"}})
        t.manifests.append(cf.logs_line(record))

    case(
        "attribute-twice-on-a-log-record",
        "the run's log record carries gen_ai.input.messages twice: malformed",
        attribute_twice,
        want={"chat": "malformed"},
    )
