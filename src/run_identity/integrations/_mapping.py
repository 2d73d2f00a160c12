"""Mapping helpers shared by the providers: parameters, data URLs, extra members kept verbatim.

Every mapping here is exact and reversible: what a provider member means in the GenAI shape is written
there, and whatever is not translated is kept verbatim (as an extra member of the same object, or in
``extensions``), so a request rebuilt from its composition is the request that was sent (docs/spec.md §2;
docs/integrations/*.md list the two normalizations: a lone text part is sent as a string, and a single
stop string as a one-element list).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any

from run_identity.integrations._values import CaptureError

__all__ = [
    "GENAI_PART_TYPES",
    "Unmapped",
    "data_url",
    "is_canonical_base64",
    "lone_text",
    "map_list",
    "take_parameters",
    "text_parts",
]

#: Part types the spec gives a meaning to; a provider block of another type is kept verbatim.
GENAI_PART_TYPES = frozenset({"text", "tool_call", "tool_call_response", "blob", "uri", "file", "reasoning"})
_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)
_ABSENT = object()


class Unmapped(Exception):
    """A value the mapping does not translate exactly; the caller keeps it verbatim in ``extensions``."""


def is_canonical_base64(text: object) -> bool:
    """Whether ``text`` is the canonical standard base64 (with padding) of some bytes (spec §2.2)."""
    if type(text) is not str:
        return False
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return base64.b64encode(raw).decode("ascii") == text


def data_url(url: str) -> tuple[str, str] | None:
    """(mime type, base64 content) of a ``data:<mime>;base64,<content>`` URL with canonical base64, else None."""
    found = _DATA_URL.fullmatch(url)
    if found is None or not is_canonical_base64(found.group(2)):
        return None
    return found.group(1), found.group(2)


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def _checks() -> dict[str, Callable[[object], bool]]:
    return {
        "temperature": _is_number,
        "top_p": _is_number,
        "top_k": _is_number,
        "frequency_penalty": _is_number,
        "presence_penalty": _is_number,
        "max_tokens": lambda v: type(v) is int,
        "seed": lambda v: type(v) is int,
        "choice_count": lambda v: type(v) is int,
        "stop_sequences": lambda v: type(v) is list and all(type(s) is str for s in v),
        "response_format": lambda v: type(v) is dict or type(v) is str,
    }


_CHECKS = _checks()


def take_parameters(body: dict[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """Move the body fields named in ``fields`` (body name -> parameter name) into a parameters object.

    A field moves only when its value has the parameter's type (a ``null`` temperature stays in the body,
    so in ``extensions``, verbatim). A single stop string becomes a one-element ``stop_sequences``.
    ``output_type`` is the ``type`` of an object ``response_format``, as the GenAI instrumentations report.
    """
    parameters: dict[str, Any] = {}
    for name, parameter in fields.items():
        if name not in body:
            continue
        value = body[name]
        if parameter == "stop_sequences" and type(value) is str:
            value = [value]
        if _CHECKS[parameter](value):
            parameters[parameter] = value
            del body[name]
    fmt = parameters.get("response_format")
    if type(fmt) is dict and type(fmt.get("type")) is str:
        parameters["output_type"] = fmt["type"]
    return parameters


def put_parameters(body: dict[str, Any], parameters: Mapping[str, Any], fields: Mapping[str, str]) -> None:
    """The reverse of :func:`take_parameters` (``output_type`` is derived, so not sent)."""
    names = {parameter: name for name, parameter in fields.items()}
    for parameter, value in parameters.items():
        if parameter == "output_type":
            continue
        name = names.get(parameter)
        if name is None:
            raise CaptureError(f"parameters.{parameter}: this provider has no request field for it")
        body[name] = value


def map_list(items: object, convert: Callable[[Any], Any]) -> list[Any]:
    """``convert`` applied to each element of a list; Unmapped when ``items`` is not a list of objects."""
    if type(items) is not list:
        raise Unmapped
    return [convert(item) for item in items]


def text_parts(text: str) -> list[dict[str, Any]]:
    """The parts of a string content: one text part."""
    return [{"type": "text", "content": text}]


def lone_text(parts: list[Any]) -> str | None:
    """The text of a part list that is exactly one text part without extra members, else None."""
    if len(parts) == 1 and type(parts[0]) is dict and parts[0].keys() == {"type", "content"}:
        part = parts[0]
        if part["type"] == "text" and type(part["content"]) is str:
            return str(part["content"])
    return None


def require(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    """``obj[key]`` when it has type ``kind``; Unmapped otherwise."""
    value = obj.get(key, _ABSENT)
    if type(value) is not kind:
        raise Unmapped
    return value


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra``'s members added; Unmapped when a name is taken."""
    for key, value in extra.items():
        if key in base:
            raise Unmapped
        base[key] = value
    return base


def model_component(provider: str, name: object, endpoint: str | None) -> dict[str, Any]:
    """The ``model`` component; CaptureError when the requested model is not a string."""
    if type(name) is not str:
        raise CaptureError(f"model: expected a string, got {type(name).__name__}")
    model = {"provider": provider, "name": name}
    if endpoint:
        model["endpoint"] = endpoint
    return model
