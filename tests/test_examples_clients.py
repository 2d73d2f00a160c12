"""The client examples run against the canned local server; what they export verifies, receipts included."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from llm_servers import API_KEY, LLMServer, serve
from verify_fixtures import manifest_bodies

from run_identity import Ed25519Signer, Keyring, Manifest, Receipt, verify_receipt
from run_identity.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


def load(name: str) -> ModuleType:
    """examples/<name>/app.py under a module name of its own."""
    spec = importlib.util.spec_from_file_location(f"{name}_app", ROOT / "examples" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"{name}_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    with serve() as running:
        yield running


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Keyring]:
    signer = Ed25519Signer.generate()
    key = tmp_path / "signing-key.pem"
    key.write_bytes(signer.private_pem())
    ring = Keyring([signer.public_key])
    jwks = tmp_path / "trusted.jwks.json"
    jwks.write_text(json.dumps(ring.to_jwks()))
    return key, jwks, ring


def check_export(out: Path, jwks: Path, ring: Keyring, capsys: pytest.CaptureFixture[str]) -> None:
    """The export verifies (spans, manifests, receipts) and receipt.json checks against the manifest."""
    receipt = Receipt.from_json((out.parent / "receipt.json").read_bytes())
    (body,) = manifest_bodies(out / "manifests.jsonl")
    verify_receipt(receipt, ring, statement=Manifest.from_json(body).statement)
    capsys.readouterr()
    assert cli(["verify", str(out), "--keyring", str(jwks)]) == 0, capsys.readouterr().out
    assert API_KEY not in "".join(p.read_text() for p in out.iterdir())


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_client_example(
    tmp_path: Path,
    server: LLMServer,
    keys: tuple[Path, Path, Keyring],
    capsys: pytest.CaptureFixture[str],
    stream: bool,
    official: bool,
) -> None:
    """examples/openai_client: the answer, its identity, and a receipt that verifies with the export (with
    ``--official``, the span is genai-openai's and the receipt the completion hook's)."""
    if official:
        pytest.importorskip("opentelemetry.instrumentation.genai.openai", reason="util-genai 1.x instrumentation")
    key, jwks, ring = keys
    out = tmp_path / "out"
    argv = ["--key", str(key), "--out", str(out), "--receipt", str(tmp_path / "receipt.json")]
    argv += ["--base-url", server.openai_url] + (["--stream"] if stream else []) + (["--official"] if official else [])
    assert load("openai_client").main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "Lisbon."
    assert "served gpt-4o-mini-2024-07-18" in captured.err
    check_export(out, jwks, ring, capsys)
    scopes = {
        s["scope"]["name"]
        for line in (out / "traces.jsonl").read_text().splitlines()
        for r in json.loads(line)["resourceSpans"]
        for s in r["scopeSpans"]
    }
    assert scopes == ({"opentelemetry.instrumentation.genai.openai"} if official else {"run_identity.integrations"})
    receipt_scopes = {
        s["scope"]["name"]
        for line in (out / "manifests.jsonl").read_text().splitlines()
        for r in json.loads(line)["resourceLogs"]
        for s in r["scopeLogs"]
        if any(x.get("eventName") == "run_identity.receipt" for x in s["logRecords"])
    }
    assert receipt_scopes == ({"run_identity.completion_hook"} if official else {"run_identity.integrations"})


@pytest.mark.parametrize("official", [False, True])
def test_anthropic_client_example(
    tmp_path: Path,
    server: LLMServer,
    keys: tuple[Path, Path, Keyring],
    capsys: pytest.CaptureFixture[str],
    official: bool,
) -> None:
    """examples/anthropic_client: a streamed answer, its identity, and a receipt that verifies."""
    if official:
        pytest.importorskip("opentelemetry.instrumentation.genai.anthropic", reason="util-genai 1.x instrumentation")
    key, jwks, ring = keys
    out = tmp_path / "out"
    argv = ["--key", str(key), "--out", str(out), "--receipt", str(tmp_path / "receipt.json")]
    argv += ["--base-url", server.anthropic_url, "--model", "claude-canned-4"] + (["--official"] if official else [])
    assert load("anthropic_client").main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "Lisbon." and "stop: end_turn" in captured.err
    check_export(out, jwks, ring, capsys)
