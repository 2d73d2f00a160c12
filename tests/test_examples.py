"""examples/quickstart and examples/rag_with_tools, run as a user runs them, verified by the verifier CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import run_identity

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLI = [sys.executable, "-c", "import sys; from run_identity.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key_path, jwks_path, _ = run_identity.generate_key_files(tmp_path_factory.mktemp("keys"))
    return key_path, jwks_path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


def _verify(out: Path, jwks: Path) -> list[dict[str, object]]:
    done = _run(*CLI, "verify", str(out), "--keyring", str(jwks), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_quickstart_run_verifies(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The quickstart's manual SDK set-up exports one run that verifies, with the identity it printed."""
    key_path, jwks = keys
    done = _run(sys.executable, str(EXAMPLES / "quickstart" / "app.py"), "--key", str(key_path), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()[-1]
    runs = [r for r in _verify(tmp_path, jwks) if r["type"] == "run"]
    assert [(r["code"], r["identity"]) for r in runs] == [("verified", printed)]


def test_rag_with_tools_runs_verify_and_differ_in_messages(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """Both calls of the agent turn verify, and diff says they differ only in their messages."""
    key_path, jwks = keys
    done = _run(
        sys.executable, str(EXAMPLES / "rag_with_tools" / "app.py"), "--key", str(key_path), "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    first, second = (line.split()[-1] for line in done.stdout.splitlines())
    runs = [r for r in _verify(tmp_path, jwks) if r["type"] == "run"]
    assert sorted(r["identity"] for r in runs) == sorted([first, second])
    assert {r["code"] for r in runs} == {"verified"}
    diff = _run(*CLI, "diff", first, second, "--in", str(tmp_path), "--json")
    assert diff.returncode in (0, 1), diff.stderr
    report = json.loads(diff.stdout)
    changed = {c["name"] for c in report["components"] if c["status"] != "same"}
    assert report["identical"] is False
    assert changed == {"messages"}
