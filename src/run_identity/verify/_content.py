"""Step 6's captured content: ``gen_ai.input.messages``, ``gen_ai.system_instructions`` and
``gen_ai.tool.definitions`` held against the manifest's ``messages``, ``instructions`` and ``tools``.

docs/spec.md §12 step 6 ("Captured content") is the rule. Both sides are reduced to a *view*: a list of
entries (the texts, tool calls and tool responses of the messages, with their roles; the instruction texts;
each tool's name, description and parameters), each entry kept as a 16-byte digest of its canonical form.
A view is what the run table keeps, so memory grows with the number of entries, never with their text.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from run_identity.core.canonical import canonicalize_elements
from run_identity.core.errors import CanonicalizationError
from run_identity.core.manifest import Manifest
from run_identity.core.strict_json import StrictJsonError, loads_strict
from run_identity.verify._codes import MALFORMED, TELEMETRY_MISMATCH, Finding

__all__ = [
    "CONTENT_ATTRIBUTES",
    "Capture",
    "ContentSummary",
    "ContentViews",
    "ambiguous_findings",
    "captures_of",
    "content_findings",
    "content_mismatches",
    "manifest_views",
    "summarize_content",
]

INPUT_MESSAGES = "gen_ai.input.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
#: The attributes that carry captured content, each with the component it is compared with.
COMPONENT_OF = {INPUT_MESSAGES: "messages", SYSTEM_INSTRUCTIONS: "instructions", TOOL_DEFINITIONS: "tools"}
CONTENT_ATTRIBUTES = tuple(COMPONENT_OF)
#: The request fields that Annex A maps to each component and, when it cannot, leaves in ``extensions``.
_UNMAPPED = {"messages": ("messages", "input"), "instructions": ("system", "instructions"), "tools": ("tools",)}
_SIZE = 16
#: A tool field the capture does not give (absent or null): not compared.
_NOT_GIVEN = bytes(_SIZE)
_TOOL_ENTRY = 3 * _SIZE
#: The views of messages, instructions and tools (in :data:`CONTENT_ATTRIBUTES` order): each the entries'
#: digests, or why the comparison cannot be made. Empty: no manifest content to compare with.
ContentViews = tuple["bytes | str", ...]


class _Unreadable(Exception):
    """Captured content that does not show a composition's content (telemetry_mismatch)."""


class _Ambiguous(Exception):
    """Captured JSON text with no single reading (malformed)."""


@dataclass(frozen=True, slots=True)
class Capture:
    """One content attribute in one carrier: the value's typed digest (copies), and its view or what is wrong."""

    carrier: str
    attribute: str
    raw: bytes
    view: bytes | None
    problem: str | None = None
    ambiguous: str | None = None


@dataclass(slots=True)
class ContentSummary:
    """A log record (not ours) carrying captured content for the run its ids name."""

    key: bytes
    source: int
    position: int
    index: int
    captures: tuple[Capture, ...]
    fingerprint: bytes


def summarize_content(record: Any, source: int) -> ContentSummary:
    """A :class:`~run_identity.verify._record_types.ContentRecord` reduced to its captures."""
    carrier = f"the log record {record.name[:80]!r}" if record.name else "a log record"
    captures = captures_of(carrier, record.attributes)
    fingerprint = hashlib.sha256(b"".join(c.attribute.encode() + c.raw for c in captures)).digest()[:_SIZE]
    key = bytes.fromhex(record.trace_id + record.span_id)
    return ContentSummary(key, source, record.position, record.index, captures, fingerprint)


def _typed(value: Any) -> Any:
    """The value with its AnyValue types spelled out: copies are the same only when equal with their types."""
    kind = type(value)
    if kind is list:
        return ["a", [_typed(v) for v in value]]
    if kind is dict:
        return ["k", sorted([str(k), _typed(v)] for k, v in value.items())]
    if kind is float:
        return ["d", value.hex()]
    if kind is int:
        return ["i", str(value)]
    if kind is bytes:
        return ["y", value.hex()]
    return [kind.__name__, value]


def _plain(value: Any) -> Any:
    """A structured capture as JSON: ``bytesValue`` as the standard base64 of its bytes (spec §2.2)."""
    kind = type(value)
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    if kind is list:
        return [_plain(v) for v in value]
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _read(value: Any) -> Any:
    if type(value) is not str:
        return _plain(value)
    try:
        return loads_strict(value)
    except StrictJsonError as exc:
        reason = exc.reason
        if reason.startswith(("not valid JSON", "not UTF-8")) or " is not JSON " in reason:
            raise _Unreadable(f"is not JSON text ({reason})") from None
        raise _Ambiguous(f"JSON text without a single reading: {exc}") from None


def _part_type(part: Any, where: str) -> str:
    if type(part) is not dict or type(part.get("type")) is not str:
        raise _Unreadable(f"has a part without a string type ({where})")
    kind: str = part["type"]
    return kind


def _id(part: dict[str, Any], where: str) -> str | None:
    found = part.get("id")
    if found is not None and type(found) is not str:
        raise _Unreadable(f"has a tool call id that is not a string ({where})")
    return found


def _arguments(arguments: Any) -> Any:
    """Tool call arguments as a JSON value: JSON text stands for its value, the empty string for null."""
    if type(arguments) is not str:
        return arguments
    if arguments == "":
        return None
    try:
        return loads_strict(arguments)
    except StrictJsonError:
        return arguments


def _message_entries(messages: Any) -> list[Any]:
    if type(messages) is not list:
        raise _Unreadable("is not an array of messages")
    entries: list[Any] = []
    for i, message in enumerate(messages):
        where = f"message {i + 1}"
        if type(message) is not dict or type(message.get("role")) is not str or type(message.get("parts")) is not list:
            raise _Unreadable(f"has a message without a string role and an array of parts ({where})")
        role = message["role"]
        texts: list[Any] = []
        calls: list[Any] = []
        responses: list[Any] = []
        for part in message["parts"]:
            kind = _part_type(part, where)
            if kind == "text":
                if type(part.get("content")) is not str:
                    raise _Unreadable(f"has a text part without a string content ({where})")
                texts.append(part["content"])
            elif kind == "refusal" and type(part.get("refusal")) is str:
                texts.append(part["refusal"])
            elif kind == "tool_call":
                if type(part.get("name")) is not str:
                    raise _Unreadable(f"has a tool call without a string name ({where})")
                calls.append(["tool_call", role, _id(part, where), part["name"], _arguments(part.get("arguments"))])
            elif kind == "tool_call_response":
                responses.append(["tool_call_response", role, _id(part, where), part.get("response")])
        if type(message.get("refusal")) is str:
            texts.append(message["refusal"])
        entries.extend(["text", role, text] for text in texts if text)
        entries.extend(calls)
        entries.extend(responses)
    return entries


def _instruction_entries(parts: Any) -> list[Any]:
    if type(parts) is not list:
        raise _Unreadable("is not an array of parts")
    entries = []
    for i, part in enumerate(parts):
        if _part_type(part, f"part {i + 1}") == "text":
            if type(part.get("content")) is not str:
                raise _Unreadable(f"has a text part without a string content (part {i + 1})")
            if part["content"]:
                entries.append(["text", part["content"]])
    return entries


def _tool_view(tools: Any, *, captured: bool) -> bytes:
    if type(tools) is not list:
        raise _Unreadable("is not an array of tool definitions")
    fields: list[Any] = []
    for i, tool in enumerate(tools):
        if type(tool) is not dict or type(tool.get("name")) is not str:
            raise _Unreadable(f"has a tool definition without a string name (definition {i + 1})")
        fields += [["name", tool["name"]], ["description", tool.get("description")]]
        fields.append(["parameters", tool.get("parameters")])
    # Per tool: its name, description and parameters; a field the capture does not give is not compared.
    return b"".join(
        _NOT_GIVEN if captured and i % 3 and field[1] is None else _hash(out)
        for i, (field, out) in enumerate(zip(fields, canonicalize_elements(fields), strict=True))
    )


def _hash(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()[:_SIZE]


def _view(attribute: str, doc: Any, *, captured: bool) -> bytes:
    try:
        if attribute == TOOL_DEFINITIONS:
            return _tool_view(doc, captured=captured)
        entries = _message_entries(doc) if attribute == INPUT_MESSAGES else _instruction_entries(doc)
        # Text entries are lists of strings only: canonical form needs no type walk for them.
        plain = all(entry[0] == "text" for entry in entries)
        return b"".join(map(_hash, canonicalize_elements(entries, plain=plain)))
    except CanonicalizationError as exc:
        raise _Unreadable(f"holds a value the canonical form refuses ({exc})") from None


def capture(carrier: str, attribute: str, value: Any) -> Capture:
    """The capture of one content attribute as a carrier holds it (spec §12 step 6, "Forms")."""
    typed = _typed(value)
    try:
        spelled = orjson.dumps(typed)
    except orjson.JSONEncodeError:  # not from this package's readers (a lone surrogate): still one spelling
        spelled = json.dumps(typed, ensure_ascii=True).encode()
    raw = hashlib.sha256(spelled).digest()[:_SIZE]
    try:
        return Capture(carrier, attribute, raw, _view(attribute, _read(value), captured=True))
    except _Unreadable as exc:
        return Capture(carrier, attribute, raw, None, problem=str(exc))
    except _Ambiguous as exc:
        return Capture(carrier, attribute, raw, None, ambiguous=str(exc))


def captures_of(carrier: str, attributes: Mapping[str, Any]) -> tuple[Capture, ...]:
    """Every content attribute of one carrier, as a capture each."""
    return tuple(capture(carrier, a, attributes[a]) for a in CONTENT_ATTRIBUTES if a in attributes)


def manifest_views(manifest: Manifest, *, content_checked: bool = True) -> ContentViews:
    """The manifest's side of the content comparison: per attribute, the component's view, or why the
    comparison cannot be made (withheld, salted without its salt, left unmapped in ``extensions``)."""
    out: list[bytes | str] = []
    extensions = manifest.components.get("extensions")
    for attribute, name in COMPONENT_OF.items():
        component = manifest.components.get(name)
        reason: str | None = None
        if not content_checked:
            reason = f"{name} not recomputed (salted, and the salt was not given)"
        elif component is None:
            if extensions is not None and extensions.withheld:
                reason = f"no {name} component, and extensions (which may hold the request's field) withheld"
            elif extensions is not None and type(extensions.value) is dict:
                fields = [f for f in _UNMAPPED[name] if f in extensions.value]
                if fields:
                    reason = f"no {name} component: the request's {fields[0]} is left unmapped in extensions"
        elif component.withheld:
            reason = f"{name} withheld"
        elif component.elements is not None:
            withheld = [i for i, e in enumerate(component.elements) if e.withheld]
            if withheld:
                reason = f"{name}[{withheld[0]}] withheld"
        if reason is not None:
            out.append(reason)
            continue
        elements = () if component is None or component.elements is None else component.elements
        try:
            view = _view(attribute, [e.value for e in elements], captured=False)
        except _Unreadable as exc:  # a composition that follows spec §2 always has a view
            out.append(f"{name} {exc}")
        else:
            out.append(view)
    return tuple(out)


def _first_difference(captured: bytes, declared: bytes, size: int) -> int:
    for i in range(0, min(len(captured), len(declared)), size):
        if captured[i : i + size] != declared[i : i + size]:
            return i // size
    return min(len(captured), len(declared)) // size


def _tool_difference(captured: bytes, declared: bytes) -> str | None:
    for i in range(0, min(len(captured), len(declared)), _TOOL_ENTRY):
        for j, field in enumerate(("name", "description", "parameters")):
            ours = captured[i + j * _SIZE : i + (j + 1) * _SIZE]
            if ours != _NOT_GIVEN and ours != declared[i + j * _SIZE : i + (j + 1) * _SIZE]:
                return f"tool definition {i // _TOOL_ENTRY + 1}: its {field} differs"
    if len(captured) != len(declared):
        return f"{len(captured) // _TOOL_ENTRY} tool definitions, the manifest declares {len(declared) // _TOOL_ENTRY}"
    return None


def _difference(attribute: str, captured: bytes, declared: bytes) -> str | None:
    if attribute == TOOL_DEFINITIONS:
        return _tool_difference(captured, declared)
    if captured == declared:
        return None
    n, m = len(captured) // _SIZE, len(declared) // _SIZE
    at = _first_difference(captured, declared, _SIZE)
    what = "text, tool call or tool response" if attribute == INPUT_MESSAGES else "instruction text"
    where = f"at entry {at + 1}, a {what}"
    return f"differs from the manifest's {COMPONENT_OF[attribute]} {where} ({n} shown, {m} declared)"


def content_mismatches(captures: Iterable[Capture], views: ContentViews) -> tuple[list[str], list[str]]:
    """Step 6 on captured content: (a sentence per capture that contradicts the manifest, a sentence per
    capture whose comparison cannot be made). Ambiguous captures are step 1's, not reported here."""
    declared = dict(zip(CONTENT_ATTRIBUTES, views, strict=False))
    mismatches: list[str] = []
    not_made: list[str] = []
    for c in captures:
        if c.ambiguous is not None:
            continue
        view = declared.get(c.attribute, b"")
        if isinstance(view, str):
            not_made.append(f"{c.attribute} on {c.carrier} not compared: {view}")
        elif c.view is None:
            mismatches.append(f"{c.carrier} has {c.attribute} that {c.problem}")
        else:
            found = _difference(c.attribute, c.view, view)
            if found is not None:
                mismatches.append(f"{c.carrier} has {c.attribute} that {found}")
    return mismatches, not_made


def ambiguous_findings(captures: Iterable[Capture], where: str) -> list[Finding]:
    """Step 1: captured JSON text without a single reading is malformed."""
    return [
        Finding(MALFORMED, 1, f"{c.carrier}'s {c.attribute}: {c.ambiguous}", where)
        for c in captures if c.ambiguous
    ]


def content_findings(
    captures: Iterable[Capture], views: ContentViews, where: str, unchecked: list[str]
) -> list[Finding]:
    """Step 6 on captured content: each capture against the manifest's views; the comparisons that cannot be
    made are added to ``unchecked`` (the run's report names them, docs/spec.md §12.1)."""
    mismatches, not_made = content_mismatches(captures, views)
    unchecked.extend(not_made)
    return [Finding(TELEMETRY_MISMATCH, 6, message, where) for message in mismatches]
