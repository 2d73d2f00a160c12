"""No lost manifests: spooling exporters keep what the collector did not take and send it again later."""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import run_identity
from run_identity.attributes import MANIFEST_EVENT_NAME
from run_identity.collector import CollectorUnavailable, free_port, rotel_version, start_rotel
from run_identity.serve import MANIFESTS_FILE, start_server
from run_identity.spool import (
    LOGS_SPOOL,
    TRACES_SPOOL,
    OtlpHttpSender,
    Spool,
    SpoolingLogExporter,
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


def _emit(exporter: Any, count: int, *, start: int = 0) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests")
    for i in range(start, start + count):
        logger.emit(event_name=MANIFEST_EVENT_NAME, body=f"manifest {i}")
    provider.shutdown()


def _bodies(spool_path: Path) -> list[str]:
    bodies = []
    for payload in Spool(spool_path)._read()[0]:
        request = ExportLogsServiceRequest.FromString(payload)
        bodies += [
            r.body.string_value
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]
    return bodies


def test_spool_file_is_private_and_drains_oldest_first(tmp_path: Path) -> None:
    """Appends make a 0600 file; drain sends in order, stops at the first refusal and keeps the rest."""
    spool = Spool(tmp_path / "s" / LOGS_SPOOL)
    for i in range(4):
        spool.append(f"payload {i}".encode())
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert spool.pending() == 4
    seen: list[bytes] = []

    def accept_two(payload: bytes) -> bool:
        seen.append(payload)
        return len(seen) <= 2

    assert spool.drain(accept_two) == (2, 2)
    assert seen == [b"payload 0", b"payload 1", b"payload 2"]
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert spool.drain(lambda p: True) == (2, 0)
    assert not spool.path.exists()


def test_torn_append_is_set_aside_not_resent(tmp_path: Path) -> None:
    """A spool cut in the middle of an entry keeps its whole entries and moves the torn bytes aside."""
    spool = Spool(tmp_path / LOGS_SPOOL)
    spool.append(b"whole")
    with open(spool.path, "ab") as f:
        f.write(b"\x00\x00\x01\x00torn")
    sent: list[bytes] = []
    assert spool.drain(lambda p: sent.append(p) is None) == (1, 0)
    assert sent == [b"whole"]
    (aside,) = tmp_path.glob(f"{LOGS_SPOOL}.corrupt-*")
    assert aside.read_bytes() == b"\x00\x00\x01\x00torn"


def test_a_raising_sender_keeps_the_spool(tmp_path: Path) -> None:
    """A sender that raises counts as a refusal: nothing is lost."""
    spool = Spool(tmp_path / LOGS_SPOOL)
    spool.append(b"x")

    def broken(payload: bytes) -> bool:
        raise RuntimeError("bug")

    assert spool.drain(broken) == (0, 1)
    assert spool.pending() == 1


def test_failed_exports_are_spooled_and_counted(tmp_path: Path) -> None:
    """With the collector down, batches land in the spool (OTLP protobuf) and the counters say so."""
    down = f"http://127.0.0.1:{free_port()}"
    exporter = SpoolingLogExporter(
        OTLPLogExporter(endpoint=f"{down}/v1/logs", timeout=0.5),
        tmp_path / LOGS_SPOOL,
        resend=OtlpHttpSender(f"{down}/v1/logs", timeout=0.5),
        cooldown=60,
    )
    _emit(exporter, 3)
    stats = exporter.stats
    assert (stats.exports, stats.export_failures) == (3, 1)  # after one failure, the cooldown spools directly
    assert (stats.spooled_batches, stats.spooled_records, stats.pending, stats.lost_records) == (3, 3, 3, 0)
    assert _bodies(tmp_path / LOGS_SPOOL) == ["manifest 0", "manifest 1", "manifest 2"]


def test_spool_is_replayed_at_start_before_new_batches(tmp_path: Path) -> None:
    """A new exporter sends the previous process's spool first, then its own batches, in order."""
    spool_path = tmp_path / LOGS_SPOOL
    down = f"http://127.0.0.1:{free_port()}"
    _emit(SpoolingLogExporter(OTLPLogExporter(endpoint=f"{down}/v1/logs", timeout=0.3), spool_path), 2)
    assert Spool(spool_path).pending() == 2
    with start_server(tmp_path / "out") as server:
        url = f"{server.url}/v1/logs"
        exporter = SpoolingLogExporter(
            OTLPLogExporter(endpoint=url, timeout=5), spool_path, resend=OtlpHttpSender(url)
        )
        _emit(exporter, 1, start=2)
        assert server.sink.wait_for(manifests=3, timeout=10)
    assert exporter.stats.replayed_batches == 2 and exporter.stats.pending == 0
    assert not spool_path.exists()
    text = (tmp_path / "out" / MANIFESTS_FILE).read_text()
    assert text.index("manifest 0") < text.index("manifest 1") < text.index("manifest 2")


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
    assert stat.S_IMODE((spool / LOGS_SPOOL).stat().st_mode) == 0o600
    with (
        start_server(out) as server,
        start_rotel(
            traces_endpoint=server.url, manifests_endpoint=server.url, http_port=port, workdir=tmp_path / "w"
        ),
    ):
        second = _app("--key", str(key_path), "--endpoint", endpoint, "--spool", str(spool), "--count", "0")
        assert second.returncode == 0, second.stderr
        assert server.sink.wait_for(spans=12, manifests=12, timeout=30)
    assert not (spool / LOGS_SPOOL).exists() and not (spool / TRACES_SPOOL).exists()
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
