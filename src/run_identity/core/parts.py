"""Typed building blocks of a composition, mirroring the OpenTelemetry GenAI JSON schemas.

Each class is a frozen dataclass whose :meth:`to_json` returns the JSON form that docs/spec.md defines
(the same shape as ``gen_ai.input.messages``, ``gen_ai.system_instructions`` and
``gen_ai.tool.definitions``). Optional fields left as ``None`` are *absent* from the JSON form.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "BlobPart",
    "Document",
    "FilePart",
    "FunctionTool",
    "InputMessage",
    "Model",
    "Parameters",
    "TextPart",
    "ToolCallPart",
    "ToolCallResponsePart",
    "UriPart",
]


class _JsonForm:
    """Shared ``to_json``: fields in declaration order, ``None`` omitted, ``extra`` merged last."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = _json_value(value)
        extra = getattr(self, "extra", None)
        if extra:
            for key, value in extra.items():
                if key in out:
                    raise ValueError(f"extra field {key!r} clashes with a declared field")
                out[key] = value
        return out


def _json_value(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


@dataclass(frozen=True)
class TextPart(_JsonForm):
    """Text sent to the model."""

    content: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ToolCallPart(_JsonForm):
    """A tool call the model requested earlier in the conversation."""

    name: str
    arguments: Any = None
    id: str | None = None
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True)
class ToolCallResponsePart(_JsonForm):
    """The result of a tool call, sent back to the model."""

    response: Any
    id: str | None = None
    type: Literal["tool_call_response"] = "tool_call_response"

    def to_json(self) -> dict[str, Any]:
        # ``response`` is required: a tool that returned nothing is ``null``, present, not absent.
        out = super().to_json()
        out["response"] = _json_value(self.response)
        return out


@dataclass(frozen=True)
class BlobPart(_JsonForm):
    """Inline binary data; ``content`` bytes are written as standard base64 (docs/spec.md, blob rule)."""

    content: bytes
    modality: str
    mime_type: str | None = None
    type: Literal["blob"] = "blob"

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["content"] = base64.b64encode(self.content).decode("ascii")
        return out


@dataclass(frozen=True)
class UriPart(_JsonForm):
    """Data referenced by URI."""

    uri: str
    modality: str
    mime_type: str | None = None
    type: Literal["uri"] = "uri"


@dataclass(frozen=True)
class FilePart(_JsonForm):
    """A file pre-uploaded to the provider, referenced by its id."""

    file_id: str
    modality: str
    mime_type: str | None = None
    type: Literal["file"] = "file"


Part = TextPart | ToolCallPart | ToolCallResponsePart | BlobPart | UriPart | FilePart


@dataclass(frozen=True)
class InputMessage(_JsonForm):
    """One input message: a role and its parts, in order."""

    role: str
    parts: tuple[Part, ...] | list[Part]
    name: str | None = None

    @classmethod
    def text(cls, role: str, content: str) -> InputMessage:
        """A message with a single text part."""
        return cls(role=role, parts=(TextPart(content),))


@dataclass(frozen=True)
class FunctionTool(_JsonForm):
    """A function tool definition with JSON-Schema parameters."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    type: Literal["function"] = "function"


@dataclass(frozen=True)
class Document(_JsonForm):
    """A retrieved document given to the model as context."""

    id: str
    content: str | None = None
    uri: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "content", "uri"):
            if name in self.extra:
                raise ValueError(f"extra field {name!r} clashes with a declared field")


@dataclass(frozen=True)
class Model(_JsonForm):
    """The model: provider (a ``gen_ai.provider.name`` value), requested name, and what pins it down."""

    provider: str
    name: str
    revision: str | None = None
    weights_digest: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class Parameters(_JsonForm):
    """Request parameters, named after the ``gen_ai.request.*`` attributes."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop_sequences: tuple[str, ...] | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    choice_count: int | None = None
    output_type: str | None = None
    response_format: dict[str, Any] | str | None = None
