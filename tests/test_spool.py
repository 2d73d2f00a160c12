"""No lost manifests: spooling exporters keep what the collector did not take and send it again later."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import run_identity
from run_identity.core.attributes import MANIFEST_EVENT_NAME
from run_identity.pipeline.collector import CollectorUnavailable, free_port, rotel_version, start_rotel
from run_identity.pipeline.serve import MANIFESTS_FILE, start_server
from run_identity.pipeline.spool import (
    LOGS_SPOOL,
    TRACES_SPOOL,
    SendResult,
    Spool,
    SpoolFullError,
    SpoolingLogExporter,
    classify_status,
    flush_spool_dir,
    spooling_otlp_exporters,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "collector_pipeline"
CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]


def _verify(out: Path, jwks: Path) -> list[str]:
    """Result codes of ``run-identity verify OUT --keyring JWKS --json``, run as an auditor would."""
    done = subprocess.run(
        [*CLI, "verify", str(out), "--keyring", str(jwks), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    codes = [r["code"] for r in runs if r["type"] == "run"]
    assert done.returncode == (0 if set(codes) <= {"verified"} else 1), done.stderr
    return codes


def _emit(exporter: Any, count: int, *, start: int = 0, shutdown: bool = True) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests")
    for i in range(start, start + count):
        logger.emit(event_name=MANIFEST_EVENT_NAME, body=f"manifest {i}")
    if shutdown:
        provider.shutdown()


def _bodies(spool_path: Path) -> list[str]:
    bodies = []
    for payload in Spool(spool_path).payloads():
        request = ExportLogsServiceRequest.FromString(payload)
        bodies += [
            r.body.string_value
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]
    return bodies


def test_spool_entries_are_private_whole_files_sent_oldest_first(tmp_path: Path) -> None:
    """Each append is one 0600 file in a 0700 folder (no temp file left); drain sends oldest first."""
    spool = Spool(tmp_path / "s" / LOGS_SPOOL)
    for i in range(4):
        spool.append(f"payload {i}".encode())
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o700
    files = sorted(p for p in spool.path.iterdir() if not p.name.startswith(".lock"))
    assert len(files) == 4 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert not list(spool.path.glob(".tmp-*"))
    assert spool.pending() == 4
    seen: list[bytes] = []
    assert spool.drain(lambda p: seen.append(p) is None)[:3] == (4, 0, 0)
    assert seen == [f"payload {i}".encode() for i in range(4)]
    assert spool.pending() == 0


def test_a_refused_entry_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """A failing entry waits its backoff while the entries behind it are sent (no head-of-line blocking)."""
    spool = Spool(tmp_path / LOGS_SPOOL, backoff=60)
    for payload in (b"bad", b"good 1", b"good 2"):
        spool.append(payload)
    sent: list[bytes] = []

    def send(payload: bytes) -> SendResult:
        if payload == b"bad":
            return SendResult.RETRY
        sent.append(payload)
        return SendResult.SENT

    assert spool.drain(send)[:3] == (2, 1, 0)
    assert sent == [b"good 1", b"good 2"]
    # in its backoff: the next pass does not even try it
    assert spool.drain(lambda p: pytest.fail("tried during its backoff"))[:3] == (0, 1, 0)
    assert spool.next_due() is not None and spool.next_due() > 30  # type: ignore[operator]


def test_permanent_refusal_and_exhausted_attempts_go_to_dead_letters(tmp_path: Path) -> None:
    """A 4xx-like refusal moves an entry to dead/ at once; RETRY up to max_attempts does the same."""
    spool = Spool(tmp_path / LOGS_SPOOL, backoff=0, max_attempts=3)
    spool.append(b"refused")
    spool.append(b"flaky")
    results = {b"refused": SendResult.REJECTED, b"flaky": SendResult.RETRY}
    assert spool.drain(results.__getitem__)[:3] == (0, 1, 1)
    assert spool.drain(results.__getitem__)[:3] == (0, 1, 0)
    assert spool.drain(results.__getitem__)[:3] == (0, 0, 1)
    assert spool.dead_lettered() == 2 and spool.pending() == 0
    dead = sorted(spool.dead_path.iterdir())
    assert [Spool._unframe(p.read_bytes()) for p in dead] == [b"refused", b"flaky"]


def test_status_codes_map_to_otlp_retry_rules() -> None:
    """2xx sent; 408, 429 and 5xx retried; other 4xx refused for good."""
    assert classify_status(200) is SendResult.SENT
    assert {classify_status(c) for c in (408, 429, 500, 502, 503)} == {SendResult.RETRY}
    assert {classify_status(c) for c in (400, 401, 403, 404, 413)} == {SendResult.REJECTED}


def test_a_raising_sender_keeps_the_entry(tmp_path: Path) -> None:
    """A sender that raises counts as a transient failure: nothing is lost."""
    spool = Spool(tmp_path / LOGS_SPOOL)
    spool.append(b"x")

    def broken(payload: bytes) -> bool:
        raise RuntimeError("bug")

    assert spool.drain(broken)[:3] == (0, 1, 0)
    assert spool.pending() == 1


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An os.write that writes only part of the buffer is called again until the entry is whole."""
    real_write = os.write

    def short(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:3]))

    spool = Spool(tmp_path / LOGS_SPOOL)
    monkeypatch.setattr(os, "write", short)
    spool.append(b"a longer payload")
    monkeypatch.setattr(os, "write", real_write)
    assert spool.payloads() == [b"a longer payload"]


def test_symlinked_spool_folder_is_refused(tmp_path: Path) -> None:
    """A symbolic link where the spool folder should be is not followed."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / LOGS_SPOOL).symlink_to(target)
    with pytest.raises(OSError):
        Spool(tmp_path / LOGS_SPOOL).append(b"x")
    assert list(target.iterdir()) == []


def test_size_cap_refuses_new_entries_and_keeps_old_ones(tmp_path: Path) -> None:
    """At max_bytes a new entry is refused with SpoolFullError; what is spooled stays."""
    spool = Spool(tmp_path / LOGS_SPOOL, max_bytes=100)
    spool.append(b"x" * 60)
    with pytest.raises(SpoolFullError):
        spool.append(b"y" * 60)
    assert spool.payloads() == [b"x" * 60]


def test_legacy_single_file_spool_is_converted(tmp_path: Path) -> None:
    """A spool file of the previous format becomes entries; its torn tail goes to dead/, never resent."""
    legacy = tmp_path / LOGS_SPOOL
    legacy.write_bytes(b"\x00\x00\x00\x05whole" + b"\x00\x00\x01\x00torn")
    spool = Spool(legacy)
    assert spool.pending() == 1
    sent: list[bytes] = []
    assert spool.drain(lambda p: sent.append(p) is None)[:3] == (1, 0, 0)
    assert sent == [b"whole"] and spool.path.is_dir()
    assert [p.read_bytes() for p in spool.dead_path.iterdir()] == [b"\x00\x00\x01\x00torn"]


def test_failed_exports_are_spooled_and_counted(tmp_path: Path) -> None:
    """With the collector down, batches land in the spool (OTLP protobuf) and the counters say so."""
    down = f"http://127.0.0.1:{free_port()}"
    exporter = SpoolingLogExporter(
        OTLPLogExporter(endpoint=f"{down}/v1/logs", timeout=0.5),
        tmp_path / LOGS_SPOOL,
        replay_at_start=False,
        cooldown=60,
    )
    _emit(exporter, 3)
    stats = exporter.stats
    assert (stats.exports, stats.export_failures) == (3, 1)  # after one failure, the cooldown spools directly
    assert (stats.spooled_batches, stats.spooled_records, stats.pending, stats.lost_records) == (3, 3, 3, 0)
    assert _bodies(tmp_path / LOGS_SPOOL) == ["manifest 0", "manifest 1", "manifest 2"]


def test_garbage_entry_does_not_stop_new_batches(tmp_path: Path) -> None:
    """One garbage entry in the spool and a healthy collector: every new batch is delivered at once, the
    garbage (400 from the receiver) goes to dead letters, and the spool ends empty."""
    spool_path = tmp_path / LOGS_SPOOL
    Spool(spool_path).append(b"\xff garbage, not protobuf")
    with start_server(tmp_path / "out") as server:
        exporter = SpoolingLogExporter(
            OTLPLogExporter(endpoint=f"{server.url}/v1/logs", timeout=5), spool_path, cooldown=0.1
        )
        _emit(exporter, 5, shutdown=False)
        assert server.sink.counts.manifests == 5  # delivered synchronously, none behind the garbage
        deadline = time.monotonic() + 10
        while exporter.stats.dead_lettered < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        exporter.shutdown()
    assert exporter.stats.dead_lettered == 1 and Spool(spool_path).pending() == 0
    assert Spool(spool_path).dead_lettered() == 1


class _Recorder(ThreadingHTTPServer):
    """A destination that records each request's headers and body; answers ``status`` (a list, popped)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = recorder.statuses.pop(0) if recorder.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_replays_keep_the_exporters_headers_and_compression(tmp_path: Path) -> None:
    """A spooled batch is sent again with the exporter's own auth header, gzip and endpoint."""
    recorder = _Recorder([503, 503, 503])  # the export (and its own retry, if any) fails, then a replay
    try:
        url = f"http://127.0.0.1:{recorder.server_address[1]}/custom/v1/logs"
        exporter = SpoolingLogExporter(
            OTLPLogExporter(
                endpoint=url, timeout=1, headers={"authorization": "Bearer s3cret"}, compression=Compression.Gzip
            ),
            Spool(tmp_path / LOGS_SPOOL, backoff=0.05),
            cooldown=0.05,
        )
        _emit(exporter, 1, shutdown=False)
        deadline = time.monotonic() + 15
        while exporter.stats.replayed_batches < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exporter.stats.spooled_batches == 1 and exporter.stats.replayed_batches == 1
        assert len(recorder.seen) >= 2 and all(h["authorization"] == "Bearer s3cret" for h, _ in recorder.seen)
        headers, body = recorder.seen[-1]
        assert headers["authorization"] == "Bearer s3cret"
        assert headers["content-encoding"] == "gzip"
        request = ExportLogsServiceRequest.FromString(gzip.decompress(body))
        assert request.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "manifest 0"
        exporter.shutdown()
    finally:
        recorder.shutdown()
        recorder.server_close()


def test_spool_is_replayed_at_start(tmp_path: Path) -> None:
    """A new exporter sends the previous process's spool in the background, and its own batches at once."""
    spool_path = tmp_path / LOGS_SPOOL
    down = f"http://127.0.0.1:{free_port()}"
    _emit(SpoolingLogExporter(OTLPLogExporter(endpoint=f"{down}/v1/logs", timeout=0.3), spool_path), 2)
    assert Spool(spool_path).pending() == 2
    with start_server(tmp_path / "out") as server:
        url = f"{server.url}/v1/logs"
        exporter = SpoolingLogExporter(OTLPLogExporter(endpoint=url, timeout=5), spool_path)
        _emit(exporter, 1, start=2)
        assert server.sink.wait_for(manifests=3, timeout=10)
    assert exporter.stats.replayed_batches == 2 and exporter.stats.pending == 0
    assert Spool(spool_path).pending() == 0
    text = (tmp_path / "out" / MANIFESTS_FILE).read_text()
    assert all(f"manifest {i}" in text for i in range(3))


def test_unwritable_spool_counts_lost_records_without_raising(tmp_path: Path) -> None:
    """If even the spool cannot be written, the loss is counted and nothing raises into the SDK."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    exporter = SpoolingLogExporter(InMemoryLogRecordExporter(), blocker / LOGS_SPOOL, cooldown=0)
    exporter.exporter.shutdown()  # the in-memory exporter now refuses every batch
    _emit(exporter, 2)
    assert exporter.stats.lost_records == 2 and exporter.stats.spool_write_failures == 2


def test_spool_files_verify_as_length_prefixed_protobuf(tmp_path: Path, signer: Any, keyring: Any) -> None:
    """The spool is the file exporter's proto format: the verifier reads spans and manifests from it."""
    spool_dir = tmp_path / "spool"
    down = f"http://127.0.0.1:{free_port()}"
    spans, manifests = spooling_otlp_exporters(down, spool_dir, timeout=0.3)
    identity = run_identity.setup(
        signer, span_exporters=[spans], manifest_exporters=[manifests], set_global=False
    )
    composition = {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": []}
    with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider):
        pass
    identity.shutdown()
    from run_identity.verify import Policy, Verifier

    report = Verifier(keyring, Policy()).verify([spool_dir / TRACES_SPOOL, spool_dir / LOGS_SPOOL])
    assert [r.code for r in report.results()] == ["verified"]


def _load_app() -> Any:
    """examples/collector_pipeline/app.py as a module of its own name (other examples also have an app.py)."""
    spec = importlib.util.spec_from_file_location("collector_pipeline_app", EXAMPLES / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key_path, jwks_path, _ = run_identity.generate_key_files(tmp_path_factory.mktemp("keys"))
    return key_path, jwks_path


@pytest.fixture(scope="module")
def rotel() -> str:
    try:
        return rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")


def _app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "app.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.collector
def test_collector_down_then_up_every_run_verifies(
    rotel: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The app runs while the collector is down and exits; its next start sends the spool via rotel."""
    key_path, jwks = keys
    port, spool, out = free_port(), tmp_path / "spool", tmp_path / "out"
    endpoint = f"http://127.0.0.1:{port}"
    first = _app("--key", str(key_path), "--endpoint", endpoint, "--spool", str(spool), "--timeout", "1")
    assert first.returncode == 0, first.stderr
    assert "declared 12 runs" in first.stdout
    assert Spool(spool / LOGS_SPOOL).pending() >= 1 and Spool(spool / TRACES_SPOOL).pending() >= 1
    assert stat.S_IMODE((spool / LOGS_SPOOL).stat().st_mode) == 0o700
    with (
        start_server(out) as server,
        start_rotel(
            traces_endpoint=server.url, manifests_endpoint=server.url, http_port=port, workdir=tmp_path / "w"
        ),
    ):
        second = _app("--key", str(key_path), "--endpoint", endpoint, "--spool", str(spool), "--count", "0")
        assert second.returncode == 0, second.stderr
        assert server.sink.wait_for(spans=12, manifests=12, timeout=30)
    assert Spool(spool / LOGS_SPOOL).pending() == 0 and Spool(spool / TRACES_SPOOL).pending() == 0
    assert _verify(out, jwks) == ["verified"] * 12


@pytest.mark.collector
def test_collector_back_mid_run_replays_before_new_batches(
    rotel: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Runs made while rotel is down are sent, oldest first, once it is back; all twelve verify."""
    app = _load_app()
    key_path, jwks = keys
    port, out = free_port(), tmp_path / "out"
    spans, manifests = spooling_otlp_exporters(
        f"http://127.0.0.1:{port}", tmp_path / "spool", timeout=0.5, cooldown=0.2
    )
    identity = run_identity.setup(
        run_identity.load_signer(key_path),
        span_exporters=[spans],
        manifest_exporters=[manifests],
        set_global=False,
    )
    compositions = app.compositions()
    with start_server(out) as server:
        for composition in compositions[:6]:
            with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider):
                pass
        identity.force_flush()
        assert manifests.stats.export_failures >= 1 and manifests.stats.pending >= 1
        with start_rotel(
            traces_endpoint=server.url, manifests_endpoint=server.url, http_port=port, workdir=tmp_path / "w"
        ):
            time.sleep(0.3)  # past the cooldown
            for composition in compositions[6:]:
                with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider):
                    pass
            identity.shutdown()
            assert server.sink.wait_for(spans=12, manifests=12, timeout=30)
    assert manifests.stats.pending == 0 and manifests.stats.replayed_batches >= 1
    assert spans.stats.pending == 0
    assert _verify(out, jwks) == ["verified"] * 12


def test_spool_flush_command_sends_and_reports(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """`run-identity spool flush` sends a spool folder to an endpoint and says what it sent."""
    key_path, jwks = keys
    spool = tmp_path / "spool"
    first = _app(
        "--key",
        str(key_path),
        "--endpoint",
        f"http://127.0.0.1:{free_port()}",
        "--spool",
        str(spool),
        "--timeout",
        "0.5",
        "--count",
        "3",
    )
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    with start_server(out) as server:
        done = subprocess.run(
            [*CLI, "spool", "flush", "--dir", str(spool), "--endpoint", server.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert server.sink.wait_for(spans=3, manifests=3, timeout=10)
    assert "left 0" in done.stdout
    assert _verify(out, jwks) == ["verified"] * 3
    assert flush_spool_dir(spool, "http://127.0.0.1:9") == {}
