"""The main job (`run-identity demo`), end to end as the README's first command runs it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from run_identity.cli import main


def test_demo_declares_exports_and_verifies_every_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo creates a key, exports a dozen runs with the embedded export and verifies all of them."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASS: all 12 runs verified." in text
    assert text.count("verified") >= 13
    assert stat.S_IMODE(os.stat(out / "keys" / "signing-key.pem").st_mode) == 0o600
    assert (out / "export" / "traces.jsonl").stat().st_size > 0
    assert (out / "export" / "manifests.jsonl").stat().st_size > 0
    for name in ("traces.jsonl", "manifests.jsonl"):  # they hold prompts: owner only
        assert stat.S_IMODE((out / "export" / name).stat().st_mode) == 0o600


def test_demo_runs_again_with_the_same_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second demo run keeps the existing key and replaces the previous export."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    key = (out / "keys" / "signing-key.pem").read_bytes()
    capsys.readouterr()
    assert main(["demo", "--out", str(out)]) == 0
    assert "created signing key" not in capsys.readouterr().out
    assert (out / "keys" / "signing-key.pem").read_bytes() == key
    lines = (out / "export" / "manifests.jsonl").read_text().count("run_identity.manifest")
    assert lines == 12


def test_demo_output_feeds_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The diff command the demo suggests names the one parameter that differs."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    suggestion = next(line for line in capsys.readouterr().out.splitlines() if "run-identity diff" in line)
    args = suggestion.split()[1:]
    assert main(args) == 1  # the two runs differ
    assert "parameters.temperature" in capsys.readouterr().out


@pytest.mark.collector
def test_demo_through_the_rotel_collector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --collector the runs travel app -> rotel -> serve and all verify."""
    from run_identity.pipeline.collector import CollectorUnavailable, rotel_version

    try:
        rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--collector"]) == 0
    assert "PASS: all 12 runs verified." in capsys.readouterr().out


def test_the_ids_in_the_demo_table_are_accepted_by_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each row's RUN label, SPAN and IDENTITY, copied as printed, name that very run for ``show``."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    rows = [line.split() for line in lines[start + 1 :] if line.strip() and not line.startswith("PASS")][:12]
    assert len(rows) == 12
    keys = str(out / "keys" / "trusted-keys.jwks.json")
    for label, span_id, identity, code in rows[:4]:
        assert code == "verified" and "…" not in identity
        for name in (label, span_id, identity):
            assert main(["show", name, "--in", str(out / "export"), "--keyring", keys]) == 0, (label, name)
            shown = capsys.readouterr().out
            assert f"/{span_id}" in shown.splitlines()[0] and identity in shown
    # The labels file is a dotfile: verification never takes it for exported data.
    assert (out / "export" / ".run-labels.json").is_file()
    assert main(["verify", str(out / "export"), "--keyring", keys]) == 0
