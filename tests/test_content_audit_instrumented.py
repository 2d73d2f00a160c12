"""What was sent against what was declared, with the official GenAI instrumentations capturing content.

The real genai-openai and genai-anthropic instrumentations (util-genai 1.x) capture each request's content on
the span, on a ``gen_ai.client.inference.operation.details`` log record, or both
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``); the real clients send to the canned servers on
127.0.0.1; spans and manifests go through ``run_identity.setup``'s file export and the instrumentation's events
to a file of their own; ``Verifier`` reads it all (docs/spec.md §12 step 6). A declaration of what was sent
verifies with no finding; one of "Capital of Spain?" around a call sending "Capital of Portugal?" does not.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from llm_servers import API_KEY, LLMServer, Reply, serve
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

import run_identity
from run_identity import Ed25519Signer, Keyring
from run_identity.cli import main as cli
from run_identity.integrations import anthropic as ri_anthropic
from run_identity.integrations import openai as ri_openai
from run_identity.otel.declare import current_declaration
from run_identity.otel.export_file import OtlpJsonFileLogExporter
from run_identity.verify import Policy, VerificationResult, Verifier

genai_openai = pytest.importorskip("opentelemetry.instrumentation.genai.openai", reason="util-genai 1.x")
genai_anthropic = pytest.importorskip("opentelemetry.instrumentation.genai.anthropic", reason="util-genai 1.x")

MODES = ("SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT")
EVENTS_FILE = "genai-events.jsonl"
SYSTEM = "Answer briefly."
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass
class Recorder:
    """An instrumented export: run_identity's files plus the instrumentation's events, and the verifier."""

    directory: Path
    signer: Ed25519Signer
    mode: str

    def verify(self) -> list[VerificationResult]:
        report = Verifier(Keyring([self.signer.public_key]), Policy()).verify([self.directory])
        return list(report.results())

    def lines(self, name: str) -> list[dict[str, Any]]:
        path = self.directory / name
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def captured(self) -> dict[str, int]:
        """How many carriers hold gen_ai.input.messages: on spans, on log records (so a test knows the content
        it verified was there to compare)."""
        spans = sum(
            any(a["key"] == "gen_ai.input.messages" for a in span["attributes"])
            for line in self.lines("traces.jsonl")
            for rs in line["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        )
        events = sum(
            any(a["key"] == "gen_ai.input.messages" for a in record.get("attributes", []))
            for line in self.lines(EVENTS_FILE)
            for rl in line["resourceLogs"]
            for sl in rl["scopeLogs"]
            for record in sl["logRecords"]
        )
        return {"span": spans, "event": events}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with serve() as running:
        yield running


@pytest.fixture(params=MODES)
def record(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Recorder]]:
    """Run calls under an official instrumentation with content capture in the parametrized mode."""
    mode: str = request.param
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode)

    def run(instrumentor_class: Any, calls: Callable[[], None], *, integration: Any = None) -> Recorder:
        signer = Ed25519Signer.generate()
        directory = tmp_path / "export"
        handle = run_identity.setup(signer, directory=directory, set_global=False)
        events = LoggerProvider(shutdown_on_exit=False)
        events.add_log_record_processor(SimpleLogRecordProcessor(OtlpJsonFileLogExporter(directory / EVENTS_FILE)))
        instrumentor = instrumentor_class()
        instrumentor.instrument(tracer_provider=handle.tracer_provider, logger_provider=events)
        if integration is not None:
            integration.instrument(tracer_provider=handle.tracer_provider, strict=True)
        try:
            calls()
        finally:
            if integration is not None:
                integration.uninstrument()
            instrumentor.uninstrument()
            handle.shutdown()
            events.shutdown()
        return Recorder(directory, signer, mode)

    yield run


def check(recorder: Recorder, runs: int, code: str = "verified") -> list[VerificationResult]:
    """Every run has ``code`` ("verified": no finding at all), and the content was there to be compared."""
    results = recorder.verify()
    assert len(results) == runs
    for result in results:
        assert result.code == code, [f.message for f in result.findings]
        if code == "verified":
            assert not result.findings and not result.unchecked
        else:
            assert {f.code for f in result.findings} == {code}
    captured = recorder.captured()
    assert captured["span"] == (runs if "SPAN" in recorder.mode else 0)
    assert captured["event"] == (runs if "EVENT" in recorder.mode else 0)
    return results


def openai_client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)


def chat_request(question: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "temperature": 0.2,
        "max_tokens": 64,
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
    }


def tool_conversation() -> dict[str, Any]:
    """A Chat Completions request replaying a turn with text, two tool calls and their results."""
    request = chat_request("Weather in Lisbon and Porto?")
    request["messages"] += [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Porto"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "cloudy, 17 C"},
    ]
    return request


def test_openai_hand_declarations_verify_with_content_captured(
    record: Callable[..., Recorder], server: LLMServer
) -> None:
    """composition_of the very request, declared by hand around it: no false alarm, in every capture mode,
    for a plain question, a replayed tool conversation and a streamed call."""
    requests = [chat_request("Capital of Portugal?"), tool_conversation(), chat_request("Capital of Spain?")]
    requests[2]["stream"] = True

    def calls() -> None:
        client = openai_client(server)
        for request in requests:
            with run_identity.declare(ri_openai.composition_of(request, client)):
                reply = client.chat.completions.create(**request)
                if request.get("stream"):
                    for _ in reply:
                        pass

    check(record(genai_openai.OpenAIInstrumentor, calls), runs=3)


def test_openai_declared_one_question_sent_another_is_telemetry_mismatch(
    record: Callable[..., Recorder], server: LLMServer
) -> None:
    """Declared "Capital of Spain?", sent "Capital of Portugal?": telemetry_mismatch, on every carrier."""

    def calls() -> None:
        client = openai_client(server)
        with run_identity.declare(ri_openai.composition_of(chat_request("Capital of Spain?"), client)):
            client.chat.completions.create(**chat_request("Capital of Portugal?"))

    recorder = record(genai_openai.OpenAIInstrumentor, calls)
    (result,) = check(recorder, runs=1, code="telemetry_mismatch")
    carriers = {f.message.split(" has ")[0] for f in result.findings}
    expected = set()
    if "SPAN" in recorder.mode:
        expected.add("the span")
    if "EVENT" in recorder.mode:
        expected.add("the log record 'gen_ai.client.inference.operation.details'")
    assert carriers == expected
    assert all("gen_ai.input.messages" in f.message and "entry 2" in f.message for f in result.findings)


def test_openai_other_tool_arguments_sent_are_telemetry_mismatch(
    record: Callable[..., Recorder], server: LLMServer
) -> None:
    """The replayed tool call's arguments changed between declaration and request: telemetry_mismatch."""

    def calls() -> None:
        client = openai_client(server)
        declared = tool_conversation()
        sent = tool_conversation()
        sent["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"city": "Faro"}'
        with run_identity.declare(ri_openai.composition_of(declared, client)):
            client.chat.completions.create(**sent)

    check(record(genai_openai.OpenAIInstrumentor, calls), runs=1, code="telemetry_mismatch")


def responses_request(question: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "instructions": SYSTEM,
        "input": [
            {"role": "user", "content": question},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Lisbon"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city": "Porto"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "cloudy"},
        ],
        "tools": [{"type": "function", **WEATHER_TOOL}],
        "temperature": 0.2,
    }


def test_openai_responses_with_instructions_and_parallel_tool_calls(
    record: Callable[..., Recorder], server: LLMServer
) -> None:
    """Responses: instructions are gen_ai.system_instructions, the two function_call items one captured turn;
    the hand declaration verifies, other instructions sent are telemetry_mismatch."""

    def calls() -> None:
        client = openai_client(server)
        request = responses_request("Weather in Lisbon and Porto?")
        with run_identity.declare(ri_openai.composition_of(request, client, api="responses")):
            client.responses.create(**request)

    check(record(genai_openai.OpenAIInstrumentor, calls), runs=1)


def test_openai_responses_other_instructions_sent_are_telemetry_mismatch(
    record: Callable[..., Recorder], server: LLMServer
) -> None:
    def calls() -> None:
        client = openai_client(server)
        declared = responses_request("Weather in Lisbon and Porto?")
        sent = {**declared, "instructions": "Answer at length."}
        with run_identity.declare(ri_openai.composition_of(declared, client, api="responses")):
            client.responses.create(**sent)

    (result,) = check(record(genai_openai.OpenAIInstrumentor, calls), runs=1, code="telemetry_mismatch")
    assert all("gen_ai.system_instructions" in f.message for f in result.findings)


def test_openai_integration_over_the_instrumentation_verifies(record: Callable[..., Recorder], server: LLMServer) -> None:
    """The OpenAI integration declaring every call from its request, under genai-openai: no false alarm."""

    def calls() -> None:
        client = openai_client(server)
        client.chat.completions.create(**tool_conversation())
        client.responses.create(**responses_request("Weather?"))

    check(record(genai_openai.OpenAIInstrumentor, calls, integration=ri_openai), runs=2)


def anthropic_request(question: str) -> dict[str, Any]:
    return {
        "model": "claude-canned-4",
        "max_tokens": 256,
        "system": SYSTEM,
        "messages": [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lisbon"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather for a city.", "input_schema": WEATHER_TOOL["parameters"]}
        ],
    }


def anthropic_client(server: LLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)


def test_anthropic_hand_declaration_and_integration_verify(record: Callable[..., Recorder], server: LLMServer) -> None:
    """genai-anthropic: system, a tool_use turn and its result, tools; declared by hand and captured by the
    integration: no false alarm in any mode."""

    def calls() -> None:
        client = anthropic_client(server)
        request = anthropic_request("Weather in Lisbon?")
        with run_identity.declare(ri_anthropic.composition_of(request, client)):
            client.messages.create(**request)
        with client.messages.stream(**anthropic_request("And in Porto?")) as stream:
            stream.until_done()
        # genai-anthropic attaches its span's context inside the manager and detaches it at exit, which makes
        # the captured call's context current again: its declaration, closed, no longer shows.
        assert current_declaration() is None

    check(record(genai_anthropic.AnthropicInstrumentor, calls, integration=ri_anthropic), runs=2)


def test_anthropic_declared_one_question_sent_another_is_telemetry_mismatch(
    record: Callable[..., Recorder], server: LLMServer
) -> None:
    def calls() -> None:
        client = anthropic_client(server)
        server.reply(Reply(text="Lisbon."))
        with run_identity.declare(ri_anthropic.composition_of(anthropic_request("Capital of Spain?"), client)):
            client.messages.create(**anthropic_request("Capital of Portugal?"))

    check(record(genai_anthropic.AnthropicInstrumentor, calls), runs=1, code="telemetry_mismatch")


@pytest.mark.parametrize("example", ["openai_client", "anthropic_client"])
def test_the_client_examples_verify_with_content_captured_on_their_spans(
    example: str, tmp_path: Path, server: LLMServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/*_client --official with content capture on: the span carries the captured content, and
    ``run-identity verify`` passes with no finding (the examples export spans and manifests only, so the
    instrumentation's events are not in their export; the tests above read those)."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_AND_EVENT")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    path = Path(__file__).resolve().parent.parent / "examples" / example / "app.py"
    spec = importlib.util.spec_from_file_location(f"{example}_content_app", path)
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    signer = Ed25519Signer.generate()
    key = tmp_path / "signing-key.pem"
    key.write_bytes(signer.private_pem())
    jwks = tmp_path / "trusted.jwks.json"
    jwks.write_text(json.dumps(Keyring([signer.public_key]).to_jwks()))
    out = tmp_path / "out"
    argv = ["--key", str(key), "--out", str(out), "--receipt", str(tmp_path / "receipt.json"), "--official"]
    argv += ["--base-url", server.openai_url] if example == "openai_client" else ["--base-url", server.anthropic_url]
    # In a context of its own, as above (the example streams under genai-anthropic).
    assert contextvars.copy_context().run(app.main, argv) == 0
    recorder = Recorder(out, signer, "SPAN_ONLY")
    assert recorder.captured() == {"span": 1, "event": 0}
    (result,) = recorder.verify()
    assert (result.code, result.findings, result.unchecked) == ("verified", (), ())
    capsys.readouterr()
    assert cli(["verify", str(out), "--keyring", str(jwks)]) == 0, capsys.readouterr().out


ZERO_CODE_APP = """
import openai

client = openai.OpenAI(max_retries=0)
messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of Portugal?"}]
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
print(client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools).choices[0].message.content)
"""


def test_zero_code_capture_with_content_on_the_span_verifies(tmp_path: Path, server: LLMServer) -> None:
    """opentelemetry-instrument with genai-openai capturing content on the span and the OpenAI integration
    declaring each call (RUN_IDENTITY_CAPTURE): the export verifies with no finding, the content compared."""
    signer = Ed25519Signer.generate()
    key = tmp_path / "signing-key.pem"
    key.write_bytes(signer.private_pem())
    app = tmp_path / "app.py"
    app.write_text(ZERO_CODE_APP)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_", "OPENAI_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY",
        OPENAI_BASE_URL=server.openai_url,
        OPENAI_API_KEY=API_KEY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(key),
        RUN_IDENTITY_EXPORT_DIR=str(out),
        RUN_IDENTITY_CAPTURE="openai",
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, str(app)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    recorder = Recorder(out, signer, "SPAN_ONLY")
    assert recorder.captured() == {"span": 1, "event": 0}
    (found,) = recorder.verify()
    assert (found.code, found.findings, found.unchecked) == ("verified", (), ())
