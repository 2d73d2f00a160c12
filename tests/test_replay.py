"""run-identity replay: the exact request rebuilt from a manifest, sent to a canned local server, compared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from llm_servers import API_KEY, LLMServer, Reply, serve
from verify_fixtures import manifest_bodies

import run_identity
from run_identity import Ed25519Signer, Keyring, Manifest, OtlpJsonFileLogExporter
from run_identity.cli import main
from run_identity.core.attributes import RECEIPT_EVENT_NAME
from run_identity.integrations import anthropic as ri_anthropic
from run_identity.integrations import openai as ri_openai
from run_identity.integrations.replay import ReplayError, rebuild


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with serve() as running:
        yield running


def record_run(tmp_path: Path, signer: Ed25519Signer, call: Any) -> tuple[Path, Path, Any]:
    """Run ``call`` captured by both integrations with the embedded export; (export dir, JWKS, reply)."""
    out = tmp_path / "out"
    receipts = OtlpJsonFileLogExporter(out / "receipts.jsonl", event_name=RECEIPT_EVENT_NAME)
    handle = run_identity.setup(signer, directory=out, manifest_exporters=[receipts], set_global=False)
    ri_openai.instrument(tracer_provider=handle.tracer_provider)
    ri_anthropic.instrument(tracer_provider=handle.tracer_provider)
    try:
        reply = call()
    finally:
        ri_openai.uninstrument()
        ri_anthropic.uninstrument()
        handle.shutdown()
    jwks = tmp_path / "trusted.jwks.json"
    jwks.write_text(json.dumps(Keyring([signer.public_key]).to_jwks()))
    return out, jwks, reply


def chat(server: LLMServer, **more: Any) -> Any:
    client = openai.OpenAI(api_key=API_KEY, base_url=server.openai_url, max_retries=0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Portugal?"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.2, seed=3, **more)  # type: ignore[arg-type]
    if more.get("stream"):
        for _ in reply:
            pass
    return reply


def test_replay_sends_the_exact_request_and_reports_the_same_output(
    tmp_path: Path,
    server: LLMServer,
    signer: Ed25519Signer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The replayed request is byte-for-byte the original body; same identity, same output digest."""
    out, jwks, reply = record_run(tmp_path, signer, lambda: chat(server))
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    code = main(["replay", receipt.identity, "--in", str(out), "--base-url", server.openai_url, "--keyring", str(jwks)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "verified  verified" in text and "equal: the rebuilt request is the declared one" in text
    assert "the same output" in text
    assert server.requests[1] == server.requests[0]
    assert server.headers[1]["Authorization"] == f"Bearer {API_KEY}"


def test_replay_shows_how_the_outputs_differ(
    tmp_path: Path,
    server: LLMServer,
    signer: Ed25519Signer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A streamed run replayed to a server that now answers otherwise: a unified diff of the output text."""
    out, _, reply = record_run(tmp_path, signer, lambda: chat(server, stream=True))
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None
    server.reply(Reply(text="Porto."))
    monkeypatch.setenv("MY_KEY", "sk-other")
    run = f"{receipt.statement.trace_id}/{receipt.statement.span_id}"
    code = main(["replay", run, "--in", str(out), "--base-url", server.openai_url, "--api-key-env", "MY_KEY"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "streamed" in text and "the outputs differ" in text
    assert "-Lisbon." in text and "+Porto." in text
    assert server.requests[1] == server.requests[0] and server.requests[1]["stream"] is True


def test_dry_run_prints_the_request_without_a_key(
    tmp_path: Path,
    server: LLMServer,
    signer: Ed25519Signer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run prints the rebuilt body (the one originally sent) and sends nothing; by default the request
    is addressed to the provider's official endpoint, not to the one the manifest names."""
    out, _, reply = record_run(tmp_path, signer, lambda: chat(server))
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["replay", receipt.identity, "--in", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    body = json.loads(text[text.index("{") :])
    assert body == server.requests[0] and len(server.requests) == 1
    assert "POST https://api.openai.com/v1/chat/completions (openai chat; the provider's official endpoint)" in text


def test_anthropic_runs_replay_to_the_messages_api(
    tmp_path: Path,
    server: LLMServer,
    signer: Ed25519Signer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An Anthropic run is rebuilt for /v1/messages with its own headers."""

    def call() -> Any:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=server.anthropic_url, max_retries=0)
        return client.messages.create(
            model="claude-canned-4", max_tokens=32, system="Be brief.", messages=[{"role": "user", "content": "Hi"}]
        )

    out, jwks, reply = record_run(tmp_path, signer, call)
    receipt = run_identity.receipt_of(reply)
    assert receipt is not None
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    code = main(
        ["replay", receipt.identity, "--in", str(out), "--base-url", server.anthropic_url, "--keyring", str(jwks)]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "the same output" in text
    assert (
        server.requests[1] == server.requests[0]
        and {k.lower(): v for k, v in server.headers[1].items()}["x-api-key"] == API_KEY
    )


def test_a_manifest_that_withholds_content_cannot_be_replayed(
    tmp_path: Path, server: LLMServer, signer: Ed25519Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Withheld content: replay says so and exits 1."""
    out, _, _ = record_run(tmp_path, signer, lambda: chat(server))
    (body,) = manifest_bodies(out / "manifests.jsonl")
    manifest = Manifest.from_json(body).withhold("messages", 1)
    path = tmp_path / "withheld.json"
    path.write_bytes(manifest.to_json_bytes())
    assert main(["replay", str(path), "--dry-run"]) == 1
    assert "withholds content (messages)" in capsys.readouterr().err
    with pytest.raises(ReplayError, match="withholds content"):
        rebuild(manifest)


def test_a_hand_declared_composition_is_not_replayable(signer: Ed25519Signer) -> None:
    """A composition without a client endpoint cannot be rebuilt into a request."""
    from run_identity.core.signing import sign_run

    composition = run_identity.Composition.from_dict(
        {"model": {"provider": "openai", "name": "m"}, "operation": "chat"}
    )
    run = sign_run(composition, signer, trace_id="1" * 32, span_id="2" * 16)
    with pytest.raises(ReplayError, match="not captured from a client"):
        rebuild(Manifest.from_json(run.manifest_json()))
