"""OpenAI request bodies <-> compositions, both ways (Chat Completions and Responses).

``chat_composition(body)`` / ``chat_body(composition)`` and ``responses_composition(body)`` /
``responses_body(composition)`` are inverse functions on the request shapes docs/integrations/openai.md
describes; anything they do not translate stays verbatim in ``extensions``.
"""

from __future__ import annotations

import copy
from typing import Any

from run_identity.integrations._mapping import (
    GENAI_PART_TYPES,
    Unmapped,
    data_url,
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

__all__ = ["chat_body", "chat_composition", "responses_body", "responses_composition"]

CHAT_PARAMETERS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_tokens": "max_tokens",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "n": "choice_count",
    "stop": "stop_sequences",
    "response_format": "response_format",
}
RESPONSES_PARAMETERS = {"temperature": "temperature", "top_p": "top_p", "max_output_tokens": "max_tokens"}
_TEXT_ROLES = frozenset({"system", "developer", "user", "assistant"})
_MODALITY = {"image_url": "image", "input_audio": "audio", "file": "document"}


# --- content parts ---------------------------------------------------------------------------------------


def _image(url: object, extra: dict[str, Any], modality: str = "image") -> dict[str, Any]:
    if type(url) is not str:
        raise Unmapped
    found = data_url(url)
    if found is not None:
        return merge({"type": "blob", "modality": modality, "mime_type": found[0], "content": found[1]}, extra)
    return merge({"type": "uri", "modality": modality, "uri": url}, extra)


def _chat_part(part: Any) -> dict[str, Any]:
    if type(part) is not dict or type(part.get("type")) is not str:
        raise Unmapped
    rest = dict(part)
    kind = rest.pop("type")
    if kind == "text":
        return merge(
            {"type": "text", "content": require(rest, "text", str)}, {k: v for k, v in rest.items() if k != "text"}
        )
    if kind in _MODALITY:
        inner = dict(require(rest, kind, dict))
        if len(rest) != 1:
            raise Unmapped
        if kind == "image_url":
            return _image(inner.pop("url", None), inner)
        if kind == "input_audio":
            data = inner.pop("data", None)
            if not is_canonical_base64(data):
                raise Unmapped
            return merge({"type": "blob", "modality": "audio", "content": data}, inner)
        if "file_id" in inner:
            return merge({"type": "file", "modality": "document", "file_id": inner.pop("file_id")}, inner)
        found = data_url(inner.pop("file_data", None) or "")
        if found is None:
            raise Unmapped
        return merge({"type": "blob", "modality": "document", "mime_type": found[0], "content": found[1]}, inner)
    if kind in GENAI_PART_TYPES:
        raise Unmapped
    return part


def _chat_part_back(part: dict[str, Any]) -> dict[str, Any]:
    rest = dict(part)
    kind = rest.pop("type")
    if kind == "text":
        return {"type": "text", "text": rest.pop("content"), **rest}
    if kind in ("blob", "uri", "file"):
        modality = rest.pop("modality")
        if kind == "uri":
            return {"type": "image_url", "image_url": {"url": rest.pop("uri"), **rest}}
        if kind == "file":
            return {"type": "file", "file": {"file_id": rest.pop("file_id"), **rest}}
        content = rest.pop("content")
        if modality == "audio":
            return {"type": "input_audio", "input_audio": {"data": content, **rest}}
        url = f"data:{rest.pop('mime_type')};base64,{content}"
        if modality == "image":
            return {"type": "image_url", "image_url": {"url": url, **rest}}
        return {"type": "file", "file": {"file_data": url, **rest}}
    return part


# --- chat messages ---------------------------------------------------------------------------------------


def _tool_call(call: Any) -> dict[str, Any]:
    if type(call) is not dict or call.get("type") != "function" or set(call) != {"id", "type", "function"}:
        raise Unmapped
    function = dict(require(call, "function", dict))
    if set(function) != {"name", "arguments"}:
        raise Unmapped
    return {"type": "tool_call", "id": call["id"], "name": function["name"], "arguments": function["arguments"]}


def _chat_message(message: Any) -> dict[str, Any]:
    if type(message) is not dict:
        raise Unmapped
    if len(message) == 2 and type(message.get("content")) is str and message.get("role") in _TEXT_ROLES:
        return {"role": message["role"], "parts": [{"type": "text", "content": message["content"]}]}  # common
    rest = dict(message)
    role = require(rest, "role", str)
    del rest["role"]
    if "parts" in rest:
        raise Unmapped
    out: dict[str, Any] = {"role": role}
    parts: list[Any] = []
    if role == "tool":
        if "content" not in rest:
            raise Unmapped
        response = {"type": "tool_call_response", "response": rest.pop("content")}
        if "tool_call_id" in rest:
            response["id"] = rest.pop("tool_call_id")
        parts.append(response)
    elif "content" in rest:
        content = rest.pop("content")
        if type(content) is str:
            parts.extend(text_parts(content))
        elif type(content) is list:
            parts.extend(_chat_part(p) for p in content)
        else:
            out["content"] = content  # null (an assistant turn with tool calls only), kept as sent
    if "tool_calls" in rest:
        parts.extend(map_list(rest.pop("tool_calls"), _tool_call))
    out["parts"] = parts
    return merge(out, rest)


def _chat_message_back(message: dict[str, Any]) -> dict[str, Any]:
    rest = dict(message)
    role = rest.pop("role")
    parts = rest.pop("parts")
    out: dict[str, Any] = {"role": role}
    if role == "tool":
        (part,) = parts
        out["content"] = part["response"]
        if "id" in part:
            out["tool_call_id"] = part["id"]
        return {**out, **rest}
    content = [p for p in parts if p.get("type") != "tool_call"]
    calls = [p for p in parts if p.get("type") == "tool_call"]
    if content:
        text = lone_text(content)
        out["content"] = text if text is not None else [_chat_part_back(p) for p in content]
    out.update(rest)
    if calls:
        out["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]
    return out


def _chat_tool(tool: Any) -> dict[str, Any]:
    if type(tool) is not dict or type(tool.get("type")) is not str or len(tool) != 2:
        raise Unmapped
    kind = tool["type"]
    inner = dict(require(tool, kind, dict))
    if type(inner.get("name")) is not str or "type" in inner:
        raise Unmapped
    return {"type": kind, **inner}


def _chat_tool_back(tool: dict[str, Any]) -> dict[str, Any]:
    rest = dict(tool)
    kind = rest.pop("type")
    return {"type": kind, kind: rest}


def _mapped(body: dict[str, Any], field: str, convert: Any) -> list[Any] | None:
    """The converted list at ``body[field]`` (removed from the body), or None when it stays verbatim."""
    if field not in body:
        return None
    try:
        converted: list[Any] = map_list(body[field], convert)
    except Unmapped:
        return None
    del body[field]
    return converted


def chat_composition(body: dict[str, Any], *, provider: str = "openai", endpoint: str | None = None) -> dict[str, Any]:
    """The composition of a Chat Completions request body."""
    rest = copy.copy(body)
    composition: dict[str, Any] = {
        "model": model_component(provider, rest.pop("model", None), endpoint),
        "operation": "chat",
    }
    messages = _mapped(rest, "messages", _chat_message)
    if messages is not None:
        composition["messages"] = messages
    tools = _mapped(rest, "tools", _chat_tool)
    if tools is not None:
        composition["tools"] = tools
    parameters = take_parameters(rest, CHAT_PARAMETERS)
    if parameters:
        composition["parameters"] = parameters
    if rest:
        composition["extensions"] = rest
    return composition


def chat_body(composition: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions request body of a composition made by :func:`chat_composition`."""
    body: dict[str, Any] = {"model": composition["model"]["name"]}
    if "messages" in composition:
        body["messages"] = [_chat_message_back(m) for m in composition["messages"]]
    if "tools" in composition:
        body["tools"] = [_chat_tool_back(t) for t in composition["tools"]]
    put_parameters(body, composition.get("parameters", {}), CHAT_PARAMETERS)
    body.update(composition.get("extensions", {}))
    return body


# --- Responses -------------------------------------------------------------------------------------------


def _default_text_type(role: str) -> str:
    return "output_text" if role == "assistant" else "input_text"


def _responses_part(part: Any, role: str) -> dict[str, Any]:
    if type(part) is not dict or type(part.get("type")) is not str:
        raise Unmapped
    rest = dict(part)
    kind = rest.pop("type")
    if kind in ("input_text", "output_text"):
        if kind != _default_text_type(role):
            raise Unmapped
        return merge(
            {"type": "text", "content": require(rest, "text", str)}, {k: v for k, v in rest.items() if k != "text"}
        )
    if kind == "input_image" and type(rest.get("image_url")) is str:
        return _image(rest.pop("image_url"), rest)
    if kind in GENAI_PART_TYPES:
        raise Unmapped
    return part


def _responses_part_back(part: dict[str, Any], role: str) -> dict[str, Any]:
    rest = dict(part)
    kind = rest.pop("type")
    if kind == "text":
        return {"type": _default_text_type(role), "text": rest.pop("content"), **rest}
    if kind in ("uri", "blob"):
        rest.pop("modality")
        url = rest.pop("uri") if kind == "uri" else f"data:{rest.pop('mime_type')};base64,{rest.pop('content')}"
        return {"type": "input_image", "image_url": url, **rest}
    return part


def _responses_item(item: Any) -> dict[str, Any]:
    if type(item) is not dict:
        raise Unmapped
    rest = dict(item)
    kind = rest.get("type", "message")
    if kind == "function_call":
        del rest["type"]
        call = {"type": "tool_call", "id": rest.pop("call_id", None), "name": rest.pop("name", None)}
        call["arguments"] = require(rest, "arguments", str)
        del rest["arguments"]
        if type(call["id"]) is not str or type(call["name"]) is not str:
            raise Unmapped
        return merge({"role": "assistant", "parts": [call]}, rest)
    if kind == "function_call_output":
        del rest["type"]
        response = {"type": "tool_call_response", "id": require(rest, "call_id", str), "response": rest.get("output")}
        if "output" not in rest:
            raise Unmapped
        del rest["call_id"], rest["output"]
        return merge({"role": "tool", "parts": [response]}, rest)
    if kind != "message" or "parts" in rest:
        raise Unmapped
    role = require(rest, "role", str)
    content = rest.pop("content", None)
    del rest["role"]
    if type(content) is str:
        parts = text_parts(content)
    elif type(content) is list:
        parts = [_responses_part(p, role) for p in content]
    else:
        raise Unmapped
    return merge({"role": role, "parts": parts}, rest)


def _responses_item_back(message: dict[str, Any]) -> dict[str, Any]:
    rest = dict(message)
    role = rest.pop("role")
    parts = rest.pop("parts")
    if role == "tool" and len(parts) == 1 and parts[0]["type"] == "tool_call_response":
        return {"type": "function_call_output", "call_id": parts[0]["id"], "output": parts[0]["response"], **rest}
    if role == "assistant" and len(parts) == 1 and parts[0]["type"] == "tool_call":
        call = parts[0]
        return {
            "type": "function_call",
            "call_id": call["id"],
            "name": call["name"],
            "arguments": call["arguments"],
            **rest,
        }
    text = lone_text(parts)
    content: Any = text if text is not None else [_responses_part_back(p, role) for p in parts]
    return {"role": role, "content": content, **rest}


def _responses_tool(tool: Any) -> dict[str, Any]:
    if type(tool) is not dict or type(tool.get("type")) is not str or type(tool.get("name")) is not str:
        raise Unmapped
    return dict(tool)


def responses_composition(
    body: dict[str, Any], *, provider: str = "openai", endpoint: str | None = None
) -> dict[str, Any]:
    """The composition of a Responses request body (``instructions`` is its own component here)."""
    rest = copy.copy(body)
    composition: dict[str, Any] = {
        "model": model_component(provider, rest.pop("model", None), endpoint),
        "operation": "chat",
    }
    if type(rest.get("instructions")) is str:
        composition["instructions"] = text_parts(rest.pop("instructions"))
    if type(rest.get("input")) is str:
        composition["messages"] = [{"role": "user", "parts": text_parts(rest.pop("input"))}]
    else:
        messages = _mapped(rest, "input", _responses_item)
        if messages is not None:
            composition["messages"] = messages
    tools = _mapped(rest, "tools", _responses_tool)
    if tools is not None:
        composition["tools"] = tools
    parameters = take_parameters(rest, RESPONSES_PARAMETERS)
    if parameters:
        composition["parameters"] = parameters
    if rest:
        composition["extensions"] = rest
    return composition


def _single_user_text(messages: list[dict[str, Any]]) -> bool:
    return (
        len(messages) == 1
        and messages[0].keys() == {"role", "parts"}
        and messages[0]["role"] == "user"
        and (lone_text(messages[0]["parts"]) is not None)
    )


def responses_body(composition: dict[str, Any]) -> dict[str, Any]:
    """The Responses request body of a composition made by :func:`responses_composition`."""
    body: dict[str, Any] = {"model": composition["model"]["name"]}
    if "instructions" in composition:
        text = lone_text(composition["instructions"])
        if text is None:
            raise Unmapped
        body["instructions"] = text
    if "messages" in composition:
        messages = composition["messages"]
        body["input"] = (
            lone_text(messages[0]["parts"])
            if _single_user_text(messages)
            else [_responses_item_back(m) for m in messages]
        )
    if "tools" in composition:
        body["tools"] = [dict(t) for t in composition["tools"]]
    put_parameters(body, composition.get("parameters", {}), RESPONSES_PARAMETERS)
    body.update(composition.get("extensions", {}))
    return body
