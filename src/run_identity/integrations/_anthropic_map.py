"""Anthropic Messages: request bodies <-> compositions, and responses (or stream events) -> the output.

``system`` is the ``instructions`` component (Anthropic keeps it apart from the conversation); content
blocks map to parts as docs/integrations/anthropic.md lists; anything else stays verbatim in
``extensions`` or as an extra member of the part it belongs to.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from run_identity.integrations._mapping import (
    GENAI_PART_TYPES,
    Unmapped,
    is_canonical_base64,
    lone_text,
    map_list,
    merge,
    model_component,
    put_parameters,
    require,
    take_parameters,
    text_parts,
)
from run_identity.integrations._receipts import Output
from run_identity.integrations._values import get

__all__ = ["MessagesAccumulator", "messages_body", "messages_composition", "messages_output"]

PARAMETERS = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop_sequences": "stop_sequences",
}
_BACK_TYPES = {"tool_call": "tool_use", "tool_call_response": "tool_result", "reasoning": "thinking"}


def _block(block: Any) -> dict[str, Any]:
    if type(block) is not dict or type(block.get("type")) is not str:
        raise Unmapped
    rest = dict(block)
    kind = rest.pop("type")
    if kind == "text":
        content = require(rest, "text", str)
        del rest["text"]
        return merge({"type": "text", "content": content}, rest)
    if kind in ("image", "document"):
        source = dict(require(rest, "source", dict))
        del rest["source"]
        modality = "image" if kind == "image" else "document"
        source_type = source.pop("type", None)
        if (
            source_type == "base64"
            and is_canonical_base64(source.get("data"))
            and type(source.get("media_type")) is str
        ):
            part = {
                "type": "blob",
                "modality": modality,
                "mime_type": source.pop("media_type"),
                "content": source.pop("data"),
            }
        elif source_type == "url" and type(source.get("url")) is str:
            part = {"type": "uri", "modality": modality, "uri": source.pop("url")}
        elif source_type == "file" and type(source.get("file_id")) is str:
            part = {"type": "file", "modality": modality, "file_id": source.pop("file_id")}
        else:
            raise Unmapped
        if source:
            raise Unmapped
        return merge(part, rest)
    if kind == "tool_use":
        call = {"type": "tool_call", "id": require(rest, "id", str), "name": require(rest, "name", str)}
        call["arguments"] = rest.pop("input", None)
        del rest["id"], rest["name"]
        return merge(call, rest)
    if kind == "tool_result":
        response = {"type": "tool_call_response", "id": require(rest, "tool_use_id", str)}
        if "content" not in rest:
            raise Unmapped
        response["response"] = rest.pop("content")
        del rest["tool_use_id"]
        return merge(response, rest)
    if kind == "thinking":
        thought = {"type": "reasoning", "content": require(rest, "thinking", str)}
        del rest["thinking"]
        return merge(thought, rest)
    if kind in GENAI_PART_TYPES:
        raise Unmapped
    return block


def _block_back(part: dict[str, Any]) -> dict[str, Any]:
    rest = dict(part)
    kind = rest.pop("type")
    if kind == "text":
        return {"type": "text", "text": rest.pop("content"), **rest}
    if kind in ("blob", "uri", "file"):
        block_type = "image" if rest.pop("modality") == "image" else "document"
        if kind == "blob":
            source = {"type": "base64", "media_type": rest.pop("mime_type"), "data": rest.pop("content")}
        elif kind == "uri":
            source = {"type": "url", "url": rest.pop("uri")}
        else:
            source = {"type": "file", "file_id": rest.pop("file_id")}
        return {"type": block_type, "source": source, **rest}
    if kind == "tool_call":
        return {
            "type": "tool_use",
            "id": rest.pop("id"),
            "name": rest.pop("name"),
            "input": rest.pop("arguments"),
            **rest,
        }
    if kind == "tool_call_response":
        return {"type": "tool_result", "tool_use_id": rest.pop("id"), "content": rest.pop("response"), **rest}
    if kind == "reasoning":
        return {"type": "thinking", "thinking": rest.pop("content"), **rest}
    return part


def _parts(content: Any) -> list[dict[str, Any]]:
    if type(content) is str:
        return text_parts(content)
    return map_list(content, _block)


def _message(message: Any) -> dict[str, Any]:
    if type(message) is not dict or "parts" in message:
        raise Unmapped
    rest = dict(message)
    role = require(rest, "role", str)
    if "content" not in rest:
        raise Unmapped
    parts = _parts(rest.pop("content"))
    del rest["role"]
    return merge({"role": role, "parts": parts}, rest)


def _content_back(parts: list[dict[str, Any]]) -> Any:
    text = lone_text(parts)
    return text if text is not None else [_block_back(p) for p in parts]


def _tool(tool: Any) -> dict[str, Any]:
    if type(tool) is not dict or type(tool.get("name")) is not str:
        raise Unmapped
    rest = dict(tool)
    kind = rest.pop("type", None)
    if kind is None or kind == "custom":
        out = {"type": "function" if kind is None else "custom", "name": rest.pop("name")}
        if "description" in rest:
            out["description"] = rest.pop("description")
        if "input_schema" in rest:
            out["parameters"] = rest.pop("input_schema")
        return merge(out, rest)
    if type(kind) is not str or kind in ("function",):
        raise Unmapped
    return dict(tool)  # a server tool ("web_search_20250305"...): already typed and named


def _tool_back(tool: dict[str, Any]) -> dict[str, Any]:
    rest = dict(tool)
    kind = rest.pop("type")
    if kind not in ("function", "custom"):
        return tool
    out: dict[str, Any] = {} if kind == "function" else {"type": "custom"}
    out["name"] = rest.pop("name")
    if "description" in rest:
        out["description"] = rest.pop("description")
    if "parameters" in rest:
        out["input_schema"] = rest.pop("parameters")
    return {**out, **rest}


def _take(body: dict[str, Any], field: str, convert: Any) -> Any:
    if field not in body:
        return None
    try:
        converted = convert(body[field])
    except Unmapped:
        return None
    del body[field]
    return converted


def messages_composition(body: dict[str, Any], *, endpoint: str | None = None) -> dict[str, Any]:
    """The composition of a Messages request body."""
    rest = copy.copy(body)
    composition: dict[str, Any] = {
        "model": model_component("anthropic", rest.pop("model", None), endpoint),
        "operation": "chat",
    }
    instructions = _take(rest, "system", _parts)
    if instructions is not None:
        composition["instructions"] = instructions
    messages = _take(rest, "messages", lambda v: map_list(v, _message))
    if messages is not None:
        composition["messages"] = messages
    tools = _take(rest, "tools", lambda v: map_list(v, _tool))
    if tools is not None:
        composition["tools"] = tools
    parameters = take_parameters(rest, PARAMETERS)
    if parameters:
        composition["parameters"] = parameters
    if rest:
        composition["extensions"] = rest
    return composition


def messages_body(composition: dict[str, Any]) -> dict[str, Any]:
    """The Messages request body of a composition made by :func:`messages_composition`."""
    body: dict[str, Any] = {"model": composition["model"]["name"]}
    if "instructions" in composition:
        body["system"] = _content_back(composition["instructions"])
    if "messages" in composition:
        body["messages"] = [
            {
                "role": m["role"],
                "content": _content_back(m["parts"]),
                **{k: v for k, v in m.items() if k not in ("role", "parts")},
            }
            for m in composition["messages"]
        ]
    if "tools" in composition:
        body["tools"] = [_tool_back(t) for t in composition["tools"]]
    put_parameters(body, composition.get("parameters", {}), PARAMETERS)
    body.update(composition.get("extensions", {}))
    return body


# --- output ----------------------------------------------------------------------------------------------


def _output_part(block: Any) -> dict[str, Any]:
    kind = get(block, "type")
    if kind == "text":
        return {"type": "text", "content": get(block, "text")}
    if kind == "tool_use":
        return {
            "type": "tool_call",
            "id": get(block, "id"),
            "name": get(block, "name"),
            "arguments": get(block, "input"),
        }
    if kind == "thinking":
        return {"type": "reasoning", "content": get(block, "thinking")}
    return {"type": kind}


def messages_output(message: Any) -> Output:
    """The output of a Messages ``Message`` (object or JSON): one assistant output message."""
    blocks = [b for b in get(message, "content") or [] if not (get(b, "type") == "text" and not get(b, "text"))]
    out: dict[str, Any] = {"role": "assistant", "parts": [_output_part(b) for b in blocks]}
    reason = get(message, "stop_reason")
    if type(reason) is str:
        out["finish_reason"] = reason
    model, response_id = get(message, "model"), get(message, "id")
    output = Output([out], model if type(model) is str else None, response_id if type(response_id) is str else None)
    usage = get(message, "usage")
    if usage is not None:
        tokens_in, tokens_out = get(usage, "input_tokens"), get(usage, "output_tokens")
        output.input_tokens = tokens_in if type(tokens_in) is int else None
        output.output_tokens = tokens_out if type(tokens_out) is int else None
    return output


class MessagesAccumulator:
    """Builds the output of a streamed Messages call from its raw events (objects or JSON)."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self._done = False

    def add(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "message_start":
            start = get(event, "message")
            usage = get(start, "usage")
            self._message = {
                "id": get(start, "id"),
                "model": get(start, "model"),
                "stop_reason": None,
                "usage": {"input_tokens": get(usage, "input_tokens"), "output_tokens": get(usage, "output_tokens")},
            }
        elif kind == "content_block_start":
            block = get(event, "content_block")
            index = get(event, "index")
            state = {"type": get(block, "type")}
            for key in ("text", "id", "name", "thinking"):
                if get(block, key) is not None:
                    state[key] = get(block, key)
            self._blocks[index] = state
        elif kind == "content_block_delta":
            index, delta = get(event, "index"), get(event, "delta")
            state = self._blocks[index]
            delta_type = get(delta, "type")
            if delta_type == "text_delta":
                state["text"] = state.get("text", "") + get(delta, "text")
            elif delta_type == "thinking_delta":
                state["thinking"] = state.get("thinking", "") + get(delta, "thinking")
            elif delta_type == "input_json_delta":
                self._json.setdefault(index, []).append(get(delta, "partial_json"))
        elif kind == "message_delta" and self._message is not None:
            self._message["stop_reason"] = get(get(event, "delta"), "stop_reason")
            usage = get(event, "usage")
            if usage is not None and get(usage, "output_tokens") is not None:
                self._message["usage"]["output_tokens"] = get(usage, "output_tokens")
        elif kind == "message_stop":
            self._done = True

    def output(self) -> Output | None:
        if self._message is None or not self._done:
            return None
        content = []
        for index, state in sorted(self._blocks.items()):
            if state.get("type") == "tool_use":
                raw = "".join(self._json.get(index, []))
                state["input"] = json.loads(raw) if raw else {}
            content.append(state)
        return messages_output({**self._message, "content": content})
