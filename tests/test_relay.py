"""run-identity relay: acknowledges only what it has fsynced, forwards until the destination answers 2xx.

Real parts: the OTel SDK's OTLP/HTTP exporters, a real ``serve`` as destination, the relay as a child
process killed with SIGKILL, and a destination that closes the connection before answering (what a
destination killed with the request in flight looks like to its client: the case rotel drops).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from run_identity.pipeline.collector import free_port
from run_identity.pipeline.relay import start_relay
from run_identity.pipeline.serve import start_server

CLI = [sys.executable, "-m", "run_identity"]


def _spans(endpoint: str, count: int, name: str = "span") -> None:
    """Export ``count`` spans one request each to ``endpoint`` (OTLP/HTTP); asserts each was acknowledged."""
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=5)
    results: list[bool] = []

    class Check(SimpleSpanProcessor):
        def on_end(self, span):  # type: ignore[no-untyped-def]
            results.append(exporter.export([span]).name == "SUCCESS")

    provider = TracerProvider()
    provider.add_span_processor(Check(exporter))
    tracer = provider.get_tracer("tests")
    for i in range(count):
        tracer.start_span(f"{name}-{i}").end()
    provider.shutdown()
    assert results == [True] * count


def _wait(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_relay_forwards_traces_and_logs_to_their_destinations(tmp_path: Path) -> None:
    with start_server(tmp_path / "out") as serve, start_relay(tmp_path / "spool", traces_endpoint=serve.url) as relay:
        _spans(relay.url, 5)
        assert serve.sink.wait_for(timeout=30) and _wait(lambda: serve.sink.counts.spans == 5)
        assert _wait(lambda: relay.sink.pending() == {"traces": 0, "logs": 0})
        with urllib.request.urlopen(f"{relay.url}/summary", timeout=5) as response:
            assert b'"forwarded"' in response.read()
        assert relay.sink.counts.forwarded["traces"] == 5


class _Hangup:
    """A destination that reads each request and closes the connection without answering, ``times`` times
    (a destination killed with the request in flight), then forwards the connections to ``then``."""

    def __init__(self, times: int) -> None:
        self.left = times
        self.hangups = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.target: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1 << 20)
                if self.left > 0:
                    self.left -= 1
                    self.hangups += 1
                    continue  # closed with no answer
                assert self.target is not None
                with socket.create_connection(("127.0.0.1", self.target)) as upstream:
                    upstream.sendall(data)
                    conn.settimeout(0.5)
                    with contextlib.suppress(OSError):
                        while chunk := conn.recv(1 << 20):
                            upstream.sendall(chunk)
                    upstream.shutdown(socket.SHUT_WR)
                    while chunk := upstream.recv(1 << 20):
                        conn.sendall(chunk)

    def close(self) -> None:
        self.sock.close()


def test_a_request_whose_connection_closes_before_the_answer_is_sent_again(tmp_path: Path) -> None:
    """The destination read the request and hung up without answering, three times: the relay keeps the
    request and sends it again until it is answered (rotel 0.0.1a15 drops it at the first)."""
    hangup = _Hangup(times=3)
    try:
        with start_server(tmp_path / "out") as serve:
            hangup.target = serve.port
            with start_relay(
                tmp_path / "spool", traces_endpoint=f"http://127.0.0.1:{hangup.port}", backoff=0.05, max_backoff=0.2
            ) as relay:
                _spans(relay.url, 1)
                assert _wait(lambda: serve.sink.counts.spans == 1)
                assert hangup.hangups == 3 and relay.sink.counts.failed_sends["traces"] >= 3
                assert relay.sink.counts.dead_lettered["traces"] == 0
    finally:
        hangup.close()


def test_a_request_the_destination_refuses_for_good_is_dead_lettered_not_lost(tmp_path: Path) -> None:
    """A 4xx (other than 408/429) cannot succeed on retry: moved to the spool's dead/ folder and counted."""

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    refusing = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    try:
        destination = f"http://127.0.0.1:{refusing.server_address[1]}"
        with start_relay(tmp_path / "spool", traces_endpoint=destination) as relay:
            _spans(relay.url, 1)
            assert _wait(lambda: relay.sink.counts.dead_lettered["traces"] == 1)
            assert relay.sink.pending()["traces"] == 0
    finally:
        refusing.shutdown()
        refusing.server_close()
    assert len(list((tmp_path / "spool" / "traces" / "dead").iterdir())) == 1


@contextlib.contextmanager
def _relay_process(spool: Path, port: int, destination: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [
            *CLI,
            "relay",
            "--spool",
            str(spool),
            "--port",
            str(port),
            "--traces-endpoint",
            destination,
            "--backoff",
            "0.05",
            "--max-backoff",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode()
        assert first.startswith("run-identity relay: listening on"), first
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.mark.slow
def test_what_the_relay_acknowledged_survives_its_kill_9(tmp_path: Path) -> None:
    """The destination is down; the relay acknowledges 20 requests, is killed with SIGKILL, and started
    again once the destination is up: all 20 arrive."""
    serve_port, relay_port = free_port(), free_port()
    destination = f"http://127.0.0.1:{serve_port}"
    with _relay_process(tmp_path / "spool", relay_port, destination) as relay:
        _spans(f"http://127.0.0.1:{relay_port}", 20)  # each one acknowledged by the relay
        relay.send_signal(signal.SIGKILL)
        relay.wait(30)
    with start_server(tmp_path / "out", port=serve_port) as serve:
        with _relay_process(tmp_path / "spool", relay_port, destination):
            assert _wait(lambda: serve.sink.counts.spans >= 20)
        assert serve.sink.counts.spans == 20


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--traces-endpoint", "ftp://x"], "not an http:// or https:// URL"),
        (["--traces-endpoint", "http://127.0.0.1:1", "--backoff", "2", "--max-backoff", "1"], "is below --backoff"),
        (["--traces-endpoint", "http://127.0.0.1:1", "--port", "70000"], "--port"),
    ],
)
def test_relay_usage_errors_exit_2_with_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    done = subprocess.run(
        [*CLI, "relay", "--spool", str(tmp_path / "spool"), *options], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done
    assert not (tmp_path / "spool").exists()


def test_one_refused_record_does_not_take_the_good_ones_of_its_request_down(tmp_path: Path) -> None:
    """relay -> tlog serve, which refuses a whole request (400, nothing appended) for one bad manifest: the
    relay splits the refused request down to single records, so the 11 good manifests of the request are
    logged and only the request as received, with its bad record, is dead-lettered."""
    import json

    from tlog_fixtures import demo_export, log_signer

    from run_identity.core.keys import Keyring
    from run_identity.pipeline.tlog_serve import start_log_server
    from run_identity.pipeline.tlog_store import LogStore

    export, jwks, _entries = demo_export(tmp_path / "demo")
    log = start_log_server(LogStore(tmp_path / "log", log_signer()), Keyring.from_jwks(jwks), port=0, interval=0.2)
    relay = start_relay(tmp_path / "relay", traces_endpoint=log.url)
    try:
        documents = [json.loads(line) for line in (export / "manifests.jsonl").read_text().splitlines()]
        records = [r for d in documents for rl in d["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
        assert len(records) == 12
        bad = records[-1]
        body = json.loads(bad["body"]["stringValue"])
        body["signature"] = ("A" if body["signature"][0] != "A" else "B") + body["signature"][1:]
        bad["body"]["stringValue"] = json.dumps(body, separators=(",", ":"), sort_keys=True)
        for document in documents:
            request = urllib.request.Request(
                relay.url + "/v1/logs",
                data=json.dumps(document).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        assert _wait(lambda: relay.sink.summary()["received"]["dead_lettered"]["logs"] == 1)
        assert _wait(lambda: log.store.size == 11)
        assert relay.sink.pending()["logs"] == 0
        assert len(list((tmp_path / "relay" / "logs" / "dead").iterdir())) == 1
    finally:
        relay.stop()
        log.stop()


def _logs_request(records: int) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for i in range(records):
        scope.log_records.add().body.string_value = f"record {i}"
    return request.SerializeToString()


def _records(payload: bytes) -> list[str]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest.FromString(payload)
    return [r.body.string_value for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]


def test_splitting_finds_the_bad_record_and_spends_a_bounded_number_of_sends() -> None:
    """One bad record of 1,000: the other 999 are delivered, in about 2·log2(1000) part sends. A destination
    that refuses everything (a wrong URL) is asked at most MAX_PART_SENDS more times, not 1,000."""
    from run_identity.pipeline._split import MAX_PART_SENDS, SplittingSender
    from run_identity.pipeline._spool_store import SendResult

    delivered: list[str] = []
    sends = [0]

    def one_bad(payload: bytes) -> SendResult:
        sends[0] += 1
        records = _records(payload)
        if "record 617" in records:
            return SendResult.REJECTED
        delivered.extend(records)
        return SendResult.SENT

    assert SplittingSender("logs", one_bad)(_logs_request(1000)) is SendResult.REJECTED
    assert sorted(delivered) == sorted(f"record {i}" for i in range(1000) if i != 617)
    assert sends[0] <= 1 + 2 * 10

    sends[0] = 0

    def refuse_all(payload: bytes) -> SendResult:
        sends[0] += 1
        return SendResult.REJECTED

    assert SplittingSender("logs", refuse_all)(_logs_request(1000)) is SendResult.REJECTED
    assert sends[0] == 1 + MAX_PART_SENDS
