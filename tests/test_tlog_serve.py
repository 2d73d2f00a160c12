"""run-identity tlog serve: the transparency log over OTLP/HTTP on loopback, its folder, and its CLI."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from test_tlog_note import independent_open

import run_identity
from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME
from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.core.merkle import leaf_hash, verify_consistency, verify_inclusion
from run_identity.core.note import Checkpoint, NoteSigner, generate_signer
from run_identity.core.statement import BindingStatement, encode_signature, format_timestamp
from run_identity.core.tlog import TileReader, entry_bytes, parse_entry
from run_identity.core.tlog_fetch import fetcher
from run_identity.pipeline.tlog_serve import LogServer, start_log_server
from run_identity.pipeline.tlog_store import LogStore, StoreError

COMPOSITION = {
    "model": {"provider": "openai", "name": "gpt-4o-mini"},
    "operation": "chat",
    "messages": [{"role": "user", "parts": [{"type": "text", "content": "Capital of Portugal?"}]}],
}
ORIGIN = "log.example.test/runs"


@pytest.fixture
def log_signer() -> NoteSigner:
    return generate_signer(ORIGIN)


@pytest.fixture
def log(tmp_path: Path, log_signer: NoteSigner, keyring: Keyring) -> Iterator[LogServer]:
    server = start_log_server(LogStore(tmp_path / "log", log_signer), keyring, port=0, interval=0.05)
    try:
        yield server
    finally:
        server.stop()


def post(url: str, body: bytes, content_type: str = "application/x-protobuf") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def signed_manifest(signer: Ed25519Signer, n: int) -> tuple[str, bytes]:
    """A manifest body holding a statement signed by ``signer`` (members beyond these two are not logged)."""
    statement = BindingStatement(
        identity="sha256:" + f"{n:064x}",
        trace_id=f"{n + 1:032x}",
        span_id=f"{n + 1:016x}",
        key_id=signer.key_id,
        declared_at=format_timestamp(),
    )
    signature = signer.sign(statement.signing_input())
    body = json.dumps({"statement": statement.to_json(), "signature": encode_signature(signature)})
    return body, entry_bytes(statement, signature)


def logs_request(*bodies: str, event_name: str = MANIFEST_EVENT_NAME) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for body in bodies:
        scope.log_records.add(event_name=event_name).body.string_value = body
    return request


def wait_for_size(folder: Path, verifier_signer: NoteSigner, size: int, timeout: float = 10) -> Checkpoint:
    deadline = time.monotonic() + timeout
    while True:
        checkpoint, _, _ = Checkpoint.open((folder / "checkpoint").read_bytes(), verifier_signer.verifier)
        if checkpoint.size >= size or time.monotonic() > deadline:
            return checkpoint
        time.sleep(0.02)


@pytest.mark.parametrize("compression", [None, Compression.Gzip])
def test_real_otlp_exporter_runs_are_logged_with_inclusion_proofs(
    log: LogServer, signer: Ed25519Signer, log_signer: NoteSigner, compression: Compression | None
) -> None:
    """Runs exported by the OTel SDK's OTLP/HTTP log exporter (plain or gzip) are logged; each has a valid
    inclusion proof."""
    captured = InMemoryLogRecordExporter()
    identity = run_identity.setup(
        signer,
        manifest_exporters=[
            OTLPLogExporter(endpoint=f"{log.url}/v1/logs", timeout=5, compression=compression),
            captured,
        ],
        set_global=False,
    )
    for temperature in (0.1, 0.5, 0.9):
        composition = {**COMPOSITION, "parameters": {"temperature": temperature}}
        with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider):
            pass
    identity.shutdown()
    manifests = [json.loads(str(r.log_record.body)) for r in captured.get_finished_logs()]
    assert len(manifests) == 3
    checkpoint = wait_for_size(log.store.directory, log_signer, 3)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 3)
    # The published checkpoint also opens with the note verifier written from the C2SP text alone.
    text, _ = independent_open((log.store.directory / "checkpoint").read_bytes(), log_signer.verifier.vkey())
    assert text == f"{ORIGIN}\n3\n{base64.b64encode(checkpoint.root_hash).decode()}\n"
    reader = TileReader(fetcher(log.url), checkpoint.size)  # the log's own GET of its folder
    assert reader.tree_hash() == checkpoint.root_hash
    for manifest in manifests:
        statement = BindingStatement.from_json(manifest["statement"])
        entry = entry_bytes(statement, base64.b64decode(manifest["signature"]))
        index = next(i for i, e in reader.entries_verified(checkpoint.root_hash) if e == entry)
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, reader.inclusion_proof(index), checkpoint.root_hash)
        assert parse_entry(entry) == (statement, base64.b64decode(manifest["signature"]))


def test_otlp_json_requests_and_other_records(log: LogServer, signer: Ed25519Signer) -> None:
    """An OTLP/JSON request (hex ids, as OTLP/JSON writes them) is accepted; records that are not manifests
    (receipts, other logs) are not logged."""
    body, entry = signed_manifest(signer, 1)
    request = logs_request(body)
    scope = request.resource_logs[0].scope_logs[0]
    scope.log_records.add(event_name=RECEIPT_EVENT_NAME).body.string_value = "{}"
    scope.log_records.add().body.string_value = "an application log line"
    doc = json_format.MessageToDict(request)
    manifest_record = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    statement = json.loads(body)["statement"]
    manifest_record["traceId"], manifest_record["spanId"] = (
        statement["trace_id"],
        statement["span_id"],
    )  # OTLP/JSON: hex
    status, reply = post(f"{log.url}/v1/logs", json.dumps(doc).encode(), "application/json")
    assert (status, reply) == (200, b"{}")
    assert log.store.size == 1
    assert log.store.append([entry]) == [0]


def test_resubmission_is_idempotent(log: LogServer, signer: Ed25519Signer) -> None:
    """The same manifests posted twice (an exporter's retry) are logged once, in the first order."""
    bodies = [signed_manifest(signer, n)[0] for n in range(4)]
    for _ in range(2):
        assert post(f"{log.url}/v1/logs", logs_request(*bodies).SerializeToString())[0] == 200
    assert post(f"{log.url}/v1/logs", logs_request(bodies[2], bodies[0]).SerializeToString())[0] == 200
    assert log.store.size == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: {**m, "signature": base64.b64encode(b"\0" * 64).decode()}, b"does not verify"),
        (lambda m: {**m, "signature": m["signature"].rstrip("=")}, b"canonical base64"),
        (lambda m: {"signature": m["signature"]}, b"'statement' and 'signature'"),
        (lambda m: {**m, "statement": {**m["statement"], "span_id": "0" * 16}}, b"malformed statement"),
        (lambda m: {**m, "statement": {**m["statement"], "extra": "x"}}, b"unknown statement field"),
        (lambda m: {**m, "statement": {**m["statement"], "identity": "sha256:" + "1" * 64}}, b"does not verify"),
        (lambda m: "not an object", b"'statement' and 'signature'"),
    ],
)
def test_a_bad_record_refuses_the_whole_request(
    log: LogServer, signer: Ed25519Signer, change: Any, message: bytes
) -> None:
    """One malformed or unsigned manifest gets 400 naming the record, and nothing of the request is appended."""
    good, _ = signed_manifest(signer, 1)
    bad = json.dumps(change(json.loads(signed_manifest(signer, 2)[0])))
    status, reply = post(f"{log.url}/v1/logs", logs_request(good, bad).SerializeToString())
    assert status == 400, reply
    assert b"logRecords[1]" in reply and message in reply
    assert log.store.size == 0


def test_unknown_producers_and_garbage_are_refused(log: LogServer, signer: Ed25519Signer) -> None:
    """A manifest signed by a key outside the keyring, a duplicate member, a non-string body or a body that is
    not OTLP get 400; nothing is appended."""
    stranger, _ = signed_manifest(Ed25519Signer.generate(), 1)
    status, reply = post(f"{log.url}/v1/logs", logs_request(stranger).SerializeToString())
    assert status == 400 and b"not a producer key this log accepts" in reply
    good, _ = signed_manifest(signer, 1)
    twice = good[:-1] + ', "signature": "x"}'
    status, reply = post(f"{log.url}/v1/logs", logs_request(twice).SerializeToString())
    assert status == 400 and b"one reading" in reply
    request = logs_request(good)
    request.resource_logs[0].scope_logs[0].log_records[0].body.int_value = 7
    assert post(f"{log.url}/v1/logs", request.SerializeToString())[0] == 400
    assert post(f"{log.url}/v1/logs", b"\xff\xff not protobuf")[0] == 400
    assert post(f"{log.url}/v1/logs", b"{", "application/json")[0] == 400
    mismatched = logs_request(good)
    mismatched.resource_logs[0].scope_logs[0].log_records[0].trace_id = b"\x07" * 16
    status, reply = post(f"{log.url}/v1/logs", mismatched.SerializeToString())
    assert status == 400 and b"trace_id" in reply
    assert log.store.size == 0


def test_a_static_file_server_gives_the_same_proofs_as_the_folder(
    log: LogServer, signer: Ed25519Signer, log_signer: NoteSigner
) -> None:
    """The log folder served by http.server on loopback yields the checkpoint, root and proofs of the folder."""
    for start in range(0, 600, 150):  # several checkpoints, full and partial tiles
        bodies = [signed_manifest(signer, n)[0] for n in range(start, start + 150)]
        assert post(f"{log.url}/v1/logs", logs_request(*bodies).SerializeToString())[0] == 200
    folder = log.store.directory
    checkpoint = wait_for_size(folder, log_signer, 600)
    assert checkpoint.size == 600
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=static.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{static.server_address[1]}/"
        with urllib.request.urlopen(url + "checkpoint", timeout=5) as response:
            served, _, _ = Checkpoint.open(response.read(), log_signer.verifier)
        assert served.size >= 600
        by_url, by_folder = TileReader(fetcher(url), 600), TileReader(fetcher(str(folder)), 600)
        assert by_url.tree_hash() == by_folder.tree_hash() == checkpoint.root_hash
        for index in (0, 255, 256, 599):
            assert by_url.inclusion_proof(index) == by_folder.inclusion_proof(index)
        for old in (1, 150, 300):
            assert by_url.consistency_proof(old) == by_folder.consistency_proof(old)
            verify_consistency(old, 600, by_url.tree_hash(old), checkpoint.root_hash, by_url.consistency_proof(old))
        assert [e for _, e in by_url.entries_verified(checkpoint.root_hash)] == [
            e for _, e in by_folder.entries_verified(checkpoint.root_hash)
        ]
    finally:
        static.shutdown()
        static.server_close()


def test_a_second_process_cannot_open_the_log(log: LogServer, log_signer: NoteSigner) -> None:
    """Two writers would fork the log: the folder is held by the one serving it."""
    code = (
        "import sys\nfrom run_identity.core.note import NoteSigner\nfrom run_identity.pipeline.tlog_store import LogStore\n"
        "LogStore(sys.argv[1], NoteSigner.from_skey(sys.argv[2]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(log.store.directory), log_signer.skey()], capture_output=True, text=True
    )
    assert result.returncode != 0 and "another process is serving this log" in result.stderr


def test_a_folder_of_another_key_is_refused(tmp_path: Path, log_signer: NoteSigner) -> None:
    """Opening a log folder with another log's key fails instead of signing a second history."""
    LogStore(tmp_path / "log", log_signer).close()
    with pytest.raises(StoreError, match="belongs to another key"):
        LogStore(tmp_path / "log", generate_signer(ORIGIN))


def test_a_tampered_entries_file_is_refused(tmp_path: Path, log_signer: NoteSigner) -> None:
    """Stored entries that no longer hash to the checkpoint's root make the store refuse to open."""
    with LogStore(tmp_path / "log", log_signer) as store:
        store.append([b"one", b"two", b"three"])
        store.publish()
    path = tmp_path / "log" / ".tlog-state" / "entries"
    path.write_bytes(path.read_bytes().replace(b"two", b"TWO"))
    with pytest.raises(StoreError, match="entries were lost"):
        LogStore(tmp_path / "log", log_signer)
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="lost"):
        LogStore(tmp_path / "log", log_signer)
    assert stat.S_IMODE(os.stat(tmp_path / "log" / "checkpoint").st_mode) == 0o644


def test_concurrent_appends_get_distinct_indexes_of_their_own_entries(tmp_path: Path, log_signer: NoteSigner) -> None:
    """Threads appending at once each get the indexes where their entries are, every index once (group commit
    must not hand out an index of a batch still being written)."""
    results: dict[bytes, int] = {}
    lock = threading.Lock()
    with LogStore(tmp_path / "log", log_signer) as store:

        def worker(t: int) -> None:
            for round_ in range(30):
                batch = [b"thread %d round %d entry %d" % (t, round_, i) for i in range(7)]
                indexes = store.append(batch)
                with lock:
                    results.update(zip(batch, indexes, strict=True))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        checkpoint = store.publish()
    assert checkpoint is not None and checkpoint.size == len(results) == 6 * 30 * 7
    assert sorted(results.values()) == list(range(checkpoint.size))
    reader = TileReader(fetcher(str(tmp_path / "log")), checkpoint.size)
    for index, entry in reader.entries_verified(checkpoint.root_hash):
        assert results[entry] == index


def test_the_log_serves_its_public_files_only(log: LogServer, signer: Ed25519Signer) -> None:
    """GET serves the checkpoint (not cached), tiles (immutable) and log.vkey; never the private state."""
    assert post(f"{log.url}/v1/logs", logs_request(signed_manifest(signer, 3)[0]).SerializeToString())[0] == 200
    log.store.publish()
    with urllib.request.urlopen(f"{log.url}/checkpoint", timeout=5) as response:
        assert response.headers["Cache-Control"] == "no-cache"
    with urllib.request.urlopen(f"{log.url}/tile/0/000.p/1", timeout=5) as response:
        assert "immutable" in response.headers["Cache-Control"] and len(response.read()) == 32
    with urllib.request.urlopen(f"{log.url}/log.vkey", timeout=5) as response:
        assert response.read().decode().startswith(ORIGIN + "+")
    for path in (".tlog-state/entries", ".tlog-state/lock", "tile/../.tlog-state/entries", "nothing"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{log.url}/{path}", timeout=5)
        assert info.value.code == 404


def test_an_unreachable_witness_does_not_stop_the_log(
    tmp_path: Path, log_signer: NoteSigner, keyring: Keyring, signer: Ed25519Signer
) -> None:
    """A witness that cannot be reached costs its cosignature, not the checkpoint."""
    from run_identity.core.note import TYPE_COSIGNATURE_V1
    from run_identity.pipeline.tlog_serve import Witness

    witness = Witness("http://127.0.0.1:9", generate_signer("w.example/down", TYPE_COSIGNATURE_V1).verifier)
    server = start_log_server(
        LogStore(tmp_path / "log", log_signer), keyring, port=0, interval=0.05, witnesses=[witness]
    )
    try:
        assert post(f"{server.url}/v1/logs", logs_request(signed_manifest(signer, 1)[0]).SerializeToString())[0] == 200
        assert wait_for_size(tmp_path / "log", log_signer, 1).size == 1
    finally:
        server.stop()


def test_two_diverging_logs_are_caught_and_the_fork_located(tmp_path: Path, log_signer: NoteSigner) -> None:
    """An operator who signs two histories (same key and origin, different entries from index 300) gives
    checkpoints that no consistency proof joins; fork_point names entry 300 from the two tile sets."""
    from run_identity.core.merkle import ProofError, fork_point

    common = [b"entry %d" % i for i in range(300)]
    with LogStore(tmp_path / "a", log_signer) as a, LogStore(tmp_path / "b", log_signer) as b:
        a.append([*common, *(b"a %d" % i for i in range(200))])
        b.append([*common, *(b"b %d" % i for i in range(350))])
        first, second = a.publish(), b.publish()
    assert first is not None and second is not None
    reader_a = TileReader(fetcher(str(tmp_path / "a")), first.size)
    reader_b = TileReader(fetcher(str(tmp_path / "b")), second.size)
    with pytest.raises(ProofError, match="fork"):
        verify_consistency(
            first.size, second.size, first.root_hash, second.root_hash, reader_b.consistency_proof(first.size)
        )
    assert fork_point(first.size, reader_a.node, second.size, reader_b.node) == 300
    verify_consistency(300, second.size, reader_a.tree_hash(300), second.root_hash, reader_b.consistency_proof(300))


def test_a_torn_last_record_is_moved_aside_and_cut(tmp_path: Path, log_signer: NoteSigner) -> None:
    """A record cut short by a crash is moved aside and cut off at start; the whole records before it stay."""
    with LogStore(tmp_path / "log", log_signer) as store:
        store.append([b"one", b"two"])
        store.publish()
    path = tmp_path / "log" / ".tlog-state" / "entries"
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2 - 3])  # the start of a third record, torn
    with LogStore(tmp_path / "log", log_signer) as store:
        assert store.size == 2
        assert store.append([b"three"]) == [2]
    assert path.read_bytes().startswith(whole)
    (aside,) = path.parent.glob("entries.cut-*")
    assert aside.read_bytes() == whole[: len(whole) // 2 - 3]


def test_a_maximum_age_refuses_back_dated_statements(
    tmp_path: Path, log_signer: NoteSigner, keyring: Keyring, signer: Ed25519Signer
) -> None:
    """With max_age, a statement declared an hour before it arrives, or an hour ahead, is refused; a fresh one
    is logged."""
    server = start_log_server(LogStore(tmp_path / "log", log_signer), keyring, port=0, max_age=600)
    try:
        for offset, expected in ((-3600, b"s old"), (3600, b"in the future")):
            statement = BindingStatement(
                identity="sha256:" + "1" * 64,
                trace_id="1" * 32,
                span_id="1" * 16,
                key_id=signer.key_id,
                declared_at=format_timestamp(time.time_ns() + offset * 10**9),
            )
            sig = encode_signature(signer.sign(statement.signing_input()))
            body = json.dumps({"statement": statement.to_json(), "signature": sig})
            status, reply = post(f"{server.url}/v1/logs", logs_request(body).SerializeToString())
            assert status == 400 and expected in reply, reply
        assert post(f"{server.url}/v1/logs", logs_request(signed_manifest(signer, 1)[0]).SerializeToString())[0] == 200
        assert server.store.size == 1
    finally:
        server.stop()


def test_a_body_that_trickles_in_loses_its_slot_and_honest_requests_get_through(
    log: LogServer, signer: Ed25519Signer
) -> None:
    """Slow uploads (one byte at a time, never silent long enough for the read timeout) are cut when their
    body is not in within the body timeout, so they cannot hold every request slot; honest posts then land."""
    import socket

    log.body_timeout = 1.0
    host, port = log.server_address[:2]
    slow = []
    for _ in range(16):  # as many as there are request slots
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n")
        sock.sendall(b"Content-Length: 1000\r\n\r\n")
        slow.append(sock)
    try:
        closed = 0
        deadline = time.monotonic() + 10
        while closed < len(slow) and time.monotonic() < deadline:
            closed = 0
            for sock in slow:
                try:
                    sock.sendall(b"x")  # a byte every 0.2 s: never silent, never done
                except OSError:
                    closed += 1
            time.sleep(0.2)
        assert closed == len(slow)  # each cut once its body timeout ran out
        body, _ = signed_manifest(signer, 7)
        assert post(f"{log.url}/v1/logs", logs_request(body).SerializeToString())[0] == 200
        assert log.store.size == 1
    finally:
        for sock in slow:
            sock.close()
