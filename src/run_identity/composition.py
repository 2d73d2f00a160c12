"""The composition: everything an LLM call was assembled from, validated against the schema of docs/spec.md.

A :class:`Composition` holds eight components. Four are *single-valued* (``model``, ``operation``,
``parameters``, ``extensions``) and four are *lists* whose order is kept as declared (``instructions``,
``messages``, ``tools``, ``context``). Components are stored as plain JSON values (dicts, lists, strings,
numbers), the form that is canonicalized and hashed; the typed objects of :mod:`run_identity.parts` convert
into that form. Validation raises :class:`~run_identity.errors.CompositionError` naming the field path; it
never repairs or coerces.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from run_identity.canonical import MAX_DEPTH, json_path_join
from run_identity.errors import CompositionError

__all__ = [
    "COMPONENT_NAMES",
    "LIST_COMPONENTS",
    "PARAMETER_ATTRIBUTES",
    "SINGLE_COMPONENTS",
    "Composition",
    "PreparedComponent",
    "as_json",
    "validate_component",
]

SINGLE_COMPONENTS = ("model", "operation", "parameters", "extensions")
LIST_COMPONENTS = ("instructions", "messages", "tools", "context")
COMPONENT_NAMES = frozenset(SINGLE_COMPONENTS + LIST_COMPONENTS)
REQUIRED_COMPONENTS = ("model", "operation")

#: Parameter key -> the OpenTelemetry GenAI span attribute it corresponds to (None: no attribute).
PARAMETER_ATTRIBUTES: dict[str, str | None] = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "stop_sequences": "gen_ai.request.stop_sequences",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "choice_count": "gen_ai.request.choice.count",
    "output_type": "gen_ai.output.type",
    "response_format": None,
}
_NUMBER_PARAMS = frozenset({"temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty"})
_INT_PARAMS = frozenset({"max_tokens", "seed", "choice_count"})

_MODEL_FIELDS = frozenset({"provider", "name", "revision", "weights_digest", "endpoint"})
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_CREDENTIAL_NAME = re.compile(
    r"(?i)^(x-)?(goog-)?(api[-_]?key|authorization|auth|password|passwd|secret|client[-_]?secret|"
    r"access[-_]?token|token|bearer|sig|signature|extra[-_]?headers|headers|cookie)$"
)
# In a URL query, bare ``key`` (Gemini) and ``code`` (Azure Functions) carry keys too.
_CREDENTIAL_QUERY = re.compile(r"(?i)^(key|code)$")

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


def _fail(path: str, reason: str) -> CompositionError:
    return CompositionError(path, reason)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _require_dict(value: object, path: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _fail(path, f"expected an object, got {_type_name(value)}")
    return value


def _require_list(value: object, path: str) -> list[Any]:
    if type(value) is list:
        return value
    if type(value) is tuple:
        return list(value)
    raise _fail(path, f"expected an array, got {_type_name(value)}")


def _require_str(obj: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> None:
    if key not in obj:
        if optional:
            return
        raise _fail(path, f"missing required field {key!r}")
    if type(obj[key]) is not str:
        if optional and obj[key] is None:
            return
        raise _fail(json_path_join(path, key), f"expected a string, got {_type_name(obj[key])}")


def _check_blob_content(part: dict[str, Any], path: str) -> dict[str, Any]:
    """Blob content is standard base64 with padding; bytes are encoded to it, anything else is rejected."""
    content = part.get("content")
    if type(content) is bytes:
        return {**part, "content": base64.b64encode(content).decode("ascii")}
    if type(content) is not str:
        return part
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(json_path_join(path, "content"), "blob content is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != content:
        raise _fail(json_path_join(path, "content"), "blob content is not in canonical base64 form") from None
    return part


def _validate_part(part: object, path: str) -> dict[str, Any]:
    p = _require_dict(part, path)
    kind = p.get("type")
    if type(kind) is not str:
        if "type" not in p:
            raise _fail(path, "missing required field 'type'")
        raise _fail(json_path_join(path, "type"), f"expected a string, got {_type_name(kind)}")
    if kind == "blob":
        p = _check_blob_content(p, path)
    required = _PART_REQUIRED.get(kind)
    if required is not None:
        for key in required:
            if key not in p:
                raise _fail(path, f"missing required field {key!r} for a {kind!r} part")
        for key in _PART_STRINGS[kind]:
            _require_str(p, key, path)
        for key in _OPTIONAL_STRINGS:
            if key in p:
                _require_str(p, key, path, optional=True)
    return p


# Fast checks: True when an element is valid *and* its validator would return it unchanged. They build no
# paths and raise nothing; anything else goes through the validator, which returns or reports exactly.
def _part_ok(part: object) -> bool:
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


def _message_ok(message: object) -> bool:
    if type(message) is not dict or type(message.get("role")) is not str:
        return False
    parts = message.get("parts")
    if type(parts) is not list:
        return False
    for part in parts:
        if not _part_ok(part):
            return False
    if len(message) == 2:
        return True
    name = message.get("name")
    return name is None or type(name) is str


def _optional_str_ok(obj: dict[str, Any], key: str) -> bool:
    return key not in obj or type(obj[key]) is str or obj[key] is None


def _tool_ok(tool: object) -> bool:
    if type(tool) is not dict or type(tool.get("type")) is not str or type(tool.get("name")) is not str:
        return False
    if not _optional_str_ok(tool, "description"):
        return False
    parameters = tool.get("parameters")
    return parameters is None or type(parameters) is dict


def _document_ok(doc: object) -> bool:
    if type(doc) is not dict or type(doc.get("id")) is not str:
        return False
    if not (_optional_str_ok(doc, "uri") and _optional_str_ok(doc, "content")):
        return False
    return "content" in doc or "uri" in doc


def _validate_parts(parts: object, path: str) -> list[Any]:
    items = _require_list(parts, path)
    out = items
    for i, part in enumerate(items):
        if _part_ok(part):
            continue
        checked = _validate_part(part, f"{path}[{i}]")
        if checked is not part:
            if out is items:
                out = list(items)
            out[i] = checked
    return out


def _validate_message(message: object, path: str) -> dict[str, Any]:
    m = _require_dict(message, path)
    _require_str(m, "role", path)
    if "parts" not in m:
        raise _fail(path, "missing required field 'parts'")
    parts = _validate_parts(m["parts"], json_path_join(path, "parts"))
    _require_str(m, "name", path, optional=True)
    return m if parts is m["parts"] else {**m, "parts": parts}


def _validate_tool(tool: object, path: str) -> dict[str, Any]:
    t = _require_dict(tool, path)
    _require_str(t, "type", path)
    _require_str(t, "name", path)
    _require_str(t, "description", path, optional=True)
    if "parameters" in t and t["parameters"] is not None and type(t["parameters"]) is not dict:
        raise _fail(json_path_join(path, "parameters"), "expected a JSON Schema object or null")
    return t


def _validate_document(doc: object, path: str) -> dict[str, Any]:
    d = _require_dict(doc, path)
    _require_str(d, "id", path)
    _require_str(d, "uri", path, optional=True)
    _require_str(d, "content", path, optional=True)
    if "content" not in d and "uri" not in d:
        raise _fail(path, "a document needs 'content' or 'uri'")
    return d


# Endpoints repeat from call to call; strings are immutable, so a clean verdict can be remembered.
_CLEAN_ENDPOINTS: set[str] = set()
_CLEAN_ENDPOINTS_MAX = 256


def _check_endpoint(endpoint: str, path: str) -> None:
    if endpoint in _CLEAN_ENDPOINTS:
        return
    _check_endpoint_uncached(endpoint, path)
    if len(_CLEAN_ENDPOINTS) >= _CLEAN_ENDPOINTS_MAX:
        _CLEAN_ENDPOINTS.clear()
    _CLEAN_ENDPOINTS.add(endpoint)


def _check_endpoint_uncached(endpoint: str, path: str) -> None:
    try:
        parts = urlsplit(endpoint)
        has_user_info = parts.username is not None or parts.password is not None
    except ValueError as exc:
        raise _fail(path, f"endpoint is not a valid URL ({exc})") from None
    if has_user_info:
        raise _fail(path, "endpoint carries credentials (user info); credentials never enter a manifest")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_NAME.match(name) or _CREDENTIAL_QUERY.match(name):
            raise _fail(path, f"endpoint query parameter {name!r} looks like a credential")


def _require_str_keys(obj: Mapping[Any, Any], path: str) -> None:
    for key in obj:
        if type(key) is not str:
            raise _fail(path, f"object key {key!r} of type {type(key).__name__} is not a string")


def _validate_model(value: object, path: str) -> dict[str, Any]:
    m = _require_dict(value, path)
    _require_str_keys(m, path)
    for key in m:
        if key not in _MODEL_FIELDS:
            raise _fail(json_path_join(path, key), f"unknown model field (allowed: {', '.join(sorted(_MODEL_FIELDS))})")
    _require_str(m, "provider", path)
    _require_str(m, "name", path)
    for key in ("revision", "weights_digest", "endpoint"):
        _require_str(m, key, path, optional=True)
    wd = m.get("weights_digest")
    if wd is not None and not _DIGEST_RE.fullmatch(wd):
        raise _fail(json_path_join(path, "weights_digest"), "expected 'sha256:' and 64 lowercase hex digits")
    if m.get("endpoint") is not None:
        _check_endpoint(m["endpoint"], f"{path}.endpoint")
    return m


def _validate_operation(value: object, path: str) -> str:
    if type(value) is not str or not value:
        got = "an empty string" if type(value) is str else _type_name(value)
        raise _fail(path, f"expected a non-empty string (a gen_ai.operation.name value), got {got}")
    return value


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def _validate_parameters(value: object, path: str) -> dict[str, Any]:
    p = _require_dict(value, path)
    _require_str_keys(p, path)
    for key, v in p.items():
        if key in _NUMBER_PARAMS:
            if not _is_number(v):
                raise _fail(json_path_join(path, key), f"expected a number, got {_type_name(v)}")
        elif key in _INT_PARAMS:
            if type(v) is not int:
                raise _fail(json_path_join(path, key), f"expected an integer, got {_type_name(v)}")
        elif key == "stop_sequences":
            sub = json_path_join(path, key)
            seq = _require_list(v, sub)
            for i, s in enumerate(seq):
                if type(s) is not str:
                    raise _fail(f"{sub}[{i}]", f"expected a string, got {_type_name(s)}")
        elif key == "output_type":
            if type(v) is not str:
                raise _fail(json_path_join(path, key), f"expected a string, got {_type_name(v)}")
        elif key == "response_format":
            if type(v) is not dict and type(v) is not str:
                raise _fail(json_path_join(path, key), f"expected an object or a string, got {_type_name(v)}")
        else:
            raise _fail(
                json_path_join(path, key),
                "unknown parameter (provider-specific request fields belong under 'extensions')",
            )
    return p


def _scan_credentials(value: object, path: str, depth: int = 1) -> None:
    # Deeper values (and cycles) are left to canonicalize, which rejects them; nothing there reaches a digest.
    if depth > MAX_DEPTH:
        return
    if type(value) is dict:
        for key, v in value.items():
            if type(key) is str and _CREDENTIAL_NAME.match(key):
                raise _fail(json_path_join(path, key), "looks like a credential; credentials never enter a manifest")
            _scan_credentials(v, json_path_join(path, key) if type(key) is str else path, depth + 1)
    elif type(value) is list or type(value) is tuple:
        for i, v in enumerate(value):
            _scan_credentials(v, f"{path}[{i}]", depth + 1)


def _validate_extensions(value: object, path: str) -> dict[str, Any]:
    e = _require_dict(value, path)
    _scan_credentials(e, path)
    return e


def _validate_list(validate: Any, value: object, path: str) -> list[Any]:
    items = _require_list(value, path)
    ok = _ELEMENT_OK.get(validate)
    out = items
    for i, item in enumerate(items):
        if ok is not None and ok(item):
            continue
        checked = validate(item, f"{path}[{i}]")
        if checked is not item:
            if out is items:
                out = list(items)
            out[i] = checked
    return out


_SINGLE_VALIDATORS: dict[str, Any] = {
    "model": _validate_model,
    "operation": _validate_operation,
    "parameters": _validate_parameters,
    "extensions": _validate_extensions,
}
_ELEMENT_VALIDATORS: dict[str, Any] = {
    "instructions": _validate_part,
    "messages": _validate_message,
    "tools": _validate_tool,
    "context": _validate_document,
}
_ELEMENT_OK: dict[Any, Any] = {
    _validate_part: _part_ok,
    _validate_message: _message_ok,
    _validate_tool: _tool_ok,
    _validate_document: _document_ok,
}


def validate_component(name: str, value: object, path: str | None = None) -> Any:
    """Validate one component's JSON value and return it (blob bytes encoded as base64, tuples as lists).

    Raises CompositionError naming the field path for anything the schema does not allow.
    """
    where = name if path is None else path
    single = _SINGLE_VALIDATORS.get(name)
    if single is not None:
        return single(value, where)
    element = _ELEMENT_VALIDATORS.get(name)
    if element is None:
        raise _fail(where, f"unknown component (allowed: {', '.join(sorted(COMPONENT_NAMES))})")
    return _validate_list(element, value, where)


def as_json(value: object) -> object:
    """Typed objects (anything with ``to_json``) become their JSON form; sequences of them too."""
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return to_json()
    if type(value) is list or type(value) is tuple:
        seq: Sequence[Any] = value
        for v in seq:
            # JSON values (dicts, the common case) have no to_json; only look further when one does.
            if type(v) is not dict and hasattr(v, "to_json"):
                return [v.to_json() if hasattr(v, "to_json") else v for v in seq]
    return value


@dataclass(frozen=True)
class PreparedComponent:
    """A component whose canonical bytes and digests were computed once, for reuse across calls.

    Make one with :func:`run_identity.prepare`; pass it in a composition in place of the raw value.
    ``element_bytes`` and ``element_digests`` are set for list components only.
    """

    name: str
    value: Any
    digest: str
    canonical: bytes | None = None
    element_bytes: tuple[bytes, ...] | None = None
    element_digests: tuple[str, ...] | None = None
    salt_id: str | None = None


class Composition:
    """A validated composition. Build it with :meth:`from_dict` or the keyword constructor :meth:`of`.

    ``components`` maps each present component name to its JSON value or to a :class:`PreparedComponent`
    whose digests were computed once. Absent and empty are different: a composition without ``tools`` and
    one with ``tools=[]`` have different identities. Raises CompositionError on construction when the
    components do not follow the schema.
    """

    __slots__ = ("components",)
    components: Mapping[str, Any]

    def __init__(self, components: Mapping[str, Any]) -> None:
        checked: dict[str, Any] = {}
        _require_str_keys(components, "")
        for name, value in components.items():
            if name not in COMPONENT_NAMES:
                allowed = ", ".join(sorted(COMPONENT_NAMES))
                raise _fail(json_path_join("", name), f"unknown component (allowed: {allowed})")
            if type(value) is PreparedComponent:
                if value.name != name:
                    raise _fail(name, f"prepared component is {value.name!r}, not {name!r}")
                checked[name] = value
            else:
                checked[name] = validate_component(name, as_json(value))
        for name in REQUIRED_COMPONENTS:
            if name not in checked:
                raise _fail("", f"missing required component {name!r}")
        self.components = checked

    def __repr__(self) -> str:
        return f"Composition({sorted(self.components)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Composition) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Composition:
        """Build from the JSON form of docs/spec.md (as parsed from a file, or a plain dict).

        Raises CompositionError for unknown components, missing required ones, and schema violations.
        """
        if not isinstance(data, Mapping):
            raise _fail("", f"a composition is a JSON object, got {_type_name(data)}")
        return cls(data)

    @classmethod
    def of(
        cls,
        *,
        model: Any,
        operation: str = "chat",
        instructions: Any = None,
        messages: Any = None,
        parameters: Any = None,
        tools: Any = None,
        context: Any = None,
        extensions: Any = None,
    ) -> Composition:
        """Build from keyword arguments; ``None`` means the component is absent. Typed parts are accepted."""
        given = {
            "model": model,
            "operation": operation,
            "instructions": instructions,
            "messages": messages,
            "parameters": parameters,
            "tools": tools,
            "context": context,
            "extensions": extensions,
        }
        return cls({k: v for k, v in given.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (prepared components expanded to their values)."""
        return {k: (v.value if type(v) is PreparedComponent else v) for k, v in self.components.items()}

    def replace(self, **components: Any) -> Composition:
        """A new composition with some components replaced (``None`` removes one)."""
        merged = dict(self.components)
        for name, value in components.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return Composition(merged)
