"""Option values the CLI checks before any work (ports, URLs, worker counts), missing extras, and the
follow-up command lines the demo prints."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from run_identity.cli import OPTIONAL_MODULES, main, missing_extra
from run_identity.cli._demo import invocation


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("run-identity: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--port", "99999"], "--port 99999"),
        (["serve", "--port", "-1"], "--port -1"),
        (["collector", "--http-port", "70000"], "--http-port 70000"),
        (["collector", "--grpc-port", "-5"], "--grpc-port -5"),
        (["collector", "--traces-endpoint", "notaurl", "--manifests-endpoint", "http://h:1"], "--traces-endpoint"),
        (["collector", "--traces-endpoint", "http://h:1", "--manifests-endpoint", "http://h:99999"], "--manifests"),
        (["spool", "flush", "--dir", ".", "--endpoint", "notaurl"], "--endpoint 'notaurl'"),
        (["spool", "flush", "--dir", ".", "--endpoint", "ftp://host"], "http:// or https://"),
        (["spool", "flush", "--dir", ".", "--endpoint", "http://"], "with a host"),
        (["spool", "flush", "--dir", ".", "--endpoint", "http://h:4318", "--timeout", "0"], "--timeout"),
        (["verify", ".", "--keyring", "k.jwks", "--jobs", "-1"], "--jobs -1"),
        (["verify", ".", "--keyring", "k.jwks", "--jobs", "100000"], "--jobs 100000"),
        (["replay", "sha256:00", "--base-url", "localhost:8000"], "--base-url"),
    ],
)
def test_bad_option_values_are_one_line_and_exit_2(
    argv: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port out of range, a string that is not an http(s) URL or a bad worker count: one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("url", ["http://127.0.0.1:4318", "https://collector.example/otlp/", "http://[::1]:4318"])
def test_good_urls_pass(url: str) -> None:
    """http and https base URLs with a host (and a port, a path) are accepted as given."""
    from run_identity.cli._args import check_url

    assert check_url(url, "--endpoint") == url


def test_missing_extra_maps_optional_modules_only() -> None:
    """Modules of an extra (and their submodules) name the extra; anything else is not an extra's."""
    for module, extra in OPTIONAL_MODULES.items():
        assert missing_extra(ModuleNotFoundError(name=module)) == extra
    assert missing_extra(ModuleNotFoundError(name="opentelemetry.exporter.otlp.proto.http._log_exporter")) == "otlp"
    assert missing_extra(ModuleNotFoundError(name="opentelemetry.proto")) is None
    assert missing_extra(ModuleNotFoundError(name="opentelemetry")) is None


def test_a_missing_extra_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command that needs an extra which is not installed prints one line with the pip command, exit 1."""
    from run_identity.cli import _core

    def needs_otlp(args: argparse.Namespace) -> int:
        module = "opentelemetry.exporter.otlp.proto.http"
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(_core, "_keygen", needs_otlp)
    assert main(["keygen", "--out", "unused"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "'otlp' extra" in line and "pip install 'ai-run-identity[otlp]'" in line


def test_invocation_names_what_the_shell_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bare name when PATH finds the running script, else its path; python -m for __main__.py."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "run-identity"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert invocation(str(script)) == "run-identity"
    monkeypatch.setenv("PATH", os.defpath)
    assert invocation(str(script)) == "bin/run-identity"
    assert invocation(str(script), as_module=True).endswith(" -m run_identity")
    assert invocation("/usr/lib/python3/site-packages/pytest/__main__.py") == "run-identity"


def test_demo_next_lines_run_as_printed(tmp_path: Path) -> None:
    """`python -m run_identity demo` from any folder prints follow-up commands that run as printed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.defpath  # the environment's bin folder is not on PATH, as in a fresh shell
    done = subprocess.run(
        [sys.executable, "-m", "run_identity", "demo", "--out", "my demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("Next:", 1)[1].splitlines()[1:]
    commands = [line.strip() for line in lines if line.strip()]
    assert len(commands) == 3
    for command in commands:
        assert shlex.split(command)[:3] == [sys.executable, "-m", "run_identity"] or command.startswith("python")
        ran = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        # diff exits 1 because the two suggested runs differ (a temperature); the others pass
        assert ran.returncode == (1 if " diff " in command else 0), (command, ran.stderr)


def test_python_m_does_not_load_modules_from_the_current_folder(tmp_path: Path) -> None:
    """`python -m run_identity` takes the current folder off sys.path: a stray google.py there is never run."""
    (tmp_path / "google.py").write_text("raise SystemExit('the stray google.py was loaded')\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "run_identity", "demo", "--out", "d"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "PASS: all 12 runs verified." in done.stdout
