"""examples/collector_pipeline: the app and the README's commands, run as a user would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import run_identity
from run_identity.pipeline.collector import CollectorUnavailable, free_port, rotel_version
from run_identity.pipeline.serve import start_server

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "collector_pipeline"
CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key_path, jwks_path, _ = run_identity.generate_key_files(tmp_path_factory.mktemp("keys"))
    return key_path, jwks_path


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def _verify(out: Path, jwks: Path) -> dict[str, object]:
    done = _run(*CLI, "verify", str(out), "--keyring", str(jwks), "--json")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    (summary,) = [line for line in lines if line["type"] == "summary"]
    assert done.returncode == 0, done.stdout + done.stderr
    return summary


def test_readme_names_the_commands_it_documents() -> None:
    """The example's README shows the app, the collector, the verify and the spool flush commands."""
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    for command in (
        "app.py --key",
        "run-identity collector",
        "run-identity verify",
        "run-identity spool flush",
        'otelcol-contrib --config "$(run-identity collector --print-config-dir)/otelcol-contrib.yaml"',
    ):
        assert command in text


def test_app_exports_to_an_otlp_http_receiver(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """Without a collector, the app's OTLP/HTTP export to `run-identity serve` verifies: 12 runs."""
    key_path, jwks = keys
    out = tmp_path / "out"
    with start_server(out) as server:
        done = _run(sys.executable, str(EXAMPLE / "app.py"), "--key", str(key_path), "--endpoint", server.url)
        assert done.returncode == 0, done.stderr
        assert server.sink.wait_for(spans=12, manifests=12, timeout=10)
    assert "declared 12 runs" in done.stdout
    summary = _verify(out, jwks)
    assert summary["counts"]["verified"] == 12  # type: ignore[index]


def test_app_rejects_a_missing_key(tmp_path: Path) -> None:
    """A wrong key path is an error exit, not a run without identities."""
    done = _run(sys.executable, str(EXAMPLE / "app.py"), "--key", str(tmp_path / "nope.pem"), "--count", "1")
    assert done.returncode != 0


@pytest.fixture
def collector(tmp_path: Path, keys: tuple[Path, Path]) -> Iterator[tuple[str, str, Path]]:
    """`run-identity collector` as the README starts it (free ports): (OTLP/HTTP URL, gRPC target, out)."""
    try:
        rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")
    out = tmp_path / "pipeline"
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
            "--keyring",
            str(keys[1]),
            "--workdir",
            str(tmp_path / "rotel"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("rotel: OTLP gRPC "), first
        grpc = first.split("OTLP gRPC ", 1)[1].split(",", 1)[0]
        http = first.split("OTLP/HTTP ", 1)[1].strip()
        yield http, grpc, out
        process.send_signal(signal.SIGTERM)
        rest, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "verification: passed: 24 runs (verified 24)" in rest, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.collector
def test_readme_walkthrough_with_rotel(collector: tuple[str, str, Path], keys: tuple[Path, Path]) -> None:
    """The README's rotel steps: the app over OTLP/HTTP and over gRPC, then verify: 24 runs verified."""
    http, grpc, out = collector
    key_path, jwks = keys
    app = [sys.executable, str(EXAMPLE / "app.py"), "--key", str(key_path)]
    for extra in (["--endpoint", http], ["--protocol", "grpc", "--endpoint", grpc]):
        done = _run(*app, *extra)
        assert done.returncode == 0, done.stderr
    summary = _wait_verified(out, jwks, runs=24)
    assert summary["counts"]["verified"] == 24  # type: ignore[index]


def _wait_verified(out: Path, jwks: Path, *, runs: int, timeout: float = 30) -> dict[str, object]:
    """Verify ``out`` until it holds ``runs`` runs (rotel batches for up to 100 ms) or ``timeout`` passes."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        done = _run(*CLI, "verify", str(out), "--keyring", str(jwks), "--json")
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        summary = next((line for line in lines if line["type"] == "summary"), {"runs": 0})
        if (summary.get("runs") == runs and done.returncode == 0) or time.monotonic() > deadline:
            assert done.returncode == 0, done.stdout + done.stderr
            return summary
        time.sleep(0.2)


@pytest.mark.collector
def test_readme_spool_steps(
    collector: tuple[str, str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The README's down-collector steps: spool while nothing listens, then `spool flush` to the collector."""
    http, _, out = collector
    key_path, jwks = keys
    spool = tmp_path / "spool"
    done = _run(
        sys.executable,
        str(EXAMPLE / "app.py"),
        "--key",
        str(key_path),
        "--spool",
        str(spool),
        "--timeout",
        "0.5",
        "--endpoint",
        f"http://127.0.0.1:{free_port()}",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in spool.glob("*.binpb")) == ["logs.spool.binpb", "traces.spool.binpb"]
    flushed = _run(*CLI, "spool", "flush", "--dir", str(spool), "--endpoint", http)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    # the other 12 of the fixture's 24: the app runs once more straight to the collector
    again = _run(sys.executable, str(EXAMPLE / "app.py"), "--key", str(key_path), "--endpoint", http)
    assert again.returncode == 0, again.stderr
    summary = _wait_verified(out, jwks, runs=24)
    assert summary["counts"]["verified"] == 24  # type: ignore[index]
