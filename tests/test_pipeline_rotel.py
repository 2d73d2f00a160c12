"""End to end through the real rotel collector: app -> OTLP -> rotel -> serve -> files -> verify."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

import run_identity
from run_identity.cli import main
from run_identity.core.attributes import MANIFEST_EVENT_NAME
from run_identity.pipeline.collector import (
    CollectorError,
    CollectorUnavailable,
    rotel_agent_path,
    rotel_pipeline,
    rotel_version,
    run_through_rotel,
    start_rotel,
)
from run_identity.pipeline.serve import LOGS_FILE, MANIFESTS_FILE, TRACES_FILE, verification_summarizer

pytestmark = pytest.mark.collector

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "collector_pipeline"
CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]

# A rotel Python processor that edits data in transit: the anthropic run's identity attribute on its span, and
# the manifest of the run that asks about returns (one word of a retrieved document).
TAMPER = textwrap.dedent(
    """
    from rotel_sdk.open_telemetry.common.v1 import AnyValue

    _done = set()

    def process_spans(resource_spans):
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attrs = {kv.key: kv for kv in span.attributes}
                provider = attrs.get("gen_ai.provider.name")
                if "span" in _done or provider is None or provider.value.value != "anthropic":
                    continue
                kv = attrs["run_identity.id"]
                old = kv.value.value
                kv.value = AnyValue(old[:-1] + ("1" if old[-1] == "0" else "0"))
                _done.add("span")

    def process_logs(resource_logs):
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                body = record.body.value if record.body is not None else None
                if "manifest" in _done or not isinstance(body, str) or "three weeks" not in body:
                    continue
                record.body = AnyValue(body.replace("within 30 days", "within 90 days"))
                _done.add("manifest")
    """
)


@pytest.fixture(scope="module")
def rotel() -> str:
    """The rotel-agent version; skips the module where the rotel wheel cannot run."""
    try:
        rotel_agent_path()
        return rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")


@pytest.fixture(scope="module")
def app() -> Any:
    return _load_app()


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


def _verify(out: Path, jwks: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    """``run-identity verify OUT --keyring JWKS --json``, in process: (exit code, per-run results)."""
    capsys.readouterr()
    code = main(["verify", str(out), "--keyring", str(jwks), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, [line for line in lines if line["type"] == "run"]


def _records(path: Path, kind: str) -> list[dict[str, Any]]:
    outer, inner, items = {
        "spans": ("resourceSpans", "scopeSpans", "spans"),
        "logs": ("resourceLogs", "scopeLogs", "logRecords"),
    }[kind]
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [r for d in docs for o in d[outer] for i in o[inner] for r in i[items]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_run_through_rotel_verifies(
    rotel: str,
    app: Any,
    keys: tuple[Path, Path],
    tmp_path: Path,
    protocol: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dozen runs with tools and retrieved context, over OTLP/HTTP or gRPC through rotel, all verify."""
    key_path, jwks = keys
    signer = run_identity.load_signer(key_path)
    out = tmp_path / "out"
    with rotel_pipeline(
        out, summarize=verification_summarizer(run_identity.Keyring.from_jwks(jwks))
    ) as pipeline:
        span_exporter, manifest_exporter = pipeline.exporters(protocol=protocol)  # type: ignore[arg-type]
        runs = app.make_runs(signer, span_exporter, manifest_exporter)
        assert pipeline.wait_delivered(runs, timeout=30)
    assert runs == 12
    code, results = _verify(out, jwks, capsys)
    assert code == 0
    assert [r["code"] for r in results] == ["verified"] * 12
    spans = _records(out / TRACES_FILE, "spans")
    manifests = _records(out / MANIFESTS_FILE, "logs")
    assert len(spans) == 12 and len(manifests) == 12
    assert {m["eventName"] for m in manifests} == {MANIFEST_EVENT_NAME}
    assert pipeline.serve.summary()["verification"]["counts"]["verified"] == 12


def test_run_through_rotel_is_the_demo_hook(
    rotel: str, app: Any, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """run_through_rotel runs the app against rotel, waits for delivery, stops all, returns the summary."""
    key_path, jwks = keys
    signer = run_identity.load_signer(key_path)
    summary = run_through_rotel(
        tmp_path / "out",
        lambda spans, manifests: app.make_runs(signer, spans, manifests, count=5),
        summarize=verification_summarizer(run_identity.Keyring.from_jwks(jwks)),
    )
    assert summary["received"]["run_spans"] == 5 and summary["received"]["manifests"] == 5
    assert summary["verification"]["passed"] is True


def test_tampering_in_transit_is_detected(
    rotel: str, app: Any, keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rotel processor edits a manifest body and a span attribute: identity_mismatch, bad_signature."""
    key_path, jwks = keys
    tamper = tmp_path / "tamper.py"
    tamper.write_text(TAMPER, encoding="utf-8")
    out = tmp_path / "out"
    with rotel_pipeline(out, logs_processors=[tamper], traces_processors=[tamper]) as pipeline:
        span_exporter, manifest_exporter = pipeline.exporters()
        runs = app.make_runs(run_identity.load_signer(key_path), span_exporter, manifest_exporter)
        assert pipeline.wait_delivered(runs, timeout=30)
    code, results = _verify(out, jwks, capsys)
    assert code == 1
    codes = sorted(r["code"] for r in results)
    assert codes == ["bad_signature", "identity_mismatch"] + ["verified"] * 10
    by_code = {r["code"]: r for r in results if r["code"] != "verified"}
    assert by_code["bad_signature"]["model"] == "claude-sonnet-4-5"
    manifests = {m["spanId"]: m["body"]["stringValue"] for m in _records(out / MANIFESTS_FILE, "logs")}
    assert "within 90 days" in manifests[by_code["identity_mismatch"]["span_id"]]


def test_ordinary_logs_stay_off_the_manifest_route(rotel: str, tmp_path: Path) -> None:
    """Application log records sent to the same rotel never reach the manifests destination."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    out = tmp_path / "out"
    with rotel_pipeline(out) as pipeline:
        provider = LoggerProvider()
        exporter = OTLPLogExporter(endpoint=f"{pipeline.rotel.otlp_http_endpoint}/v1/logs", timeout=5)
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = provider.get_logger("app")
        logger.emit(body="an ordinary log line")
        logger.emit(event_name="app.checkout", body="an ordinary event")
        logger.emit(event_name=MANIFEST_EVENT_NAME, body="{}")
        provider.shutdown()
        assert pipeline.serve.sink.wait_for(manifests=1, timeout=30)
    (record,) = _records(out / MANIFESTS_FILE, "logs")
    assert record["eventName"] == MANIFEST_EVENT_NAME
    assert not (out / LOGS_FILE).exists()
    assert pipeline.serve.sink.counts.other_logs == 0


def test_collector_command_runs_rotel_and_serve_until_sigterm(rotel: str, tmp_path: Path) -> None:
    """`run-identity collector` starts rotel in front of serve on free ports and stops both on SIGTERM."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *CLI,
            "collector",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("rotel: OTLP gRPC 127.0.0.1:"), first + (
            process.stderr.read() if process.stderr else ""
        )
        http = first.split("OTLP/HTTP ", 1)[1].strip()
        provider = LoggerProvider()
        provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{http}/v1/logs", timeout=5))
        )
        provider.get_logger("app").emit(event_name=MANIFEST_EVENT_NAME, body="{}")
        provider.shutdown()
        _wait_for_file(out / MANIFESTS_FILE, timeout=30)
        process.send_signal(signal.SIGTERM)
        rest, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err
    assert "1 manifests" in rest
    assert json.loads((out / MANIFESTS_FILE).read_text().splitlines()[0])["resourceLogs"]


def _wait_for_file(path: Path, *, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} did not appear within {timeout} s"


@pytest.fixture(autouse=True)
def _no_stray_rotel() -> Iterator[None]:
    """Every rotel-agent a test started is gone when it ends."""
    before = _rotel_children()
    yield
    leftover = _rotel_children() - before
    assert not leftover, f"rotel-agent processes left running: {leftover}"


def _rotel_children() -> set[int]:
    import os

    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
            if cmdline and cmdline[0].endswith(b"rotel-agent") and ppid == str(os.getpid()):
                found.add(int(entry.name))
    return found


def test_rotel_refusing_its_configuration_is_a_clear_error(rotel: str, tmp_path: Path) -> None:
    """A setting rotel rejects at start surfaces as CollectorError quoting rotel's own message."""
    with pytest.raises(CollectorError, match=r"rotel exited with .* at start: .*RETRY_INITIAL_BACKOFF"):
        start_rotel(
            traces_endpoint="http://127.0.0.1:9",
            manifests_endpoint="http://127.0.0.1:9",
            workdir=tmp_path,
            extra_env={"ROTEL_EXPORTER_TRACES_RETRY_INITIAL_BACKOFF": "1s"},
        )


def test_a_binary_that_cannot_run_is_unavailable(tmp_path: Path) -> None:
    """rotel_version reports a binary that fails `version` as CollectorUnavailable (the skip condition)."""
    fake = tmp_path / "rotel-agent"
    fake.write_text(
        "#!/bin/sh\necho 'error while loading shared libraries: libpython3.11.so' >&2\nexit 127\n"
    )
    fake.chmod(0o755)
    with pytest.raises(CollectorUnavailable, match=r"libpython3\.11"):
        rotel_version(fake)
