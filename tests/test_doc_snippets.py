"""The set-up snippets of README.md and docs/integration.md, run as written, deliver manifests that verify."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from run_identity.core.keys import Keyring, generate_key_files
from run_identity.pipeline.serve import start_server
from run_identity.verify import Policy, Verifier

ROOT = Path(__file__).resolve().parent.parent
RUN = '''
with run_identity.start_genai_span({
    "model": {"provider": "openai", "name": "gpt-4o-mini"},
    "operation": "chat",
    "messages": [{"role": "user", "parts": [{"type": "text", "content": "Capital of Portugal?"}]}],
}):
    pass
'''


def code_block(path: Path, heading: str, language: str) -> str:
    """The first fenced ``language`` block after the line ``heading`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    after = text[text.index(heading + "\n") :]
    match = re.search(rf"```{language}\n(.*?)```", after, re.S)
    assert match is not None, f"no {language} block under {heading!r} in {path.name}"
    return match.group(1)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RUN_IDENTITY_"))}
    env.update(extra)
    return env


def _run_against_serve(code: str, tmp_path: Path, **env: str) -> None:
    """Run ``code`` in a fresh interpreter (cwd with keys/, ``env`` added), OTLP pointed at serve; one run must
    verify."""
    _, jwks, _ = generate_key_files(tmp_path / "keys")
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    received = tmp_path / "received"
    with start_server(received) as server:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=_env(OTEL_EXPORTER_OTLP_ENDPOINT=server.url, **env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert server.sink.wait_for(spans=1, manifests=1, timeout=10), server.summary()
    assert done.stderr == "", done.stderr  # no warning that manifests went nowhere
    report = Verifier(Keyring.from_jwks(jwks), Policy()).verify([received])
    assert (report.runs, report.passed) == (1, True)
    assert stat.S_IMODE((received / "manifests.jsonl").stat().st_mode) == 0o600  # it holds the prompt


def test_readme_library_snippet_delivers_its_manifest(tmp_path: Path) -> None:
    """README "Using the library", unchanged: its run's span and manifest reach an OTLP receiver and verify.
    The client is made (an API key is needed for that) but no request is sent."""
    _run_against_serve(
        code_block(ROOT / "README.md", "## Using the library", "python"), tmp_path, OPENAI_API_KEY="sk-not-a-key"
    )


def test_integration_setup_snippet_delivers_manifests(tmp_path: Path) -> None:
    """docs/integration.md "Set-up in code", with a run where the application runs: the manifest arrives."""
    code = code_block(ROOT / "docs" / "integration.md", "## Set-up in code", "python")
    placeholder = "...  # the application runs\n"
    assert placeholder in code
    _run_against_serve(code.replace(placeholder, RUN), tmp_path)


def _exports(block: str, *, commented: bool) -> dict[str, str]:
    """The VAR=value pairs of the block's ``export`` lines (or of its ``#   export`` alternative)."""
    env: dict[str, str] = {}
    for line in block.splitlines():
        line = line.strip()
        if commented:
            if not line.startswith("#"):
                continue
            line = line.lstrip("#").strip()
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                name, _, value = word.partition("=")
                env[name] = value
    return env


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["files", "otlp"])
def test_zero_code_variables_make_the_documented_run_quiet(variant: str, tmp_path: Path) -> None:
    """With the documented OTEL_* variables, opentelemetry-instrument prints nothing and delivers the manifest."""
    instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if instrument is None:
        pytest.skip("opentelemetry-instrument (opentelemetry-distro) is not installed")
    block = code_block(ROOT / "docs" / "integration.md", "## Zero code: `opentelemetry-instrument`", "sh")
    env = _exports(block, commented=False)
    generate_key_files(tmp_path / "keys")
    (tmp_path / "app.py").write_text("import run_identity\n" + RUN, encoding="utf-8")
    argv = [instrument, sys.executable, "app.py"]
    if variant == "files":
        done = subprocess.run(argv, cwd=tmp_path, env=_env(**env), capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert (tmp_path / env["RUN_IDENTITY_EXPORT_DIR"] / "manifests.jsonl").read_text().count("run_identity") > 0
        return
    env = {k: v for k, v in env.items() if k.startswith("RUN_IDENTITY_") and k != "RUN_IDENTITY_EXPORT_DIR"}
    env.update(_exports(block, commented=True))
    with start_server(tmp_path / "received") as server:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = server.url
        done = subprocess.run(argv, cwd=tmp_path, env=_env(**env), capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert server.sink.wait_for(spans=1, manifests=1, timeout=10)


def test_readme_lists_every_command() -> None:
    """Every run-identity subcommand (replay, spool and python -m included) appears in the README's command list."""
    import argparse

    from run_identity.cli import _parser

    parser = _parser("run-identity")
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    block = code_block(ROOT / "README.md", "## Command line", "sh")
    listed = {line.split()[1] for line in block.splitlines() if line.startswith("run-identity ")}
    assert set(sub.choices) <= listed, set(sub.choices) - listed
    assert "python -m run_identity" in (ROOT / "README.md").read_text(encoding="utf-8")
