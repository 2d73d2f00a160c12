"""Local stand-ins for the OpenAI and Anthropic APIs on 127.0.0.1: canned replies in the real shapes.

Chat Completions, Responses and Messages, as JSON or as server-sent events, like recorded cassettes. Every
request is kept (body and headers) for inspection. The reply of the next call can be set with ``reply``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-test-not-a-real-key-0123456789"
SNAPSHOT = "-2024-07-18"


@dataclass
class Reply:
    """What the next call answers: text, tool calls, the model it claims, the finish reason."""

    text: str = "Lisbon."
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments JSON)
    model: str | None = None  # default: the requested model + SNAPSHOT
    finish_reason: str | None = None


def official_openai_instrumentation() -> tuple[Any, str]:
    """The official OpenAI instrumentor installed and (part of) its scope name: genai-openai (on util-genai 1.x),
    else openai-v2 (the older combination with openai 2.x and util-genai 0.x, docs/integration.md)."""
    try:
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
    except ImportError:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        return OpenAIInstrumentor, "openai_v2"
    return OpenAIInstrumentor, "genai.openai"


class Headers(dict[str, str]):
    """A request's headers, looked up whatever the case (httpx2 sends them in lower case, httpx did not)."""

    def __init__(self, items: Any) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class LLMServer:
    """The running server: its base URLs, the requests received, and the replies queued."""

    root: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)

    @property
    def openai_url(self) -> str:
        return f"{self.root}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.root

    def reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if self.replies else Reply()


def _model(reply: Reply, request: dict[str, Any]) -> str:
    return reply.model if reply.model is not None else f"{request.get('model')}{SNAPSHOT}"


def chat_completion(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in reply.tool_calls
        ]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": "chatcmpl-canned-1",
        "object": "chat.completion",
        "created": 1767225600,
        "model": _model(reply, request),
        "system_fingerprint": "fp_canned01",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
    }


def chat_chunks(reply: Reply, request: dict[str, Any]) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-canned-1",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": _model(reply, request),
        "system_fingerprint": "fp_canned01",
    }
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    text = reply.text
    deltas.extend({"content": text[i : i + 3]} for i in range(0, len(text), 3))
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        deltas.append(
            {
                "tool_calls": [
                    {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                ]
            }
        )
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return chunks


def response_object(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {
            "type": "message",
            "id": "msg_canned",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
        }
    ]
    output.extend(
        {"type": "function_call", "id": f"fc_{i}", "call_id": i, "name": n, "arguments": a, "status": "completed"}
        for i, n, a in reply.tool_calls
    )
    return {
        "id": "resp_canned_1",
        "object": "response",
        "created_at": 1767225600,
        "status": "completed",
        "model": _model(reply, request),
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 20,
            "output_tokens": 2,
            "total_tokens": 22,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def response_events(reply: Reply, request: dict[str, Any]) -> list[dict[str, Any]]:
    final = response_object(reply, request)
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    message = final["output"][0]
    where = {"item_id": message["id"], "output_index": 0}
    events: list[dict[str, Any]] = [{"type": "response.created", "sequence_number": 0, "response": started}]
    events.append(
        {
            "type": "response.output_item.added",
            "sequence_number": 1,
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        }
    )
    part = {"type": "output_text", "text": "", "annotations": []}
    events.append(
        {"type": "response.content_part.added", "sequence_number": 2, **where, "content_index": 0, "part": part}
    )
    for i in range(0, len(reply.text), 3):
        events.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": len(events),
                "item_id": "msg_canned",
                "output_index": 0,
                "content_index": 0,
                "delta": reply.text[i : i + 3],
                "logprobs": [],
            }
        )
    done: list[dict[str, Any]] = [
        {"type": "response.output_text.done", **where, "content_index": 0, "text": reply.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "content_index": 0, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
    ]
    for event in done:
        events.append({**event, "sequence_number": len(events)})
    events.append({"type": "response.completed", "sequence_number": len(events), "response": final})
    return events


def message_object(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend({"type": "tool_use", "id": i, "name": n, "input": json.loads(a)} for i, n, a in reply.tool_calls)
    return {
        "id": "msg_canned_1",
        "type": "message",
        "role": "assistant",
        "model": _model(reply, request),
        "content": content,
        "stop_reason": reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 2},
    }


def message_events(reply: Reply, request: dict[str, Any]) -> list[dict[str, Any]]:
    final = message_object(reply, request)
    start = {**final, "content": [], "stop_reason": None, "usage": {"input_tokens": 20, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    index = 0
    if reply.text:
        events.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        for i in range(0, len(reply.text), 3):
            delta = {"type": "text_delta", "text": reply.text[i : i + 3]}
            events.append({"type": "content_block_delta", "index": 0, "delta": delta})
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    for call_id, name, arguments in reply.tool_calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": 2},
        }
    )
    events.append({"type": "message_stop"})
    return events


class _Handler(BaseHTTPRequestHandler):
    server_state: LLMServer

    def do_POST(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state.requests.append(request)
        state.headers.append(Headers(self.headers.items()))
        reply = state.next_reply()
        stream = request.get("stream") is True
        routes = {
            "/v1/chat/completions": (chat_completion, chat_chunks, False),
            "/v1/responses": (response_object, response_events, True),
            "/v1/messages": (message_object, message_events, True),
        }
        route = routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        whole, events, named = route
        if not stream:
            body = json.dumps(whole(reply, request)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        lines = []
        for event in events(reply, request):
            prefix = f"event: {event['type']}\n" if named else ""
            lines.append(f"{prefix}data: {json.dumps(event)}\n\n")
        if not named:
            lines.append("data: [DONE]\n\n")
        body = "".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def serve() -> Iterator[LLMServer]:
    """Run the server on 127.0.0.1 (a free port) for the duration of the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = LLMServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
