"""The composition: everything an LLM call was assembled from, validated against the schema of docs/spec.md.

A :class:`Composition` holds eight components. Four are *single-valued* (``model``, ``operation``,
``parameters``, ``extensions``) and four are *lists* whose order is kept as declared (``instructions``,
``messages``, ``tools``, ``context``). Components are stored as plain JSON values (dicts, lists, strings,
numbers), the form that is canonicalized and hashed; the typed objects of :mod:`run_identity.core.parts` convert
into that form. Validation raises :class:`~run_identity.core.errors.CompositionError` naming the field path; it
never repairs or coerces. The checks themselves live in :mod:`run_identity.core._component_schema` (single-valued
components) and :mod:`run_identity.core._element_schema` (elements of the lists).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from run_identity.core._component_schema import (
    PARAMETER_ATTRIBUTES,
    require_str_keys,
    validate_extensions,
    validate_model,
    validate_operation,
    validate_parameters,
)
from run_identity.core._element_schema import (
    document_ok,
    fail,
    message_ok,
    part_ok,
    require_list,
    text_messages_ok,
    text_parts_ok,
    tool_ok,
    type_name,
    validate_document,
    validate_message,
    validate_part,
    validate_tool,
)
from run_identity.core.canonical import json_path_join

__all__ = [
    "COMPONENT_NAMES",
    "LIST_COMPONENTS",
    "PARAMETER_ATTRIBUTES",
    "SINGLE_COMPONENTS",
    "Composition",
    "PreparedComponent",
    "as_json",
    "validate_component",
    "validate_element",
]

SINGLE_COMPONENTS = ("model", "operation", "parameters", "extensions")
LIST_COMPONENTS = ("instructions", "messages", "tools", "context")
COMPONENT_NAMES = frozenset(SINGLE_COMPONENTS + LIST_COMPONENTS)
REQUIRED_COMPONENTS = ("model", "operation")

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
    "model": validate_model,
    "operation": validate_operation,
    "parameters": validate_parameters,
    "extensions": validate_extensions,
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


_DICTS = frozenset({dict})
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


def validate_element(name: str, value: object, path: str) -> Any:
    """Validate one element of list component ``name`` (docs/spec.md §2.2-§2.6); raises CompositionError."""
    validate = _ELEMENT_VALIDATORS.get(name)
    if validate is None:
        raise fail(path, f"not a list component (list components: {', '.join(LIST_COMPONENTS)})")
    ok = _ELEMENT_OK.get(validate)
    if ok is not None and ok(value):
        return value
    return validate(value, path)


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

    __slots__ = ("components", "shaped")
    components: Mapping[str, Any]
    #: List components whose common shape (``_LIST_SHAPES``) the constructor proved with no code of the
    #: caller's run (no ``to_json``): :func:`run_identity.core.digest.identity_of_new` may skip proving it again
    #: when it digests the composition right after building it.
    shaped: frozenset[str]

    def __init__(self, components: Mapping[str, Any]) -> None:
        checked: dict[str, Any] = {}
        shaped: list[str] = []
        callers_code = type(components) is not dict  # a Mapping's own methods are the caller's code
        require_str_keys(components, "")
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
                shaped.append(name)
            else:
                if kind is not list or not _DICTS.issuperset(map(type, value)):
                    callers_code = True  # as_json may call a to_json, which could change any value checked so far
                checked[name] = validate_component(name, as_json(value))
        for name in REQUIRED_COMPONENTS:
            if name not in checked:
                raise fail("", f"missing required component {name!r}")
        self.components = checked
        self.shaped = frozenset() if callers_code else frozenset(shaped)

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
