"""The log service as a process: kill -9 in the middle of appends never forks the log or loses an acknowledged
entry; the CLI's keygen and serve; cosignatures from a witness written here from c2sp.org/tlog-witness."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_tlog_serve import logs_request, post, signed_manifest

from run_identity.core.keys import Ed25519Signer, generate_key_files
from run_identity.core.merkle import verify_consistency
from run_identity.core.note import TYPE_COSIGNATURE_V1, Checkpoint, NoteVerifier, generate_signer, open_note
from run_identity.core.tlog import TileReader, parse_add_checkpoint
from run_identity.core.tlog_fetch import fetcher

CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]
ORIGIN = "log.example.test/crash"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, Ed25519Signer]:
    """(log key path, producer keyring path, producer signer)."""
    result = cli("tlog", "keygen", "--out", str(tmp_path / "logkey"), "--origin", ORIGIN)
    assert result.returncode == 0, result.stderr
    key_path, jwks, _ = generate_key_files(tmp_path / "producer")
    return tmp_path / "logkey" / "log.key", jwks, Ed25519Signer.from_file(key_path)


class Service:
    """``run-identity tlog serve`` in a child process."""

    def __init__(self, folder: Path, key: Path, keyring: Path, *extra: str) -> None:
        args = ["tlog", "serve", "--dir", str(folder), "--key", str(key), "--keyring", str(keyring), "--port", "0"]
        self.process = subprocess.Popen(
            [*CLI, *args, "--checkpoint-interval", "0.05", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        assert first.startswith("run-identity tlog serve: listening on http://127.0.0.1:"), first + (
            self.process.stderr.read() if self.process.stderr else ""
        )
        self.url = first.split("listening on ", 1)[1].split(",", 1)[0]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return out


def read_checkpoint(folder: Path, verifier: NoteVerifier) -> Checkpoint:
    checkpoint, _, _ = Checkpoint.open((folder / "checkpoint").read_bytes(), verifier)
    return checkpoint


def test_kill_9_during_appends_keeps_acknowledged_entries_and_never_forks(
    tmp_path: Path, keys: tuple[Path, Path, Ed25519Signer]
) -> None:
    """Three rounds of: four clients posting, kill -9, restart. After each, the store opens, the checkpoint
    left on disk is a prefix of the new tree (consistency proof), and every acknowledged entry is in the log."""
    key, keyring, producer = keys
    verifier = NoteVerifier.from_vkey((key.parent / "log.vkey").read_text())
    folder = tmp_path / "log"
    acknowledged: set[bytes] = set()
    counter = iter(range(10**9))
    lock = threading.Lock()
    for _ in range(3):
        service = Service(folder, key, keyring)
        stop = threading.Event()

        def client(url: str = service.url, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                with lock:
                    batch = [signed_manifest(producer, next(counter)) for _ in range(20)]
                try:
                    status, _ = post(f"{url}/v1/logs", logs_request(*(b for b, _ in batch)).SerializeToString())
                except OSError:
                    return  # the server died under us: not acknowledged
                if status == 200:
                    with lock:
                        acknowledged.update(e for _, e in batch)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        service.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
        before = read_checkpoint(folder, verifier)  # what the dead log had published
        restarted = Service(folder, key, keyring)  # opens: no fork, no loss
        assert "stopped at tree size" in restarted.stop()  # publishes everything durable
        after = read_checkpoint(folder, verifier)
        reader = TileReader(fetcher(str(folder)), after.size)
        assert reader.tree_hash() == after.root_hash
        proof = reader.consistency_proof(before.size)
        verify_consistency(before.size, after.size, before.root_hash, after.root_hash, proof)
        logged = {entry for _, entry in reader.entries_verified(after.root_hash)}
        assert acknowledged <= logged, f"{len(acknowledged - logged)} acknowledged entries lost"
    assert len(acknowledged) > 100


def test_keygen_writes_a_private_key_only_its_owner_reads(
    tmp_path: Path, keys: tuple[Path, Path, Ed25519Signer]
) -> None:
    """keygen makes log.key (0600) and log.vkey (the C2SP verifier key), and never overwrites a key."""
    key, _, _ = keys
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    vkey = (key.parent / "log.vkey").read_text().strip()
    assert vkey.startswith(ORIGIN + "+") and NoteVerifier.from_vkey(vkey).name == ORIGIN
    again = cli("tlog", "keygen", "--out", str(key.parent), "--origin", ORIGIN)
    assert again.returncode == 1 and "exists" in again.stderr and "PRIVATE" not in again.stderr + again.stdout
    bad = cli("tlog", "keygen", "--out", str(tmp_path / "x"), "--origin", "has space")
    assert bad.returncode == 2 and "--origin" in bad.stderr


def test_serve_refuses_bad_setups_in_one_line(tmp_path: Path, keys: tuple[Path, Path, Ed25519Signer]) -> None:
    """A key others can read, a wrong origin, a missing keyring or a bad witness give one line and exit non-zero."""
    key, keyring, _ = keys
    base = [
        "tlog",
        "serve",
        "--dir",
        str(tmp_path / "log"),
        "--key",
        str(key),
        "--keyring",
        str(keyring),
        "--port",
        "0",
    ]
    key.chmod(0o644)
    result = cli(*base)
    assert result.returncode == 1 and "readable by others" in result.stderr and "PRIVATE" not in result.stderr
    key.chmod(0o600)
    result = cli(*base, "--origin", "other.example/log")
    assert result.returncode == 1 and "origin" in result.stderr
    result = cli(*base[:-4], "--keyring", str(tmp_path / "absent.json"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    result = cli(*base, "--witness", "http://127.0.0.1:1=not+a+key")
    assert result.returncode == 2 and "--witness" in result.stderr


class _Witness(BaseHTTPRequestHandler):
    """A witness from the c2sp.org/tlog-witness text: add-checkpoint, 409 with the size it knows, cosignature."""

    server: WitnessServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        old, proof, note = parse_add_checkpoint(body)
        witness = self.server
        try:
            opened, _ = open_note(note, [witness.log])
        except Exception:
            return self._answer(403, b"")
        checkpoint = Checkpoint.from_text(opened.text)
        with witness.lock:
            if old != witness.size:
                return self._answer(409, f"{witness.size}\n".encode(), "text/x.tlog.size")
            try:
                verify_consistency(old, checkpoint.size, witness.root, checkpoint.root_hash, proof)
            except Exception:
                return self._answer(422, b"")
            witness.size, witness.root = checkpoint.size, checkpoint.root_hash
            witness.requests += 1
        line = witness.signer.sign(opened.text, timestamp=int(time.time())).line()
        return self._answer(200, line.encode())

    def _answer(self, status: int, body: bytes, media: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WitnessServer(ThreadingHTTPServer):
    def __init__(self, log: NoteVerifier) -> None:
        import hashlib

        self.log = log
        self.signer = generate_signer("witness.example.test/w1", TYPE_COSIGNATURE_V1)
        self.size, self.root = 0, hashlib.sha256(b"").digest()
        self.requests = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Witness)


@pytest.fixture
def witness(keys: tuple[Path, Path, Ed25519Signer]) -> Iterator[WitnessServer]:
    server = WitnessServer(NoteVerifier.from_vkey((keys[0].parent / "log.vkey").read_text()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_published_checkpoint_carries_the_witness_cosignature(
    tmp_path: Path, keys: tuple[Path, Path, Ed25519Signer], witness: WitnessServer
) -> None:
    """With --witness, each checkpoint is submitted with a consistency proof, and the witness's cosignature is
    published in the checkpoint note, verifiable with the witness's key."""
    key, keyring, producer = keys
    url = f"http://127.0.0.1:{witness.server_address[1]}"
    witness.size = 0
    service = Service(tmp_path / "log", key, keyring, "--witness", f"{url}={witness.signer.verifier.vkey()}")
    try:
        for start in (0, 10, 20):
            bodies = [signed_manifest(producer, n)[0] for n in range(start, start + 10)]
            assert post(f"{service.url}/v1/logs", logs_request(*bodies).SerializeToString())[0] == 200
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data = (tmp_path / "log" / "checkpoint").read_bytes()
            _, cosigned = open_note(
                data, [witness.signer.verifier, NoteVerifier.from_vkey(key.with_suffix(".vkey").read_text())]
            )
            if (
                witness.signer.verifier in cosigned
                and Checkpoint.from_text(data.decode().split("\n\n")[0] + "\n").size == 30
            ):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no cosigned checkpoint of size 30: {data!r}")
        assert witness.size == 30 and witness.requests >= 2  # followed the log with consistency proofs
    finally:
        service.stop()


def test_a_slow_witness_does_not_hold_checkpoints_back(
    tmp_path: Path, keys: tuple[Path, Path, Ed25519Signer], witness: WitnessServer
) -> None:
    """A witness slower than the wait costs its cosignature: the checkpoint is published without waiting for it
    (the witness answers after 5 s; the checkpoint comes long before)."""
    key, keyring, producer = keys
    witness.delay = 5.0
    url = f"http://127.0.0.1:{witness.server_address[1]}"
    service = Service(tmp_path / "log", key, keyring, "--witness", f"{url}={witness.signer.verifier.vkey()}")
    verifier = NoteVerifier.from_vkey((key.parent / "log.vkey").read_text())
    try:
        bodies = [signed_manifest(producer, n)[0] for n in range(5)]
        assert post(f"{service.url}/v1/logs", logs_request(*bodies).SerializeToString())[0] == 200
        acknowledged = time.monotonic()
        while read_checkpoint(tmp_path / "log", verifier).size < 5:
            assert time.monotonic() - acknowledged < 3.0, "the checkpoint waited for the slow witness"
            time.sleep(0.02)
    finally:
        service.stop()
