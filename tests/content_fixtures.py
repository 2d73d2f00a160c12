"""Captured content (docs/spec.md §12 step 6) written into OTLP/JSON exports, as GenAI instrumentations write it.

``conventions(...)`` renders a composition's messages, instructions and tools the way the OpenTelemetry Python
instrumentations (util-genai) serialize them: ``{"role", "parts", "name": null}`` messages, parts with their
``type`` last, ``{"name", "description", "parameters", "type"}`` tools. ``set_content`` puts one attribute on a
span or log record as a JSON string or as a structured AnyValue; ``add_event`` and ``add_log_record`` carry it on a
span event or on a log record with the run's ids.
"""

from __future__ import annotations

import json
from typing import Any

INPUT = "gen_ai.input.messages"
SYSTEM = "gen_ai.system_instructions"
TOOLS = "gen_ai.tool.definitions"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"


def any_value(value: Any) -> dict[str, Any]:
    """A JSON value as an OTLP/JSON AnyValue (objects as kvlistValue, arrays as arrayValue)."""
    if value is None:
        return {}
    if type(value) is bool:
        return {"boolValue": value}
    if type(value) is int:
        return {"intValue": str(value)}
    if type(value) is float:
        return {"doubleValue": value}
    if type(value) is str:
        return {"stringValue": value}
    if type(value) is list:
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if type(value) is dict:
        return {"kvlistValue": {"values": [{"key": k, "value": any_value(v)} for k, v in value.items()]}}
    raise TypeError(type(value))


def _part(part: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in part.items() if k != "type"}
    out["type"] = part["type"]
    return out


def conventions(composition: dict[str, Any]) -> dict[str, Any]:
    """The content attributes an instrumentation writes for ``composition`` (absent components: none)."""
    out: dict[str, Any] = {}
    if composition.get("messages"):
        out[INPUT] = [
            {"role": m["role"], "parts": [_part(p) for p in m["parts"]], "name": m.get("name")}
            for m in composition["messages"]
        ]
    if composition.get("instructions"):
        out[SYSTEM] = [_part(p) for p in composition["instructions"]]
    if composition.get("tools"):
        out[TOOLS] = [
            {"name": t["name"], "description": t.get("description"), "parameters": t.get("parameters"), "type": t["type"]}
            for t in composition["tools"]
        ]
    return out


def encoded(value: Any, form: str) -> dict[str, Any]:
    """``value`` as an AnyValue: ``json`` (a string of compact JSON text, as on spans) or ``structured``."""
    if form == "json":
        return {"stringValue": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}
    return any_value(value)


def set_content(obj: dict[str, Any], key: str, value: Any, form: str = "json") -> None:
    """Put (replace) content attribute ``key`` on a span, span event or log record."""
    items = [kv for kv in obj.get("attributes", []) if kv["key"] != key]
    items.append({"key": key, "value": encoded(value, form)})
    obj["attributes"] = items


def set_raw(obj: dict[str, Any], key: str, anyvalue: dict[str, Any]) -> None:
    """Put attribute ``key`` with an AnyValue given as is (for broken or ambiguous content)."""
    items = [kv for kv in obj.get("attributes", []) if kv["key"] != key]
    items.append({"key": key, "value": anyvalue})
    obj["attributes"] = items


def add_event(span: dict[str, Any], content: dict[str, Any], name: str = DETAILS_EVENT, form: str = "structured") -> None:
    """A span event named ``name`` carrying ``content`` (attribute -> value)."""
    event: dict[str, Any] = {"timeUnixNano": span.get("endTimeUnixNano", "0"), "name": name, "attributes": []}
    for key, value in content.items():
        set_content(event, key, value, form)
    span.setdefault("events", []).append(event)


def log_record(
    trace_id: str, span_id: str, content: dict[str, Any], name: str = DETAILS_EVENT, form: str = "structured"
) -> dict[str, Any]:
    """A GenAI event as an OTLP/JSON log record of the run, carrying ``content``."""
    record: dict[str, Any] = {"eventName": name, "traceId": trace_id, "spanId": span_id, "severityNumber": 5}
    record["attributes"] = [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]
    for key, value in content.items():
        set_content(record, key, value, form)
    return record


def logs_line(*records: dict[str, Any]) -> dict[str, Any]:
    """One ExportLogsServiceRequest (an OTLP/JSON line) holding ``records``."""
    scope = {"scope": {"name": "opentelemetry.instrumentation.genai.openai"}, "logRecords": list(records)}
    return {"resourceLogs": [{"resource": {}, "scopeLogs": [scope]}]}
