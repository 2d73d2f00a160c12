"""Zero-code: the real opentelemetry-instrument command installs the processor from RUN_IDENTITY_* vars."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import OpenAIServer
from llm_servers import official_openai_instrumentation

from run_identity import Composition, Ed25519Signer, Keyring, Manifest, compute_identity
from run_identity.core.statement import BindingStatement, decode_signature
from run_identity.otel.environment import RUN_IDENTITY_ENABLED, env_bool
from run_identity.zero_code import install

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "zero_code" / "app.py"
BIN = Path(sys.executable).parent
QUESTION = "What is the capital of Portugal?"


def run_app(tmp_path: Path, server: OpenAIServer, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run the example under opentelemetry-instrument with no exporter but ours; fails after 120 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_", "OPENAI_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="zero-code-test",
        OPENAI_BASE_URL=server.base_url,
        OPENAI_API_KEY="sk-test-not-a-key",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(variables)
    command = [str(BIN / "opentelemetry-instrument"), sys.executable, str(APP), QUESTION]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


def records(path: Path, signal: str, scope_key: str, items_key: str) -> list[dict[str, Any]]:
    """Every span or log record in an OTLP-JSON lines file."""
    out: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for resource in json.loads(line)[signal]:
            for scope in resource[scope_key]:
                out.extend({**item, "_scope": scope["scope"]["name"]} for item in scope[items_key])
    return out


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, Ed25519Signer]:
    signer = Ed25519Signer.generate()
    path = tmp_path / "signing-key.pem"
    path.write_bytes(signer.private_pem())
    return path, signer


def test_opentelemetry_instrument_puts_a_valid_identity_on_the_openai_span(
    tmp_path: Path, openai_server: OpenAIServer, key_file: tuple[Path, Ed25519Signer]
) -> None:
    """Under opentelemetry-instrument the instrumentation's span carries a signed, verifiable identity."""
    key, signer = key_file
    out = tmp_path / "out"
    result = run_app(
        tmp_path,
        openai_server,
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(key),
        RUN_IDENTITY_EXPORT_DIR=str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Lisbon."
    spans = records(out / "traces.jsonl", "resourceSpans", "scopeSpans", "spans")
    (span,) = [s for s in spans if official_openai_instrumentation()[1] in s["_scope"]]
    attributes = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
    composition = Composition.from_dict(
        {
            "model": {
                "provider": "openai",
                "name": "gpt-4o-mini",
                "endpoint": openai_server.base_url + "/chat/completions",
            },
            "operation": "chat",
            "messages": [  # Chat Completions: the system message stays in the messages, as sent (spec Annex A)
                {
                    "role": "system",
                    "parts": [{"type": "text", "content": "You answer geography questions in one short sentence."}],
                },
                {"role": "user", "parts": [{"type": "text", "content": QUESTION}]},
            ],
            "parameters": {"temperature": 0.0, "max_tokens": 64, "seed": 7},
        }
    )
    identity = compute_identity(composition).id
    assert attributes["run_identity.id"] == identity
    assert f"run identity: {identity}" in result.stderr
    statement = BindingStatement.from_span(attributes, span["traceId"], span["spanId"])
    signature = decode_signature(attributes["run_identity.signature"])
    assert signature is not None
    assert Keyring([signer.public_key]).verify(statement.key_id, signature, statement.signing_input())
    (manifest_record,) = records(out / "manifests.jsonl", "resourceLogs", "scopeLogs", "logRecords")
    assert (manifest_record["traceId"], manifest_record["spanId"]) == (span["traceId"], span["spanId"])
    manifest = Manifest.from_json(manifest_record["body"]["stringValue"])
    assert manifest.identity == identity and manifest.recompute().problems == ()
    assert manifest.statement == statement


def test_disabled_by_default_and_a_bad_switch_value_is_logged(
    tmp_path: Path, openai_server: OpenAIServer, key_file: tuple[Path, Ed25519Signer]
) -> None:
    """Without RUN_IDENTITY_ENABLED nothing is installed; an unparseable value is logged, default kept."""
    key, _ = key_file
    out = tmp_path / "out"
    result = run_app(tmp_path, openai_server, RUN_IDENTITY_SIGNING_KEY=str(key), RUN_IDENTITY_EXPORT_DIR=str(out))
    assert result.returncode == 0, result.stderr
    assert "run identity: not bound" in result.stderr and not out.exists()
    result = run_app(tmp_path, openai_server, RUN_IDENTITY_ENABLED="maybe", RUN_IDENTITY_SIGNING_KEY=str(key))
    assert result.returncode == 0, result.stderr
    assert "RUN_IDENTITY_ENABLED='maybe' is not a boolean" in result.stderr
    assert "run identity: not bound" in result.stderr


def test_missing_key_never_stops_the_application(tmp_path: Path, openai_server: OpenAIServer) -> None:
    """Enabled with an unreadable key, the app still runs; the reason is logged."""
    result = run_app(
        tmp_path,
        openai_server,
        RUN_IDENTITY_ENABLED="true",
        RUN_IDENTITY_SIGNING_KEY=str(tmp_path / "nope.pem"),
    )
    assert result.returncode == 0, result.stderr
    assert "nope.pem: cannot read signing key" in result.stderr
    assert "run identity: not bound" in result.stderr


def test_install_returns_none_unless_enabled_with_a_readable_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """install() does nothing when disabled, and logs why when the key is missing."""
    assert install({}) is None
    with caplog.at_level(logging.ERROR, logger="run_identity"):
        assert install({RUN_IDENTITY_ENABLED: "true"}) is None
        assert install({RUN_IDENTITY_ENABLED: "true", "RUN_IDENTITY_SIGNING_KEY": str(tmp_path / "x")}) is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("RUN_IDENTITY_SIGNING_KEY is not set" in m for m in messages)
    assert any("cannot read signing key" in m for m in messages)


@pytest.mark.parametrize(
    ("raw", "expected"), [("TRUE", True), (" on ", True), ("0", False), ("", False), ("perhaps", False)]
)
def test_env_bool_parses_or_falls_back(raw: str, expected: bool, caplog: pytest.LogCaptureFixture) -> None:
    """Booleans accept true/false/1/0/yes/no/on/off; anything else logs a warning and gives the default."""
    with caplog.at_level(logging.WARNING, logger="run_identity"):
        assert env_bool("RUN_IDENTITY_X", False, {"RUN_IDENTITY_X": raw}) is expected
    assert bool(caplog.records) is (raw == "perhaps")
