"""The composition: everything an LLM call was assembled from, validated against the schema of docs/spec.md.

A :class:`Composition` holds eight components. Four are *single-valued* (``model``, ``operation``,
``parameters``, ``extensions``) and four are *lists* whose order is kept as declared (``instructions``,
``messages``, ``tools``, ``context``). Components are stored as plain JSON values (dicts, lists, strings,
numbers), the form that is canonicalized and hashed; the typed objects of :mod:`run_identity.parts` convert
into that form. Validation raises :class:`~run_identity.errors.CompositionError` naming the field path; it
never repairs or coerces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from run_identity._element_schema import (
    document_ok,
    fail,
    message_ok,
    part_ok,
    require_dict,
    require_list,
    require_str,
    text_messages_ok,
    text_parts_ok,
    tool_ok,
    type_name,
    validate_document,
    validate_message,
    validate_part,
    validate_tool,
)
from run_identity.canonical import MAX_DEPTH, json_path_join

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
        raise fail(path, f"endpoint is not a valid URL ({exc})") from None
    if has_user_info:
        raise fail(path, "endpoint carries credentials (user info); credentials never enter a manifest")
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_NAME.match(name) or _CREDENTIAL_QUERY.match(name):
            raise fail(path, f"endpoint query parameter {name!r} looks like a credential")


def _require_str_keys(obj: Mapping[Any, Any], path: str) -> None:
    for key in obj:
        if type(key) is not str:
            raise fail(path, f"object key {key!r} of type {type(key).__name__} is not a string")


def _model_ok(m: dict[Any, Any]) -> bool:
    """True only when _validate_model accepts ``m`` (string members, a clean endpoint already seen)."""
    for key, item in m.items():
        if type(key) is not str or key not in _MODEL_FIELDS or type(item) is not str:
            return False
    if "provider" not in m or "name" not in m or "weights_digest" in m:
        return False
    endpoint = m.get("endpoint")
    return endpoint is None or endpoint in _CLEAN_ENDPOINTS


def _validate_model(value: object, path: str) -> dict[str, Any]:
    if type(value) is dict and _model_ok(value):
        return value
    m = require_dict(value, path)
    _require_str_keys(m, path)
    for key in m:
        if key not in _MODEL_FIELDS:
            raise fail(json_path_join(path, key), f"unknown model field (allowed: {', '.join(sorted(_MODEL_FIELDS))})")
    require_str(m, "provider", path)
    require_str(m, "name", path)
    for key in ("revision", "weights_digest", "endpoint"):
        require_str(m, key, path, optional=True)
    wd = m.get("weights_digest")
    if wd is not None and not _DIGEST_RE.fullmatch(wd):
        raise fail(json_path_join(path, "weights_digest"), "expected 'sha256:' and 64 lowercase hex digits")
    if m.get("endpoint") is not None:
        _check_endpoint(m["endpoint"], f"{path}.endpoint")
    return m


def _validate_operation(value: object, path: str) -> str:
    if type(value) is not str or not value:
        got = "an empty string" if type(value) is str else type_name(value)
        raise fail(path, f"expected a non-empty string (a gen_ai.operation.name value), got {got}")
    return value


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


_SEQUENCE_TYPES = frozenset({list, tuple})
# Parameter -> the exact types its value may have (stop_sequences: of strings, response_format: an object
# whose members are content like any other).
_PARAMETER_TYPES: dict[str, frozenset[type]] = {
    **dict.fromkeys(_NUMBER_PARAMS, frozenset({int, float})),
    **dict.fromkeys(_INT_PARAMS, frozenset({int})),
    "stop_sequences": _SEQUENCE_TYPES,
    "output_type": frozenset({str}),
    "response_format": frozenset({dict, str}),
}
_STRINGS = frozenset({str})


def _parameters_ok(p: dict[Any, Any]) -> bool:
    """True only when _validate_parameters accepts ``p``; one lookup per member instead of a chain of tests."""
    for key, item in p.items():
        kinds = _PARAMETER_TYPES.get(key)
        if kinds is None or type(key) is not str or type(item) not in kinds:
            return False
        if kinds is _SEQUENCE_TYPES and not _STRINGS.issuperset(map(type, item)):
            return False
    return True


def _validate_parameters(value: object, path: str) -> dict[str, Any]:
    if type(value) is dict and _parameters_ok(value):
        return value
    p = require_dict(value, path)
    _require_str_keys(p, path)
    for key, v in p.items():
        if key in _NUMBER_PARAMS:
            if not _is_number(v):
                raise fail(json_path_join(path, key), f"expected a number, got {type_name(v)}")
        elif key in _INT_PARAMS:
            if type(v) is not int:
                raise fail(json_path_join(path, key), f"expected an integer, got {type_name(v)}")
        elif key == "stop_sequences":
            sub = json_path_join(path, key)
            seq = require_list(v, sub)
            for i, s in enumerate(seq):
                if type(s) is not str:
                    raise fail(f"{sub}[{i}]", f"expected a string, got {type_name(s)}")
        elif key == "output_type":
            if type(v) is not str:
                raise fail(json_path_join(path, key), f"expected a string, got {type_name(v)}")
        elif key == "response_format":
            if type(v) is not dict and type(v) is not str:
                raise fail(json_path_join(path, key), f"expected an object or a string, got {type_name(v)}")
        else:
            raise fail(
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
                raise fail(json_path_join(path, key), "looks like a credential; credentials never enter a manifest")
            _scan_credentials(v, json_path_join(path, key) if type(key) is str else path, depth + 1)
    elif type(value) is list or type(value) is tuple:
        for i, v in enumerate(value):
            _scan_credentials(v, f"{path}[{i}]", depth + 1)


def _validate_extensions(value: object, path: str) -> dict[str, Any]:
    e = require_dict(value, path)
    _scan_credentials(e, path)
    return e


def _validate_list(validate: Any, value: object, path: str) -> list[Any]:
    items = require_list(value, path)
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
    "instructions": validate_part,
    "messages": validate_message,
    "tools": validate_tool,
    "context": validate_document,
}
_ELEMENT_OK: dict[Any, Any] = {
    validate_part: part_ok,
    validate_message: message_ok,
    validate_tool: tool_ok,
    validate_document: document_ok,
}


# List components whose common shape (text parts, text messages) is checked without a call per element.
_LIST_SHAPES: dict[str, Any] = {"instructions": text_parts_ok, "messages": text_messages_ok}
# Component name -> its validator, taking (value, path).
_VALIDATORS: dict[str, Any] = {
    **_SINGLE_VALIDATORS,
    **{name: functools.partial(_validate_list, validate) for name, validate in _ELEMENT_VALIDATORS.items()},
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
        raise fail(where, f"unknown component (allowed: {', '.join(sorted(COMPONENT_NAMES))})")
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
                raise fail(json_path_join("", name), f"unknown component (allowed: {allowed})")
            kind = type(value)
            if kind is PreparedComponent:
                if value.name != name:
                    raise fail(name, f"prepared component is {value.name!r}, not {name!r}")
                checked[name] = value
            elif kind is dict or kind is str:  # exact dicts and strings have no to_json: as_json is a no-op
                checked[name] = _VALIDATORS[name](value, name)
            elif kind is list and (shape := _LIST_SHAPES.get(name)) is not None and shape(value):
                checked[name] = value  # valid as it is, and every element an exact dict (no to_json)
            else:
                checked[name] = validate_component(name, as_json(value))
        for name in REQUIRED_COMPONENTS:
            if name not in checked:
                raise fail("", f"missing required component {name!r}")
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
        if type(data) is not dict and not isinstance(data, Mapping):
            raise fail("", f"a composition is a JSON object, got {type_name(data)}")
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
