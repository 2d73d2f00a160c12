"""The witness (c2sp.org/tlog-witness add-checkpoint) over HTTP on loopback, and a quorum of its cosignatures
checked by ``verify --witness-key/--witness-quorum``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tlog_fixtures import demo_export, log_signer, publish, witness_signer

from run_identity.cli import main
from run_identity.core.note import NoteSigner, open_note, parse_note
from run_identity.core.tlog import TileReader, format_add_checkpoint
from run_identity.core.tlog_fetch import fetcher
from run_identity.pipeline.tlog_witness import SIZE_TYPE, Witness, request_cosignature, serve_witness


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[bytes]]:
    """The demo's export, keyring and the 12 runs' log entries."""
    return demo_export(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return log_signer()


@pytest.fixture
def witness_url(tmp_path: Path, signer: NoteSigner) -> Iterator[tuple[str, NoteSigner, Path]]:
    """A witness for the log ``signer`` serving on 127.0.0.1; its URL, key and state folder."""
    key = witness_signer("witness.test/w1")
    state = tmp_path / "witness-state"
    server = serve_witness(Witness(key, [signer.verifier], state), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", key, state
    finally:
        server.shutdown()
        server.server_close()


def _body(log: Path, note: bytes, old: int) -> bytes:
    """An add-checkpoint body from size ``old`` to the checkpoint ``note`` of the log in ``log``."""
    size = int(note.split(b"\n")[1])
    proof = TileReader(fetcher(str(log)), size).consistency_proof(old) if old else []
    return format_add_checkpoint(old, proof, note)


def test_cosigns_checkpoints_that_extend_the_last(
    tmp_path: Path, demo: Any, signer: NoteSigner, witness_url: Any
) -> None:
    """old 0 then old 5 with a consistency proof: two cosignatures that verify under the witness key; the
    state file keeps the latest checkpoint with the log's signature and the cosignature."""
    _, _, entries = demo
    url, key, state = witness_url
    note5 = publish(tmp_path / "log", entries[:5], signer)
    reply = request_cosignature(url, _body(tmp_path / "log", note5, 0))
    assert reply.status == 200 and reply.body.startswith("\u2014 witness.test/w1 ".encode())
    _, verified = open_note(note5 + reply.body, [key.verifier])
    assert verified[key.verifier] > 1_600_000_000
    note12 = publish(tmp_path / "log", entries, signer)
    reply = request_cosignature(url, _body(tmp_path / "log", note12, 5))
    assert reply.status == 200
    (stored,) = state.iterdir()
    kept = parse_note(stored.read_bytes())
    assert kept.text.split("\n")[1] == "12" and [s.name for s in kept.signatures] == [signer.name, key.name]
    origin_hash = hashlib.sha256(signer.name.encode()).hexdigest()  # the monitoring endpoint serves the same
    with urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint", timeout=10) as response:
        assert response.read() == stored.read_bytes()


def test_refusals(tmp_path: Path, demo: Any, signer: NoteSigner, witness_url: Any) -> None:
    """A stale old size is 409 with the size it holds (text/x.tlog.size); a fork 422; another log's key 403;
    an unknown origin 404; an old size past the checkpoint, or garbage, 400."""
    _, _, entries = demo
    url, _key, _state = witness_url
    note6 = publish(tmp_path / "log", entries[:6], signer)
    assert request_cosignature(url, _body(tmp_path / "log", note6, 0)).status == 200
    stale = request_cosignature(url, _body(tmp_path / "log", note6, 0))
    assert (stale.status, stale.body, stale.content_type) == (409, b"6\n", SIZE_TYPE)
    forked = publish(tmp_path / "fork", [*entries[:3], entries[11], *entries[4:9]], signer)
    assert request_cosignature(url, _body(tmp_path / "fork", forked, 6)).status == 422
    same_size_other_root = publish(tmp_path / "fork6", [*entries[:5], entries[11]], signer)
    assert request_cosignature(url, format_add_checkpoint(6, [], same_size_other_root)).status == 422
    impostor = publish(tmp_path / "impostor", entries, log_signer(signer.name))
    assert request_cosignature(url, _body(tmp_path / "impostor", impostor, 6)).status == 403
    unknown = publish(tmp_path / "unknown", entries, log_signer("other.test/log"))
    assert request_cosignature(url, format_add_checkpoint(0, [], unknown)).status == 404
    assert request_cosignature(url, format_add_checkpoint(20, [], note6)).status == 400
    assert request_cosignature(url, b"not a request").status == 400


def test_state_survives_a_restart(tmp_path: Path, demo: Any, signer: NoteSigner) -> None:
    """A new witness on the same state folder refuses to start the log over (409 for old 0)."""
    _, _, entries = demo
    key = witness_signer("witness.test/w1")
    note = publish(tmp_path / "log", entries[:4], signer)
    assert (
        Witness(key, [signer.verifier], tmp_path / "state").add_checkpoint(_body(tmp_path / "log", note, 0)).status
        == 200
    )
    again = Witness(key, [signer.verifier], tmp_path / "state").add_checkpoint(_body(tmp_path / "log", note, 0))
    assert (again.status, again.body) == (409, b"4\n")


def test_verify_requires_a_quorum_of_witnesses(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """Two witnesses cosign the log's checkpoint over HTTP; verify passes with --witness-quorum 2 and both keys,
    and refuses when a third trusted witness is required."""
    export, jwks, entries = demo
    log = tmp_path / "log"
    note = publish(log, entries, signer)
    keys, servers = [], []
    for i in (1, 2):
        key = witness_signer(f"witness.test/w{i}")
        server = serve_witness(Witness(key, [signer.verifier], tmp_path / f"w{i}"), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        reply = request_cosignature(f"http://127.0.0.1:{server.server_address[1]}", _body(log, note, 0))
        assert reply.status == 200
        note += reply.body
        keys.append(key)
    for server in servers:
        server.shutdown()
        server.server_close()
    (log / "checkpoint").write_bytes(note)
    args = ["verify", str(export), "--keyring", str(jwks), "--tlog", str(log), "--tlog-key", signer.verifier.vkey()]
    witnesses = [a for k in keys for a in ("--witness-key", k.verifier.vkey())]
    assert main([*args, *witnesses, "--witness-quorum", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [w["name"] for w in summary["tlog"]["witnesses"]] == ["witness.test/w1", "witness.test/w2"]
    third = witness_signer("witness.test/w3").verifier.vkey()
    assert main([*args, *witnesses, "--witness-key", third]) == 1
    assert "2 of 3 trusted witnesses cosigned" in capsys.readouterr().err


def test_witness_command(tmp_path: Path, demo: Any, signer: NoteSigner) -> None:
    """witness-keygen writes a 0600 key; `tlog witness` listens on loopback, cosigns, stops on SIGTERM."""
    _, _, entries = demo
    assert main(["tlog", "witness-keygen", "--out", str(tmp_path / "wk"), "--name", "witness.test/cli"]) == 0
    assert (tmp_path / "wk" / "witness.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "log.vkey").write_text(signer.verifier.vkey())
    argv = [sys.executable, "-m", "run_identity", "tlog", "witness", "--dir", str(tmp_path / "state")]
    argv += ["--key", str(tmp_path / "wk" / "witness.key"), "--log-key", str(tmp_path / "log.vkey"), "--port", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:")
        url = first.split()[-1].rsplit("/", 1)[0]
        note = publish(tmp_path / "log", entries, signer)
        reply = request_cosignature(url, _body(tmp_path / "log", note, 0))
        assert reply.status == 200 and b"witness.test/cli" in reply.body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_the_log_service_gathers_the_witness_cosignature(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """End to end over loopback: `tlog serve`'s LogServer asks this witness for cosignatures as it publishes;
    the published checkpoint then satisfies verify --witness-quorum 1, and every run is included."""
    from run_identity.core.keys import Keyring
    from run_identity.pipeline.tlog_serve import Witness as LogWitness
    from run_identity.pipeline.tlog_serve import start_log_server
    from run_identity.pipeline.tlog_store import LogStore

    export, jwks, _ = demo
    key = witness_signer("witness.test/e2e")
    witness = serve_witness(Witness(key, [signer.verifier], tmp_path / "w"), "127.0.0.1", 0)
    threading.Thread(target=witness.serve_forever, daemon=True).start()
    witness_url = f"http://127.0.0.1:{witness.server_address[1]}"
    log = start_log_server(
        LogStore(tmp_path / "log", signer),
        Keyring.from_jwks(jwks),
        port=0,
        witnesses=[LogWitness(witness_url, key.verifier)],
        interval=0.1,
    )
    try:
        for line in (export / "manifests.jsonl").read_text().splitlines():
            request = urllib.request.Request(
                f"{log.url}/v1/logs", data=line.encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
    finally:
        log.stop()
        witness.shutdown()
        witness.server_close()
    args = ["verify", str(export), "--keyring", str(jwks), "--tlog", str(tmp_path / "log")]
    args += ["--tlog-key", signer.verifier.vkey(), "--witness-key", key.verifier.vkey(), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])["tlog"]
    assert summary["witnesses"][0]["name"] == "witness.test/e2e" and summary["runs"]["included"] == 12


def test_the_witness_cosignature_verifies_with_a_verifier_not_ours(
    tmp_path: Path, demo: Any, signer: NoteSigner
) -> None:
    """The cosignature line add-checkpoint returns, appended to the checkpoint, verifies with the note verifier
    written from the C2SP text alone (tests/test_tlog_note.py), with the timestamp the witness's clock gave."""
    from test_tlog_note import independent_open

    _, _, entries = demo
    key = witness_signer("witness.test/independent")
    witness = Witness(key, [signer.verifier], tmp_path / "state", clock=lambda: 1_800_000_000.5)
    note = publish(tmp_path / "log", entries, signer)
    reply = witness.add_checkpoint(_body(tmp_path / "log", note, 0))
    assert reply.status == 200
    text, timestamp = independent_open(note + reply.body, key.verifier.vkey())
    assert timestamp == 1_800_000_000 and text == parse_note(note).text
