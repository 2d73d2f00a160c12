"""Schema checks of the elements of list components: parts, messages, tool definitions, documents.

Each ``_validate_*`` returns the element (blob bytes encoded as base64) or raises CompositionError naming
the field path; each ``*_ok`` is a fast check that is True only when the validator would accept the element
and return it unchanged, so the hot path builds no paths. Shared helpers for the other components too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from run_identity.core.canonical import json_path_join
from run_identity.core.errors import CompositionError

__all__ = [
    "document_ok",
    "fail",
    "message_ok",
    "part_ok",
    "require_dict",
    "require_list",
    "require_str",
    "text_messages_ok",
    "text_parts_ok",
    "tool_ok",
    "type_name",
    "validate_document",
    "validate_message",
    "validate_part",
    "validate_tool",
]

# part type -> fields it requires beside "type", and which of them must be strings.
_PART_REQUIRED: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "tool_call": ("name",),
    "tool_call_response": ("response",),
    "blob": ("modality", "content"),
    "uri": ("modality", "uri"),
    "file": ("modality", "file_id"),
    "reasoning": ("content",),
}
_PART_STRINGS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "tool_call": ("name",),
    "tool_call_response": (),
    "blob": ("modality", "content"),
    "uri": ("modality", "uri"),
    "file": ("modality", "file_id"),
    "reasoning": ("content",),
}
_OPTIONAL_STRINGS = ("id", "mime_type", "transcript")
# Required members that may hold any JSON value (the rest of _PART_REQUIRED are strings).
_PART_OTHERS: dict[str, tuple[str, ...]] = {
    kind: tuple(k for k in required if k not in _PART_STRINGS[kind]) for kind, required in _PART_REQUIRED.items()
}


def fail(path: str, reason: str) -> CompositionError:
    return CompositionError(path, reason)


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def require_dict(value: object, path: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise fail(path, f"expected an object, got {type_name(value)}")
    return value


def require_list(value: object, path: str) -> list[Any]:
    if type(value) is list:
        return value
    if type(value) is tuple:
        return list(value)
    raise fail(path, f"expected an array, got {type_name(value)}")


def require_str(obj: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> None:
    if key not in obj:
        if optional:
            return
        raise fail(path, f"missing required field {key!r}")
    if type(obj[key]) is not str:
        if optional and obj[key] is None:
            return
        raise fail(json_path_join(path, key), f"expected a string, got {type_name(obj[key])}")


def check_blob_content(part: dict[str, Any], path: str) -> dict[str, Any]:
    """Blob content is standard base64 with padding; bytes are encoded to it, anything else is rejected."""
    content = part.get("content")
    if type(content) is bytes:
        return {**part, "content": base64.b64encode(content).decode("ascii")}
    if type(content) is not str:
        return part
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise fail(json_path_join(path, "content"), "blob content is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != content:
        raise fail(json_path_join(path, "content"), "blob content is not in canonical base64 form") from None
    return part


def validate_part(part: object, path: str) -> dict[str, Any]:
    p = require_dict(part, path)
    kind = p.get("type")
    if type(kind) is not str:
        if "type" not in p:
            raise fail(path, "missing required field 'type'")
        raise fail(json_path_join(path, "type"), f"expected a string, got {type_name(kind)}")
    if kind == "blob":
        p = check_blob_content(p, path)
    required = _PART_REQUIRED.get(kind)
    if required is not None:
        for key in required:
            if key not in p:
                raise fail(path, f"missing required field {key!r} for a {kind!r} part")
        for key in _PART_STRINGS[kind]:
            require_str(p, key, path)
        for key in _OPTIONAL_STRINGS:
            if key in p:
                require_str(p, key, path, optional=True)
    return p


# Fast checks: True when an element is valid *and* its validator would return it unchanged. They build no
# paths and raise nothing; anything else goes through the validator, which returns or reports exactly.
def part_ok(part: object) -> bool:
    if type(part) is not dict:
        return False
    kind = part.get("type")
    if type(kind) is not str or kind == "blob":
        return False
    strings = _PART_STRINGS.get(kind)
    if strings is None:
        return True
    for key in strings:
        if type(part.get(key)) is not str:
            return False
    others = _PART_OTHERS[kind]
    for key in others:
        if key not in part:
            return False
    if len(part) == 1 + len(strings) + len(others):  # the common case: no optional member present
        return True
    for key in _OPTIONAL_STRINGS:
        value = part.get(key)
        if value is not None and type(value) is not str:
            return False
    return True


def message_ok(message: object) -> bool:
    if type(message) is not dict or type(message.get("role")) is not str:
        return False
    parts = message.get("parts")
    if type(parts) is not list:
        return False
    for part in parts:
        if not part_ok(part):
            return False
    if len(message) == 2:
        return True
    name = message.get("name")
    return name is None or type(name) is str


# The common shapes, checked a whole list at a time with no call per element. True proves two things: each
# element is valid and its validator would return it unchanged, and every value under the list is an exact
# dict, list, str or None, so canonicalize_elements(items, plain=True) may skip its type walk. Key types are
# not checked: the member names are found by lookup, and orjson (like the validators) refuses non-str keys.
# Parts of these types need nothing beyond "content": a string.
_CONTENT_PARTS = frozenset({"text", "reasoning"})


def text_parts_ok(parts: list[Any]) -> bool:
    """Whether every part is exactly ``{"type": "text" (or "reasoning"), "content": str}``."""
    try:
        for part in parts:
            if (
                type(part) is not dict
                or len(part) != 2
                or type(part["content"]) is not str
                or type(kind := part["type"]) is not str
                or kind not in _CONTENT_PARTS
            ):
                return False
    except KeyError:
        return False
    return True


def text_messages_ok(messages: list[Any]) -> bool:
    """Whether every message is ``{"role": str, "parts": [text parts], "name": str or null (optional)}``."""
    try:
        for message in messages:
            if (
                type(message) is not dict
                or type(message["role"]) is not str
                or type(parts := message["parts"]) is not list
            ):
                return False
            for part in parts:  # text_parts_ok inlined: a call per message costs as much as the checks
                if (
                    type(part) is not dict
                    or len(part) != 2
                    or type(part["content"]) is not str
                    or type(kind := part["type"]) is not str
                    or kind not in _CONTENT_PARTS
                ):
                    return False
            if len(message) != 2:
                name = message.get("name", message)  # a missing name (another third member) fails as the dict
                if len(message) != 3 or (name is not None and type(name) is not str):
                    return False
    except KeyError:
        return False
    return True


def optional_str_ok(obj: dict[str, Any], key: str) -> bool:
    return key not in obj or type(obj[key]) is str or obj[key] is None


def tool_ok(tool: object) -> bool:
    if type(tool) is not dict or type(tool.get("type")) is not str or type(tool.get("name")) is not str:
        return False
    if not optional_str_ok(tool, "description"):
        return False
    parameters = tool.get("parameters")
    return parameters is None or type(parameters) is dict


def document_ok(doc: object) -> bool:
    if type(doc) is not dict or type(doc.get("id")) is not str:
        return False
    if not (optional_str_ok(doc, "uri") and optional_str_ok(doc, "content")):
        return False
    return "content" in doc or "uri" in doc


def validate_parts(parts: object, path: str) -> list[Any]:
    items = require_list(parts, path)
    out = items
    for i, part in enumerate(items):
        if part_ok(part):
            continue
        checked = validate_part(part, f"{path}[{i}]")
        if checked is not part:
            if out is items:
                out = list(items)
            out[i] = checked
    return out


def validate_message(message: object, path: str) -> dict[str, Any]:
    m = require_dict(message, path)
    require_str(m, "role", path)
    if "parts" not in m:
        raise fail(path, "missing required field 'parts'")
    parts = validate_parts(m["parts"], json_path_join(path, "parts"))
    require_str(m, "name", path, optional=True)
    return m if parts is m["parts"] else {**m, "parts": parts}


def validate_tool(tool: object, path: str) -> dict[str, Any]:
    t = require_dict(tool, path)
    require_str(t, "type", path)
    require_str(t, "name", path)
    require_str(t, "description", path, optional=True)
    if "parameters" in t and t["parameters"] is not None and type(t["parameters"]) is not dict:
        raise fail(json_path_join(path, "parameters"), "expected a JSON Schema object or null")
    return t


def validate_document(doc: object, path: str) -> dict[str, Any]:
    d = require_dict(doc, path)
    require_str(d, "id", path)
    require_str(d, "uri", path, optional=True)
    require_str(d, "content", path, optional=True)
    if "content" not in d and "uri" not in d:
        raise fail(path, "a document needs 'content' or 'uri'")
    return d
