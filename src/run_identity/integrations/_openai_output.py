"""OpenAI responses -> the run's output (spec §10.4), from a whole response or from its stream events.

A streamed call and a non-streamed call that produce the same content give the same output, so the same
output digest: text parts hold non-empty text, tool calls keep their ``arguments`` string as returned.
"""

from __future__ import annotations

from typing import Any

from run_identity.integrations._receipts import Output
from run_identity.integrations._values import get

__all__ = ["ChatAccumulator", "ResponsesAccumulator", "chat_output", "responses_output"]


def _str(value: object) -> str | None:
    return value if type(value) is str else None


def _message(
    role: object, content: object, refusal: object, calls: list[dict[str, Any]], finish: object
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if type(content) is str and content:
        parts.append({"type": "text", "content": content})
    if type(refusal) is str and refusal:
        parts.append({"type": "refusal", "content": refusal})
    parts.extend(calls)
    message: dict[str, Any] = {"role": role if type(role) is str else "assistant", "parts": parts}
    if type(finish) is str:
        message["finish_reason"] = finish
    return message


def _call(call_id: object, name: object, arguments: object) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "tool_call", "name": name if type(name) is str else ""}
    if type(call_id) is str:
        part["id"] = call_id
    if arguments is not None:
        part["arguments"] = arguments
    return part


def _tool_call(call: Any) -> dict[str, Any]:
    function = get(call, "function")
    if function is not None:
        return _call(get(call, "id"), get(function, "name"), get(function, "arguments"))
    custom = get(call, "custom")
    return _call(get(call, "id"), get(custom, "name"), get(custom, "input"))


def _usage(output: Output, usage: Any, prompt: str, completion: str) -> None:
    if usage is not None:
        tokens_in, tokens_out = get(usage, prompt), get(usage, completion)
        output.input_tokens = tokens_in if type(tokens_in) is int else None
        output.output_tokens = tokens_out if type(tokens_out) is int else None


def chat_output(response: Any) -> Output:
    """The output of a ChatCompletion (object or JSON): one output message per choice, by index."""
    messages = []
    choices = sorted(get(response, "choices") or [], key=lambda c: get(c, "index") or 0)
    for choice in choices:
        message = get(choice, "message")
        calls = [_tool_call(c) for c in get(message, "tool_calls") or []]
        messages.append(
            _message(
                get(message, "role"),
                get(message, "content"),
                get(message, "refusal"),
                calls,
                get(choice, "finish_reason"),
            )
        )
    output = Output(
        messages, _str(get(response, "model")), _str(get(response, "id")), _str(get(response, "system_fingerprint"))
    )
    _usage(output, get(response, "usage"), "prompt_tokens", "completion_tokens")
    return output


class _Choice:
    __slots__ = ("calls", "content", "finish", "refusal", "role")

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        self.finish: str | None = None


class ChatAccumulator:
    """Builds the output of a streamed chat completion from its chunks (objects or JSON)."""

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._model: str | None = None
        self._id: str | None = None
        self._fingerprint: str | None = None
        self._usage: Any = None

    def add(self, chunk: Any) -> None:
        self._model = _str(get(chunk, "model")) or self._model
        self._id = _str(get(chunk, "id")) or self._id
        self._fingerprint = _str(get(chunk, "system_fingerprint")) or self._fingerprint
        self._usage = get(chunk, "usage") or self._usage
        for c in get(chunk, "choices") or []:
            state = self._choices.setdefault(get(c, "index") or 0, _Choice())
            delta = get(c, "delta")
            if delta is not None:
                state.role = _str(get(delta, "role")) or state.role
                piece = get(delta, "content")
                if type(piece) is str:
                    state.content.append(piece)
                piece = get(delta, "refusal")
                if type(piece) is str:
                    state.refusal.append(piece)
                for call in get(delta, "tool_calls") or []:
                    slot = state.calls.setdefault(get(call, "index") or 0, [None, None, []])
                    slot[0] = _str(get(call, "id")) or slot[0]
                    function = get(call, "function")
                    if function is not None:
                        slot[1] = _str(get(function, "name")) or slot[1]
                        arguments = get(function, "arguments")
                        if type(arguments) is str:
                            slot[2].append(arguments)
            state.finish = _str(get(c, "finish_reason")) or state.finish

    def output(self) -> Output | None:
        messages = []
        for _, state in sorted(self._choices.items()):
            calls = [_call(i, n, "".join(a)) for _, (i, n, a) in sorted(state.calls.items())]
            messages.append(_message(state.role, "".join(state.content), "".join(state.refusal), calls, state.finish))
        output = Output(messages, self._model, self._id, self._fingerprint)
        _usage(output, self._usage, "prompt_tokens", "completion_tokens")
        return output


def responses_output(response: Any) -> Output:
    """The output of a Responses ``Response``: one output message holding every output item's parts."""
    parts: list[dict[str, Any]] = []
    for item in get(response, "output") or []:
        kind = get(item, "type")
        if kind == "message":
            for block in get(item, "content") or []:
                block_type = get(block, "type")
                if block_type == "output_text":
                    if get(block, "text"):
                        parts.append({"type": "text", "content": get(block, "text")})
                elif block_type == "refusal":
                    parts.append({"type": "refusal", "content": get(block, "refusal")})
                else:
                    parts.append({"type": block_type})
        elif kind == "function_call":
            parts.append(_call(get(item, "call_id"), get(item, "name"), get(item, "arguments")))
        elif kind == "reasoning":
            parts.extend({"type": "reasoning", "content": get(s, "text")} for s in get(item, "summary") or [])
        else:
            parts.append({"type": kind})
    status = get(response, "status")
    details = get(response, "incomplete_details")
    finish = get(details, "reason") if details is not None else status
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if type(finish) is str:
        message["finish_reason"] = finish
    output = Output([message], _str(get(response, "model")), _str(get(response, "id")))
    _usage(output, get(response, "usage"), "input_tokens", "output_tokens")
    return output


class ResponsesAccumulator:
    """Keeps the final response of a streamed Responses call (its ``response.completed`` event)."""

    _FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self) -> None:
        self._response: Any = None

    def add(self, event: Any) -> None:
        if get(event, "type") in self._FINAL:
            self._response = get(event, "response")

    def output(self) -> Output | None:
        return None if self._response is None else responses_output(self._response)
