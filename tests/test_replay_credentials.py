"""replay never hands the API key to a host a manifest chose: each attack against a real listener on loopback.

The listener records every request it gets (any method, headers included). In every attack it must get none;
the requests go to the provider's official endpoint (here a local stand-in) or to the URL the user named.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from llm_servers import API_KEY, LLMServer, Reply, chat_completion, serve
from verify_fixtures import logs_of, manifest_bodies, read_lines, write_lines

import run_identity
from run_identity import Composition, Ed25519Signer, Keyring, Manifest
from run_identity.cli import main
from run_identity.core.signing import sign_run
from run_identity.integrations import anthropic as ri_anthropic
from run_identity.integrations import openai as ri_openai
from run_identity.integrations._openai_map import chat_body, chat_composition
from run_identity.integrations.replay import OFFICIAL_BASE_URLS, ReplayError, check_endpoint, rebuild


@dataclass
class Listener:
    """A server that records what reaches it and answers as Chat Completions, or with a redirect."""

    url: str
    hits: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    redirect: tuple[int, str] | None = None

    def keys_seen(self) -> list[str]:
        return [
            v for _, _, headers in self.hits for k, v in headers.items() if k.lower() in ("authorization", "x-api-key")
        ]


class _Recorder(BaseHTTPRequestHandler):
    def _any(self) -> None:
        state: Listener = self.server.state  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b"{}"
        state.hits.append((self.command, self.path, dict(self.headers)))
        if state.redirect is not None:
            code, location = state.redirect
            self.send_response(code)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        reply = json.dumps(chat_completion(Reply(), json.loads(body))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_HEAD = _any

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def listen(host: str = "127.0.0.1") -> Iterator[Listener]:
    """A Listener on ``host`` (a loopback address), a free port, for the duration of the block."""
    httpd = ThreadingHTTPServer((host, 0), _Recorder)
    state = Listener(f"http://{host}:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def origin(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    """The server the run was recorded against."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,127.0.0.2,localhost")
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serve() as running:
        yield running


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    """A stand-in for the providers' official APIs (no request leaves this machine)."""
    with serve() as running:
        monkeypatch.setitem(OFFICIAL_BASE_URLS, "openai", running.openai_url)
        monkeypatch.setitem(OFFICIAL_BASE_URLS, "anthropic", running.anthropic_url)
        yield running


@pytest.fixture
def attacker() -> Iterator[Listener]:
    with listen() as running:
        yield running


@pytest.fixture(autouse=True)
def api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)


@dataclass
class Recorded:
    out: Path
    jwks: Path
    manifest: Manifest

    @property
    def run(self) -> str:
        return f"{self.manifest.statement.trace_id}/{self.manifest.statement.span_id}"


def record(tmp_path: Path, signer: Ed25519Signer, origin: LLMServer, *, provider: str = "openai") -> Recorded:
    """One run through the real client library, captured and exported; its export, keyring and manifest."""
    out = tmp_path / "out"
    handle = run_identity.setup(signer, directory=out, set_global=False)
    ri_openai.instrument(tracer_provider=handle.tracer_provider)
    ri_anthropic.instrument(tracer_provider=handle.tracer_provider)
    try:
        if provider == "anthropic":
            client = anthropic.Anthropic(api_key=API_KEY, base_url=origin.anthropic_url, max_retries=0)
            client.messages.create(model="claude-canned-4", max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
        else:
            chat = openai.OpenAI(api_key=API_KEY, base_url=origin.openai_url, max_retries=0).chat.completions
            chat.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Capital of Portugal?"}])
    finally:
        ri_openai.uninstrument()
        ri_anthropic.uninstrument()
        handle.shutdown()
    jwks = tmp_path / "trusted.jwks.json"
    jwks.write_text(json.dumps(Keyring([signer.public_key]).to_jwks()))
    (body,) = manifest_bodies(out / "manifests.jsonl")
    return Recorded(out, jwks, Manifest.from_json(body))


def forge(manifest: Manifest, endpoint: str, key: Ed25519Signer) -> bytes:
    """The same run pointed at ``endpoint``, signed by ``key`` for the same span (a consistent manifest)."""
    composition = manifest.composition_json()
    composition["model"] = {**composition["model"], "endpoint": endpoint}
    st = manifest.statement
    return sign_run(Composition.from_dict(composition), key, trace_id=st.trace_id, span_id=st.span_id).manifest_json()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["replay", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- the attacks ------------------------------------------------------------------------------------------


def test_a_manifest_signed_by_an_untrusted_key_never_sends_the_key_to_its_endpoint(
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    official: LLMServer,
    attacker: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --keyring, a forged manifest naming the attacker's listener is replayed to the official API."""
    recorded = record(tmp_path, signer, origin)
    forged = tmp_path / "forged.json"
    forged.write_bytes(forge(recorded.manifest, f"{attacker.url}/v1/chat/completions", Ed25519Signer.generate()))
    code, out, err = run_cli([str(forged)], capsys)
    assert code == 0, err
    assert f"POST {official.openai_url}/chat/completions (openai chat; the provider's official endpoint)" in out
    assert attacker.hits == []
    assert official.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    # With a keyring that does not hold the forger's key the run is refused outright.
    code, _, err = run_cli([str(forged), "--keyring", str(recorded.jwks)], capsys)
    assert code == 1 and "does not verify (unknown_key)" in err
    assert attacker.hits == [] and len(official.requests) == 1


def test_use_manifest_endpoint_without_a_keyring_is_refused(
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    official: LLMServer,
    attacker: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--use-manifest-endpoint needs --keyring; nothing is sent, to anyone."""
    recorded = record(tmp_path, signer, origin)
    forged = tmp_path / "forged.json"
    forged.write_bytes(forge(recorded.manifest, f"{attacker.url}/v1/chat/completions", Ed25519Signer.generate()))
    for target in (str(forged), recorded.run):
        code, _, err = run_cli([target, "--in", str(recorded.out), "--use-manifest-endpoint"], capsys)
        assert code == 2 and "--use-manifest-endpoint needs --keyring" in err
    assert attacker.hits == [] and official.requests == [] and len(origin.requests) == 1


def test_use_manifest_endpoint_needs_the_verdict_verified_not_just_a_trusted_signature(
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    official: LLMServer,
    attacker: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A manifest file alone (signed by a trusted key, but no span: not verified) does not get the key."""
    recorded = record(tmp_path, signer, origin)
    evil = Ed25519Signer.generate()
    forged = tmp_path / "forged.json"
    forged.write_bytes(forge(recorded.manifest, f"{attacker.url}/v1/chat/completions", evil))
    trusting = tmp_path / "trusting.jwks.json"
    trusting.write_text(json.dumps(Keyring([signer.public_key, evil.public_key]).to_jwks()))
    code, out, err = run_cli([str(forged), "--keyring", str(trusting), "--use-manifest-endpoint"], capsys)
    assert code == 1 and "verified  span_missing" in out
    assert "verdict is span_missing, not verified" in err
    assert attacker.hits == [] and official.requests == []


def _add_malformed_record(recorded: Recorded, forged: bytes) -> None:
    """A manifest record for the run, read before the real one, holding ``forged`` and naming event.name twice."""
    docs = read_lines(recorded.out / "manifests.jsonl")
    for doc in docs:
        for rl in doc.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                sl["logRecords"] = [r for r in sl["logRecords"] if r.get("eventName") == "run_identity.manifest"]
    (record_,) = list(logs_of(docs))
    record_["body"]["stringValue"] = forged.decode()
    for _ in range(2):
        record_.setdefault("attributes", []).append(
            {"key": "event.name", "value": {"stringValue": "run_identity.manifest"}}
        )
    write_lines(recorded.out / "0-added.jsonl", docs)


def test_a_run_turned_malformed_by_an_added_record_never_sends_the_key_to_its_endpoint(
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    official: LLMServer,
    attacker: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An added manifest record (the attacker's endpoint) makes the run malformed: refused with --keyring,
    refused with --use-manifest-endpoint, and without a keyring sent only to the official API."""
    recorded = record(tmp_path, signer, origin)
    evil = Ed25519Signer.generate()
    _add_malformed_record(recorded, forge(recorded.manifest, f"{attacker.url}/v1/chat/completions", evil))
    base = [recorded.run, "--in", str(recorded.out)]
    code, out, err = run_cli([*base, "--keyring", str(recorded.jwks)], capsys)
    assert code == 1 and "verified  malformed" in out and "refusing to replay" in err, (out, err)
    code, out, err = run_cli([*base, "--keyring", str(recorded.jwks), "--use-manifest-endpoint"], capsys)
    assert code == 1 and "verified  malformed" in out
    # Even a keyring that trusts the forger's key: the verdict is the verifier's, over all the records.
    trusting = tmp_path / "trusting.jwks.json"
    trusting.write_text(json.dumps(Keyring([signer.public_key, evil.public_key]).to_jwks()))
    code, out, err = run_cli([*base, "--keyring", str(trusting), "--use-manifest-endpoint"], capsys)
    assert code == 1 and "verified  malformed" in out
    code, out, err = run_cli(base, capsys)
    assert code == 0, err
    assert f"POST {official.openai_url}/chat/completions" in out
    assert attacker.hits == [] and len(official.requests) == 1 and len(origin.requests) == 1


def test_plain_http_to_a_host_that_is_not_loopback_is_refused(
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    attacker: Listener,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """http://api.example.test is refused before any connection (the listener, as the HTTP proxy, sees nothing)."""
    recorded = record(tmp_path, signer, origin)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", attacker.url)
    monkeypatch.setenv("HTTP_PROXY", attacker.url)
    code, _, err = run_cli([recorded.run, "--in", str(recorded.out), "--base-url", "http://api.example.test/v1"], capsys)
    assert code == 1 and "refusing to send the API key over plain http to api.example.test" in err
    assert attacker.hits == []
    # And loopback over plain http never goes through a proxy, which would see the key.
    code, _, err = run_cli([recorded.run, "--in", str(recorded.out), "--base-url", origin.openai_url], capsys)
    assert code == 0, err
    assert attacker.hits == [] and origin.headers[1]["Authorization"] == f"Bearer {API_KEY}"


def test_a_manifest_endpoint_over_plain_http_is_refused_even_when_trusted(
    tmp_path: Path, signer: Ed25519Signer, origin: LLMServer
) -> None:
    """The library refuses a plain-http manifest endpoint to a non-loopback host whoever signed it."""
    recorded = record(tmp_path, signer, origin)
    manifest = Manifest.from_json(forge(recorded.manifest, "http://api.example.test/v1/chat/completions", signer))
    with pytest.raises(ReplayError, match=r"plain http to api\.example\.test"):
        rebuild(manifest, use_manifest_endpoint=True)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_from_the_named_endpoint_to_another_host_never_carries_the_key(
    provider: str,
    status: int,
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The endpoint the user named redirects to 127.0.0.2: the redirect is reported, not followed."""
    recorded = record(tmp_path, signer, origin, provider=provider)
    path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
    with listen("127.0.0.2") as elsewhere, listen("127.0.0.1") as named:
        named.redirect = (status, f"{elsewhere.url}{path}")
        base_url = named.url if provider == "anthropic" else f"{named.url}/v1"
        code, _, err = run_cli([recorded.run, "--in", str(recorded.out), "--base-url", base_url], capsys)
        assert code == 1 and f"HTTP {status} redirects to {elsewhere.url}{path}; not followed" in err
        assert elsewhere.hits == []
        assert named.keys_seen() in ([API_KEY], [f"Bearer {API_KEY}"])  # the host the user named, once


# -- what is allowed ----------------------------------------------------------------------------------------


def test_a_verified_run_may_use_its_manifest_endpoint(
    tmp_path: Path,
    signer: Ed25519Signer,
    origin: LLMServer,
    official: LLMServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--use-manifest-endpoint with --keyring, for a run whose verdict is verified: sent where it ran."""
    recorded = record(tmp_path, signer, origin)
    args = [recorded.run, "--in", str(recorded.out), "--keyring", str(recorded.jwks), "--use-manifest-endpoint"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "verified  verified" in out
    assert f"POST {origin.openai_url}/chat/completions (openai chat; the manifest's endpoint, verified)" in out
    assert origin.requests[1] == origin.requests[0] and origin.headers[1]["Authorization"] == f"Bearer {API_KEY}"
    assert official.requests == []
    code, _, err = run_cli([*args, "--base-url", origin.openai_url], capsys)
    assert code == 2 and "not both" in err


def test_an_unknown_provider_without_base_url_is_one_clear_refusal(
    tmp_path: Path, signer: Ed25519Signer, origin: LLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """No official endpoint is known for the provider: replay asks for --base-url, in one line."""
    body = {"model": "mistral-small", "messages": [{"role": "user", "content": "Hi"}]}
    composition = chat_composition(body, provider="mistral_ai", endpoint="https://evil.example/v1/chat/completions")
    assert chat_body(composition) == body
    run = sign_run(Composition.from_dict(composition), signer, trace_id="1" * 32, span_id="2" * 16)
    path = tmp_path / "mistral.json"
    path.write_bytes(run.manifest_json())
    code, _, err = run_cli([str(path), "--dry-run"], capsys)
    assert code == 1
    assert err.strip().count("\n") == 0
    assert "no official endpoint is known for provider 'mistral_ai': name the base URL to send to (--base-url)" in err
    code, out, _ = run_cli([str(path), "--dry-run", "--base-url", origin.openai_url], capsys)
    assert code == 0 and f"POST {origin.openai_url}/chat/completions (mistral_ai chat; --base-url)" in out


def test_the_official_endpoints_are_the_providers_own() -> None:
    """openai and anthropic replay to their public APIs, over https."""
    assert OFFICIAL_BASE_URLS["openai"] == "https://api.openai.com/v1"
    assert OFFICIAL_BASE_URLS["anthropic"] == "https://api.anthropic.com"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1/chat/completions",
        "https://llm.internal.example:8443/v1",
        "http://127.0.0.1:8080/v1",
        "http://127.8.9.10/v1",
        "http://[::1]:9000/v1",
        "http://localhost:3000",
        "http://LOCALHOST:3000",
    ],
)
def test_https_or_loopback_endpoints_are_accepted(url: str) -> None:
    """Any https host, and plain http to 127.0.0.0/8, ::1 or localhost."""
    check_endpoint(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.openai.com/v1", "plain http to api.openai.com"),
        ("http://10.0.0.1/v1", "plain http to 10.0.0.1"),
        ("http://128.0.0.1/v1", "plain http to 128.0.0.1"),
        ("http://127.0.0.1.nip.io/v1", "plain http to 127.0.0.1.nip.io"),
        ("http://localhost.example/v1", "plain http to localhost.example"),
        ("ftp://127.0.0.1/v1", "not an http"),
        ("https:///v1", "not an http"),
        ("https://host:99999/v1", "not a usable URL"),
        ("file:///etc/passwd", "not an http"),
    ],
)
def test_other_endpoints_are_refused(url: str, message: str) -> None:
    """Plain http elsewhere, other schemes, and URLs without a host never get the key."""
    with pytest.raises(ReplayError, match=message):
        check_endpoint(url)
