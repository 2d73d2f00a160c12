"""run-identity serve under stress: durable answers, torn tails, slow clients, limits, odd bodies, parity."""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from core_fixtures import keyring as core_keyring
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from test_receipt import export, make_receipt, run_identity_of_composition

from run_identity.core.attributes import MANIFEST_EVENT_NAME
from run_identity.pipeline.serve import (
    MANIFESTS_FILE,
    TRACES_FILE,
    WORK_FACTOR,
    ServeHandle,
    ServeLimits,
    start_server,
    verification_summarizer,
)
from run_identity.pipeline.serve._otlp import MAX_BODY
from run_identity.verify import Policy, Verifier


def _logs_request(*event_names: str) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for i, name in enumerate(event_names):
        record = scope.log_records.add(event_name=name, trace_id=bytes([1] * 16), span_id=bytes([i + 1] * 8))
        record.body.string_value = f"record {i}"
    return request


def _post(url: str, body: bytes, content_type: str = "application/x-protobuf", **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


def _records(path: Path) -> list[dict[str, Any]]:
    return [
        r
        for line in path.read_bytes().splitlines()
        for rl in orjson.loads(line)["resourceLogs"]
        for sl in rl["scopeLogs"]
        for r in sl["logRecords"]
    ]


def _raw(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def _wait_until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeHandle]:
    with start_server(tmp_path / "out") as handle:
        yield handle


def test_torn_last_line_is_moved_aside_and_never_merged(tmp_path: Path) -> None:
    """A partial last line left by kill -9 goes to a .torn file, is reported, and the next line stands alone."""
    out = tmp_path / "out"
    out.mkdir()
    whole = b'{"resourceLogs":[]}\n'
    (out / MANIFESTS_FILE).write_bytes(whole + b'{"resourceLogs":[{"scopeL')
    with start_server(out) as handle:
        status, _ = _post(f"{handle.url}/v1/logs", _logs_request(MANIFEST_EVENT_NAME).SerializeToString())
        summary = handle.summary()
    assert status == 200
    lines = (out / MANIFESTS_FILE).read_bytes().splitlines()
    assert lines[0] == whole.strip() and len(lines) == 2
    assert orjson.loads(lines[1])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]
    (torn,) = out.glob(f"{MANIFESTS_FILE}.torn-*")
    assert torn.read_bytes() == b'{"resourceLogs":[{"scopeL'
    assert summary["repairs"] == [{"file": str(out / MANIFESTS_FILE), "bytes": 25, "moved_to": str(torn)}]


def test_written_files_are_private(server: ServeHandle) -> None:
    """manifests.jsonl holds prompts: it is created 0600."""
    _post(f"{server.url}/v1/logs", _logs_request(MANIFEST_EVENT_NAME).SerializeToString())
    assert (server.sink.directory / MANIFESTS_FILE).stat().st_mode & 0o777 == 0o600


def test_concurrent_requests_all_land_as_whole_lines(server: ServeHandle) -> None:
    """Many clients at once (group commit): every acknowledged record is in the file, every line whole."""
    body = _logs_request(MANIFEST_EVENT_NAME, MANIFEST_EVENT_NAME).SerializeToString()
    statuses: list[int] = []

    def client() -> None:
        for _ in range(10):
            statuses.append(_post(f"{server.url}/v1/logs", body)[0])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acknowledged = statuses.count(200)
    assert set(statuses) <= {200, 503} and acknowledged >= 1
    assert len(_records(server.sink.directory / MANIFESTS_FILE)) == 2 * acknowledged
    assert server.sink.counts.manifests == 2 * acknowledged


def test_silent_clients_are_let_go_and_do_not_block_others(tmp_path: Path) -> None:
    """Clients that send half their headers and stop are closed after read_timeout; past the connection
    cap, new ones get 503 at once; a normal client is served once the silent ones are gone."""
    limits = ServeLimits(read_timeout=0.5, max_connections=20)
    with start_server(tmp_path / "out", limits=limits) as handle:
        baseline = threading.active_count()
        silent = []
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
            sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")
            silent.append(sock)
        assert threading.active_count() <= baseline + 20
        refused = 0
        for sock in silent:  # the server closes each: a timed-out one, or a 503 past the cap
            data = sock.recv(4096)
            refused += data.startswith(b"HTTP/1.1 503")
            sock.close()
        assert refused >= 20
        status, _ = _post(f"{handle.url}/v1/logs", _logs_request(MANIFEST_EVENT_NAME).SerializeToString())
        assert status == 200
        deadline = time.monotonic() + 10
        while threading.active_count() > baseline + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= baseline + 1


def test_a_body_over_the_memory_cap_gets_429_with_retry_after(tmp_path: Path) -> None:
    """With memory held by a request under way, another that would pass the cap gets 429 + Retry-After
    (its body read and dropped, so the client sees the answer); alone it goes through."""
    limits = ServeLimits(max_bytes=WORK_FACTOR * 1000)
    body = _logs_request(MANIFEST_EVENT_NAME).SerializeToString()
    assert len(body) < 300
    with start_server(tmp_path / "out", limits=limits) as handle:
        slow = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
        slow.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {1001 - len(body)}\r\n\r\n".encode()  # with the next one: 1 byte too many
            + b"\x0a"
        )
        _wait_until(lambda: handle._server.budget.held > 0)  # the slow request holds its share
        status, headers = _post(f"{handle.url}/v1/logs", body)
        assert status == 429 and headers["Retry-After"] == "1"
        assert handle.sink.counts.throttled_requests >= 1
        slow.close()
        deadline = time.monotonic() + 10
        while _post(f"{handle.url}/v1/logs", body)[0] != 200:
            assert time.monotonic() < deadline


def test_a_body_alone_over_the_memory_cap_is_413(tmp_path: Path) -> None:
    """A request that could never fit the memory cap is refused for good (413), not told to retry."""
    with start_server(tmp_path / "out", limits=ServeLimits(max_bytes=1000)) as handle:
        status, _ = _post(f"{handle.url}/v1/logs", b"\x0a" * 2000)
        assert status == 413


def test_requests_past_the_concurrency_cap_get_503(tmp_path: Path) -> None:
    """With one slot held by a slow upload, another request gets 503 + Retry-After; then it goes through."""
    body = _logs_request(MANIFEST_EVENT_NAME).SerializeToString()
    with start_server(tmp_path / "out", limits=ServeLimits(max_concurrent=1)) as handle:
        slow = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
        slow.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:3]
        )
        _wait_until(lambda: handle._server.budget.held > 0)  # the slow request has taken the slot
        status, headers = _post(f"{handle.url}/v1/logs", body)
        assert status == 503 and headers["Retry-After"] == "1"
        slow.sendall(body[3:])
        assert slow.recv(4096).startswith(b"HTTP/1.1 200")
        slow.close()
        assert _post(f"{handle.url}/v1/logs", body)[0] == 200


def test_413_on_keep_alive_closes_so_the_body_is_not_a_request(server: ServeHandle) -> None:
    """A refused body that was not read is never parsed as the next request on the same connection."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    head = (
        b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
    )
    reply = _raw(server.port, head + smuggled)
    assert reply.startswith(b"HTTP/1.1 413") and b"Connection: close" in reply
    assert reply.count(b"HTTP/1.1 ") == 1


def test_unknown_path_before_the_body_closes_the_connection(server: ServeHandle) -> None:
    """The same holds for a 404 answered without reading the body."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 36\r\n\r\n"
    reply = _raw(server.port, head + smuggled)
    assert reply.startswith(b"HTTP/1.1 404") and reply.count(b"HTTP/1.1 ") == 1


def test_every_member_of_a_multi_member_gzip_body_is_read(server: ServeHandle) -> None:
    """gzip(a) + gzip(b) is the body a + b (RFC 1952), not just a."""
    data = _logs_request(MANIFEST_EVENT_NAME, MANIFEST_EVENT_NAME).SerializeToString()
    half = len(data) // 2
    body = gzip.compress(data[:half]) + gzip.compress(data[half:])
    status, _ = _post(f"{server.url}/v1/logs", body, **{"Content-Encoding": "gzip"})
    assert status == 200 and server.sink.counts.manifests == 2


def test_snake_case_json_ids_are_converted(server: ServeHandle) -> None:
    """trace_id/span_id in hex (protobuf's original field names) are stored as the same hex ids."""
    record = {"event_name": MANIFEST_EVENT_NAME, "trace_id": "ab" * 16, "span_id": "cd" * 8}
    doc = {"resource_logs": [{"scope_logs": [{"log_records": [record]}]}]}
    status, _ = _post(f"{server.url}/v1/logs", json.dumps(doc).encode(), "application/json")
    assert status == 200
    (stored,) = _records(server.sink.directory / MANIFESTS_FILE)
    assert (stored["traceId"], stored["spanId"]) == ("ab" * 16, "cd" * 8)
    record["trace_id"] = "not hex"
    status, _ = _post(f"{server.url}/v1/logs", json.dumps(doc).encode(), "application/json")
    assert status == 400


def test_deeply_nested_json_is_a_400(server: ServeHandle) -> None:
    """Bodies nested about 1000 deep (in an unknown member, or in a log body) get an answer: 400."""
    unknown = b'{"resourceLogs": [], "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    body = b'{"stringValue": "x"}'
    for _ in range(240):  # four JSON levels each
        body = b'{"kvlistValue": {"values": [{"key": "k", "value": ' + body + b"}]}}"
    in_body = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": ' + body + b"}]}]}]}"
    for doc in (unknown, in_body):
        status, _ = _post(f"{server.url}/v1/logs", doc, "application/json")
        assert status == 400
    assert server.sink.files() == []


def test_summary_does_not_hold_up_ingestion(tmp_path: Path) -> None:
    """While a summary is being verified, requests are still accepted."""
    entered, release = threading.Event(), threading.Event()

    def slow_summarizer(paths: list[Path]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return {"runs": 0, "passed": True, "counts": {}}

    body = _logs_request(MANIFEST_EVENT_NAME).SerializeToString()
    with start_server(tmp_path / "out", summarize=slow_summarizer) as handle:
        waiter = threading.Thread(target=handle.summary)
        waiter.start()
        assert entered.wait(10)
        assert _post(f"{handle.url}/v1/logs", body)[0] == 200
        release.set()
        waiter.join()


def _post_export(url: str, folder: Path) -> None:
    """Send each OTLP-JSON line of ``folder``'s files as one request, as a collector would."""
    for path in sorted(folder.glob("*.jsonl")):
        signal = "traces" if path.name == TRACES_FILE else "logs"
        for line in path.read_bytes().splitlines():
            assert _post(f"{url}/v1/{signal}", line, "application/json")[0] == 200


@pytest.mark.parametrize(
    "receipt",
    [
        pytest.param({"response_model": "gpt-3.5-turbo"}, id="model_substituted"),
        pytest.param({}, id="receipt_of_another_run"),
        pytest.param(None, id="good_receipt"),
    ],
)
def test_summary_matches_the_verifier_on_the_same_data(tmp_path: Path, receipt: dict[str, Any] | None) -> None:
    """serve's summary counts equal Verifier.verify over its output folder: receipts are checked too."""
    if receipt is None:
        made = make_receipt(identity=run_identity_of_composition())
    elif receipt:
        made = make_receipt(identity=run_identity_of_composition(), **receipt)
    else:
        made = make_receipt()
    source = export(tmp_path, made)
    out = tmp_path / "serve"
    keys = core_keyring()
    with start_server(out, summarize=verification_summarizer(keys)) as handle:
        _post_export(handle.url, source)
        summary = handle.summary()["verification"]
    direct = Verifier(keys, Policy()).verify([out]).summary_json()
    assert (summary["runs"], summary["passed"], summary["counts"]) == (
        direct["runs"],
        direct["passed"],
        direct["counts"],
    )
    if receipt:
        assert summary["passed"] is False
    if receipt == {"response_model": "gpt-3.5-turbo"}:
        assert summary["counts"]["model_substituted"] == 1


def test_a_200_comes_after_the_fsync(server: ServeHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer is sent only once the written line is fsynced."""
    import run_identity.pipeline.serve._sink as sink_module

    synced: list[int] = []
    real_fsync = sink_module.os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(sink_module.os, "fsync", recording_fsync)
    status, _ = _post(f"{server.url}/v1/logs", _logs_request(MANIFEST_EVENT_NAME).SerializeToString())
    assert status == 200
    assert (server.sink.directory / MANIFESTS_FILE).stat().st_size in synced


def test_a_request_that_cannot_be_made_durable_is_not_acknowledged(
    server: ServeHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When fsync fails the answer is 503 with Retry-After (the exporter sends it again), never 200."""
    import run_identity.pipeline.serve._sink as sink_module

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sink_module.os, "fsync", failing_fsync)
    status, headers = _post(f"{server.url}/v1/logs", _logs_request(MANIFEST_EVENT_NAME).SerializeToString())
    assert status == 503 and headers["Retry-After"] == "1"
    assert server.sink.counts.manifests == 0
