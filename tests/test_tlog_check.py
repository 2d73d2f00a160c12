"""``tlog check-consistency`` (fork detection with two diverging logs) and ``tlog proof`` / ``verify-proof``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tlog_fixtures import demo_export, log_signer, publish

from run_identity.cli import main
from run_identity.core.note import NoteSigner
from run_identity.core.tlog import TlogProof


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[bytes]]:
    """The demo's export, keyring and the 12 runs' log entries."""
    return demo_export(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return log_signer()


def _checkpoint(tmp: Path, name: str, entries: list[bytes], signer: NoteSigner) -> tuple[Path, Path]:
    """Publish ``entries`` as log ``name``; its folder and a copy of its checkpoint as a file."""
    where = tmp / name
    note = publish(where, entries, signer)
    copy = tmp / f"{name}.checkpoint"
    copy.write_bytes(note)
    return where, copy


def test_a_log_that_grew_is_consistent(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """OLD at size 5, NEW at size 12 of the same history: the RFC 9162 proof verifies, exit 0."""
    _export, _jwks, entries = demo
    _, old = _checkpoint(tmp_path, "old", entries[:5], signer)
    log, new = _checkpoint(tmp_path, "new", entries, signer)
    key = signer.verifier.vkey()
    assert main(["tlog", "check-consistency", str(old), str(new), "--tlog", str(log), "--tlog-key", key]) == 0
    out = capsys.readouterr().out
    assert out.startswith("consistent: tree size 12") and "extends tree size 5" in out
    assert main(["tlog", "check-consistency", str(new), str(new), "--tlog", str(log), "--tlog-key", key]) == 0


def test_two_diverging_logs_fork_at_the_first_differing_entry(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """A log that showed one party entries 0-9 and another a history where entry 7 was replaced: the proof
    fails, and with both tile sets the first differing entry (7) and its two runs are named."""
    _export, _jwks, entries = demo
    old_log, old = _checkpoint(tmp_path, "a", entries[:10], signer)
    forked = [*entries[:7], entries[11], *entries[8:11]]
    new_log, new = _checkpoint(tmp_path, "b", forked, signer)
    key = signer.verifier.vkey()
    args = ["tlog", "check-consistency", str(old), str(new), "--tlog", str(new_log), "--tlog-key", key]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert out.startswith("FORK: ") and "differ within their first 10 entries" in out
    assert main([*args, "--old-tlog", str(old_log)]) == 1
    out = capsys.readouterr().out
    assert "share their first 7 entries; entry 7 differs" in out
    for side, entry in (("OLD", entries[7]), ("NEW", entries[11])):
        s = json.loads(entry)["statement"]
        line = next(line for line in out.splitlines() if line.strip().startswith(side))
        assert f"run {s['trace_id']}/{s['span_id']}" in line


def test_equal_sizes_with_different_roots_fork(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """Two checkpoints of one size and two roots: a fork at the first entry they do not share."""
    _export, _jwks, entries = demo
    a_log, a = _checkpoint(tmp_path, "a", entries[:6], signer)
    b_log, b = _checkpoint(tmp_path, "b", [*entries[:5], entries[9]], signer)
    key = signer.verifier.vkey()
    argv = [
        "tlog",
        "check-consistency",
        str(a),
        str(b),
        "--tlog",
        str(b_log),
        "--tlog-key",
        key,
        "--old-tlog",
        str(a_log),
    ]
    assert main(argv) == 1
    assert "entry 5 differs" in capsys.readouterr().out


def test_checkpoints_must_verify(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """A checkpoint under another key, tiles that do not match NEW, OLD larger than NEW: errors, not verdicts."""
    _export, _jwks, entries = demo
    _, old = _checkpoint(tmp_path, "old", entries[:5], signer)
    log, new = _checkpoint(tmp_path, "new", entries, signer)
    stranger = log_signer()
    _, foreign = _checkpoint(tmp_path, "foreign", entries, stranger)
    key = signer.verifier.vkey()
    assert main(["tlog", "check-consistency", str(old), str(foreign), "--tlog", str(log), "--tlog-key", key]) == 1
    assert "does not verify under log key" in capsys.readouterr().err
    other_log, _ = _checkpoint(tmp_path, "other", [*entries[:11], entries[0]], signer)
    assert main(["tlog", "check-consistency", str(old), str(new), "--tlog", str(other_log), "--tlog-key", key]) == 1
    assert "its tiles hash to root" in capsys.readouterr().err
    assert main(["tlog", "check-consistency", str(new), str(old), "--tlog", str(log), "--tlog-key", key]) == 2
    assert "give the smaller one first" in capsys.readouterr().err


def _manifest_file(export: Path, tmp: Path, index: int) -> tuple[Path, dict[str, Any]]:
    """The ``index``-th manifest of the export, as a manifest JSON file."""
    request = json.loads((export / "manifests.jsonl").read_text().splitlines()[0])
    record = request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][index]
    path = tmp / f"manifest-{index}.json"
    path.write_text(record["body"]["stringValue"])
    return path, json.loads(record["body"]["stringValue"])["statement"]


def test_proof_of_a_run_verifies_offline(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """tlog proof writes a C2SP tlog-proof for a manifest or a run of an export; verify-proof checks it with
    the keys alone, and refuses a proof whose index or entry was changed."""
    export, jwks, entries = demo
    log, _ = _checkpoint(tmp_path, "log", entries, signer)
    key = signer.verifier.vkey()
    manifest, statement = _manifest_file(export, tmp_path, 3)
    proof = tmp_path / "run.tlog-proof"
    assert main(["tlog", "proof", str(manifest), "--tlog", str(log), "--tlog-key", key, "--out", str(proof)]) == 0
    assert proof.read_text().startswith("c2sp.org/tlog-proof@v1\nextra ")
    run = f"{statement['trace_id']}:{statement['span_id']}"
    assert main(["tlog", "proof", "--run", run, "--export", str(export), "--tlog", str(log), "--tlog-key", key]) == 0
    assert capsys.readouterr().out.endswith(proof.read_text())  # the same proof, on standard output
    verify = ["tlog", "verify-proof", str(proof), "--keyring", str(jwks), "--tlog-key", key]
    assert main(verify) == 0
    assert f"run {statement['trace_id']}/{statement['span_id']}" in capsys.readouterr().out
    assert main([*verify[:3], str(manifest), *verify[3:]]) == 0
    capsys.readouterr()
    decoded = TlogProof.decode(proof.read_bytes())
    moved = tmp_path / "moved.tlog-proof"
    moved.write_bytes(TlogProof(decoded.index + 1, decoded.proof, decoded.checkpoint, decoded.extra).encode())
    assert main(["tlog", "verify-proof", str(moved), "--keyring", str(jwks), "--tlog-key", key]) == 1
    assert "inclusion proof does not verify" in capsys.readouterr().err
    other, _ = _manifest_file(export, tmp_path, 4)
    assert main([*verify[:3], str(other), *verify[3:]]) == 1
    assert "is not the signed statement of" in capsys.readouterr().err


def test_no_proof_for_a_run_the_log_lacks(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """A run that is not in the log has no proof: one line, exit 1."""
    export, _jwks, entries = demo
    log, _ = _checkpoint(tmp_path, "log", entries[:3], signer)
    manifest, _ = _manifest_file(export, tmp_path, 5)
    assert main(["tlog", "proof", str(manifest), "--tlog", str(log), "--tlog-key", signer.verifier.vkey()]) == 1
    assert "is not in the log" in capsys.readouterr().err


def test_a_proof_carries_the_witness_cosignatures(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """The checkpoint in a proof keeps its cosignatures: verify-proof meets a witness quorum offline, and
    refuses one the checkpoint does not meet."""
    from tlog_fixtures import witness_signer

    export, jwks, entries = demo
    witness = witness_signer("witness.test/proof")
    log = tmp_path / "log"
    publish(log, entries, signer, cosigners=[witness])
    manifest, _ = _manifest_file(export, tmp_path, 0)
    proof = tmp_path / "run.tlog-proof"
    key = signer.verifier.vkey()
    assert main(["tlog", "proof", str(manifest), "--tlog", str(log), "--tlog-key", key, "--out", str(proof)]) == 0
    verify = ["tlog", "verify-proof", str(proof), "--keyring", str(jwks), "--tlog-key", key]
    assert main([*verify, "--witness-key", witness.verifier.vkey()]) == 0
    assert "witnesses cosigning: witness.test/proof" in capsys.readouterr().out
    stranger = witness_signer("witness.test/other").verifier.vkey()
    assert main([*verify, "--witness-key", stranger]) == 1
    assert "0 of 1 trusted witnesses cosigned" in capsys.readouterr().err
