"""``verify --tlog``: every run against a transparency log of signed statements (docs/spec.md §12 step 9).

The export is the demo's (12 runs, real SDK and embedded export); the logs are published with the project's
tile codecs by tests/tlog_fixtures.py, so a test can make a log lag, diverge or lie.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tlog_fixtures import ORIGIN, demo_export, log_signer, publish, witness_signer

from run_identity.cli import main
from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.core.note import NoteSigner, generate_signer
from run_identity.core.statement import BindingStatement
from run_identity.core.tlog import entry_bytes
from run_identity.verify import Policy, Verifier
from run_identity.verify.tlog import LogError, LogTrust, TransparencyLog


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[bytes]]:
    """The demo's export, keyring and the 12 runs' log entries."""
    return demo_export(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return log_signer()


def _log(tmp: Path, entries: list[bytes], signer: NoteSigner, **kw: Any) -> tuple[Path, Path]:
    where = tmp / "log"
    publish(where, entries, signer, **kw)
    vkey = tmp / "log.vkey"
    vkey.write_text(signer.verifier.vkey() + "\n")
    return where, vkey


def _verify_json(export: Path, jwks: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[Any]]:
    code = main(["verify", str(export), "--keyring", str(jwks), "--json", *extra])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines


def _runs(lines: list[Any]) -> list[Any]:
    return [line for line in lines if line["type"] == "run"]


def test_every_demo_run_is_included(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """A log holding every run: each run's inclusion proof verifies, the verification passes."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    code, lines = _verify_json(export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 0
    runs = _runs(lines)
    assert len(runs) == 12
    assert sorted(r["log"]["index"] for r in runs) == list(range(12))
    assert {r["log"]["status"] for r in runs} == {"included"} and {r["code"] for r in runs} == {"verified"}
    summary = lines[-1]["tlog"]
    assert (summary["origin"], summary["size"]) == (ORIGIN, 12)
    assert summary["runs"] == {"included": 12, "not_logged": 0, "not_checked": 0, "missing_from_export": 0}


def test_text_report_names_the_checkpoint(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """The text report names the log, its size and root, and what the log check found."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    assert main(["verify", str(export), "--keyring", str(jwks), "--tlog", str(log), "--tlog-key", str(vkey)]) == 0
    text = capsys.readouterr().out
    assert f"transparency log: {ORIGIN} at tree size 12, root " in text
    assert "runs: 12 included, 0 not logged, 0 not checked; log entries missing from the export: 0" in text


def test_a_run_left_out_of_the_log_is_not_logged(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """A run whose entry the log lacks is not_logged (step 9) and fails unless the policy allows it."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries[:4] + entries[5:], signer)
    args = ("--tlog", str(log), "--tlog-key", str(vkey))
    code, lines = _verify_json(export, jwks, *args, capsys=capsys)
    assert code == 1
    bad = [r for r in _runs(lines) if r["code"] != "verified"]
    assert [r["code"] for r in bad] == ["not_logged"] and bad[0]["log"]["status"] == "not_logged"
    assert bad[0]["findings"][0]["step"] == 9
    code, lines = _verify_json(export, jwks, *args, "--allow", "not_logged", capsys=capsys)
    assert code == 0


def test_runs_removed_from_the_export_are_missing(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """Deleting two runs' span and manifest records from an export: the log's entries name them,
    each is a missing_from_export result of its own (deletion evidence)."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    gone = [json.loads(e)["statement"] for e in (entries[2], entries[7])]
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("traces.jsonl", "manifests.jsonl"):
        text = (export / name).read_text()
        for s in gone:  # each line is one request holding every run: drop the records of the two runs
            text = _drop_run(text, s["trace_id"], s["span_id"])
        (cut / name).write_text(text)
    code, lines = _verify_json(cut, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 1
    missing = [r for r in _runs(lines) if r["code"] == "missing_from_export"]
    assert sorted((r["trace_id"], r["span_id"]) for r in missing) == sorted((s["trace_id"], s["span_id"]) for s in gone)
    assert {r["log"]["index"] for r in missing} == {2, 7}
    assert all("entry" in r["findings"][0]["location"] for r in missing)
    assert sum(r["code"] == "verified" for r in _runs(lines)) == 10
    assert lines[-1]["tlog"]["runs"]["missing_from_export"] == 2


def _drop_run(text: str, trace_id: str, span_id: str) -> str:
    out = []
    for line in text.splitlines():
        doc = json.loads(line)
        for resource in doc.get("resourceSpans", []) + doc.get("resourceLogs", []):
            for scope in resource.get("scopeSpans", []) + resource.get("scopeLogs", []):
                for kind in ("spans", "logRecords"):
                    if kind in scope:
                        scope[kind] = [
                            r for r in scope[kind] if (r.get("traceId"), r.get("spanId")) != (trace_id, span_id)
                        ]
        out.append(json.dumps(doc))
    return "\n".join(out) + "\n"


def test_the_window_limits_both_checks(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """Outside --since/--until a run need not be logged (named as a check not made) and an entry need not be
    exported; a window that holds them fails both ways."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries[1:], signer)
    first = json.loads(entries[0])["statement"]["declared_at"]
    later = "2999-01-01T00:00:00Z"
    code, lines = _verify_json(
        export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), "--since", later, capsys=capsys
    )
    assert code == 0
    left_out = [r for r in _runs(lines) if r["log"]["status"] == "not_logged"]
    assert len(left_out) == 1 and left_out[0]["declared_at"] == first and left_out[0]["code"] == "verified"
    assert any("outside the audited window" in u for u in left_out[0]["unchecked"])
    assert lines[-1]["tlog"]["entries_in_window"] == 0
    code, lines = _verify_json(
        export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), "--until", later, capsys=capsys
    )
    assert code == 1 and sum(r["code"] == "not_logged" for r in _runs(lines)) == 1


def test_a_bad_checkpoint_refuses_the_whole_verification(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """A checkpoint edited after signing, signed by another key, or absent: no verdict, exit 1, one line."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    note = (log / "checkpoint").read_bytes()
    args = ["verify", str(export), "--keyring", str(jwks), "--tlog", str(log), "--tlog-key", str(vkey)]
    (log / "checkpoint").write_bytes(note.replace(b"\n12\n", b"\n11\n", 1))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "transparency log not verified" in err and "does not verify" in err and err.count("\n") == 1
    publish(log, entries, generate_signer(ORIGIN))
    assert main(args) == 1
    assert "no valid signature by a trusted key" in capsys.readouterr().err
    (log / "checkpoint").unlink()
    assert main(args) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_entries_that_do_not_hash_to_the_root_refuse_it(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """Entry bundles that are not the signed tree (an entry swapped after the checkpoint): exit 1."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    other = tmp_path / "other"
    publish(other, [entries[1], entries[0], *entries[2:]], signer)
    (log / "tile" / "entries" / "000.p" / "12").write_bytes((other / "tile" / "entries" / "000.p" / "12").read_bytes())
    assert main(["verify", str(export), "--keyring", str(jwks), "--tlog", str(log), "--tlog-key", str(vkey)]) == 1
    assert "do not hash to the checkpoint's root" in capsys.readouterr().err


def test_witness_quorum(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """Cosignatures of trusted witnesses count toward --witness-quorum; too few refuse the verification."""
    export, jwks, entries = demo
    w1, w2, w3 = (witness_signer(f"witness.test/w{i}") for i in (1, 2, 3))
    log, vkey = _log(tmp_path, entries, signer, cosigners=[w1, w3])
    keys = []
    for w in (w1, w2):
        path = tmp_path / f"{w.name.rsplit('/', 1)[1]}.vkey"
        path.write_text(w.verifier.vkey())
        keys += ["--witness-key", str(path)]
    base = ["--tlog", str(log), "--tlog-key", str(vkey), *keys]
    code, lines = _verify_json(export, jwks, *base, "--witness-quorum", "1", capsys=capsys)
    assert code == 0
    assert [w["name"] for w in lines[-1]["tlog"]["witnesses"]] == ["witness.test/w1"]  # w3 is not trusted
    assert main(["verify", str(export), "--keyring", str(jwks), *base]) == 1  # default quorum: every key given
    assert (
        "1 of 2 trusted witnesses cosigned the checkpoint (witness.test/w1); the quorum is 2" in capsys.readouterr().err
    )


def test_a_forged_cosignature_refuses_the_checkpoint(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """A cosignature line under a trusted witness's name and key id that does not verify: exit 1."""
    export, jwks, entries = demo
    w1 = witness_signer("witness.test/w1")
    log, vkey = _log(tmp_path, entries, signer, cosigners=[w1])
    note = (log / "checkpoint").read_bytes()
    head, _, line = note.rstrip(b"\n").rpartition(b"\n")
    prefix, _, encoded = line.rpartition(b" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1  # one bit of the Ed25519 signature, after key id and timestamp
    (log / "checkpoint").write_bytes(head + b"\n" + prefix + b" " + base64.b64encode(bytes(raw)) + b"\n")
    args = ["--tlog", str(log), "--tlog-key", str(vkey), "--witness-key", w1.verifier.vkey()]
    assert main(["verify", str(export), "--keyring", str(jwks), *args]) == 1
    assert "witness witness.test/w1's cosignature does not verify" in capsys.readouterr().err


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served by http.server on 127.0.0.1 (any static file server would do)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/log"
    finally:
        server.shutdown()
        server.server_close()


def test_tiles_served_over_http(tmp_path: Path, demo: Any, signer: NoteSigner, served: Any, capsys: Any) -> None:
    """The log read from a static HTTP server on loopback gives the verdicts of the folder."""
    export, jwks, entries = demo
    root, url = served
    _log(root, entries[:11], signer)
    vkey = signer.verifier.vkey()
    code, lines = _verify_json(export, jwks, "--tlog", url, "--tlog-key", vkey, capsys=capsys)
    assert code == 1
    assert sorted(r["log"]["status"] for r in _runs(lines)) == ["included"] * 11 + ["not_logged"]
    assert lines[-1]["tlog"]["location"] == url


def test_a_large_log_of_several_producers(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """600 entries (three entry bundles, a level-1 tile): another producer's entries are not ours to miss,
    every demo run is proven at its index."""
    export, jwks, entries = demo
    other = Ed25519Signer.generate()
    foreign = []
    for i in range(588):
        s = BindingStatement(
            identity="sha256:" + "ab" * 32,
            trace_id=f"{i + 1:032x}",
            span_id=f"{i + 1:016x}",
            key_id=other.key_id,
            declared_at="2026-12-07T00:00:00.000000Z",
        )
        foreign.append(entry_bytes(s, other.sign(s.signing_input())))
    mixed = foreign[:300] + entries + foreign[300:]
    log, vkey = _log(tmp_path, mixed, signer)
    code, lines = _verify_json(export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 0, lines[-1]
    assert sorted(r["log"]["index"] for r in _runs(lines)) == list(range(300, 312))
    assert lines[-1]["tlog"]["entries_in_window"] == 600


def test_a_run_whose_signature_fails_is_not_looked_up(tmp_path: Path, demo: Any, signer: NoteSigner) -> None:
    """Without a verified signature there is no entry to look for: the log check is named as not made."""
    export, _jwks, entries = demo
    log, _vkey = _log(tmp_path, entries, signer)
    stranger = Ed25519Signer.generate()
    keyring = Keyring.from_jwks_text(json.dumps({"keys": [stranger.public_jwk()]}), source="<test>")
    report = Verifier(keyring, Policy(), log=TransparencyLog(str(log), LogTrust(signer.verifier))).verify([export])
    results = list(report.results())
    assert {r.code for r in results} == {"unknown_key"}
    assert {r.log.status for r in results if r.log} == {"not_checked"}
    assert all(any("transparency log" in u for u in r.unchecked) for r in results)
    assert report.summary_json()["tlog"]["runs"]["missing_from_export"] == 0  # entries of keys not trusted


def test_library_refuses_an_unverified_checkpoint(tmp_path: Path, demo: Any, signer: NoteSigner) -> None:
    """TransparencyLog raises LogError when the checkpoint does not verify under the trusted key."""
    _export, _jwks, entries = demo
    log, _ = _log(tmp_path, entries, signer)
    with pytest.raises(LogError, match="does not verify under log key"):
        TransparencyLog(str(log), LogTrust(generate_signer(ORIGIN).verifier))


_W = witness_signer("witness.test/usage").verifier.vkey()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tlog", "X"], "--tlog needs --tlog-key"),
        (["--tlog-key", "X"], "--tlog-key needs --tlog"),
        (["--tlog", "X", "--tlog-key", "K", "--witness-quorum", "2", "--witness-key", _W], "--witness-quorum 2: give"),
        (["--tlog", "X", "--tlog-key", "K"], "--tlog-key K: no such file"),
        (["--tlog", "X", "--tlog-key", "K", "--since", "yesterday"], "--since 'yesterday' is not an RFC 3339"),
        (["--tlog", "X", "--tlog-key", "K", "--insecure-skip-signatures"], "excludes --insecure-skip-signatures"),
    ],
)
def test_usage_errors(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any, extra: list[str], message: str
) -> None:
    """Log options that cannot work together are one line, exit 2 (or 1 for an unreadable key)."""
    export, jwks, _ = demo
    keyring = [] if "--insecure-skip-signatures" in extra else ["--keyring", str(jwks)]
    code = main(["verify", str(export), *keyring, *extra])
    err = capsys.readouterr().err
    assert code in (1, 2) and message in err and err.count("\n") == 1


def test_on_a_dask_cluster_the_verdicts_are_those_of_one_process(tmp_path: Path, demo: Any, signer: NoteSigner) -> None:
    """--tlog with --dask: steps 1-8 on a real local cluster, step 9 on the client, the same results (a run
    left out of the log, two runs removed from the export) and the same summary as one process."""
    from run_identity.verify.cluster import connect

    export, jwks, entries = demo
    extra = json.loads(entries[0])["statement"]
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("traces.jsonl", "manifests.jsonl"):
        (cut / name).write_text(_drop_run((export / name).read_text(), extra["trace_id"], extra["span_id"]))
    log, _ = _log(tmp_path, entries[:11], signer)
    keyring = Keyring.from_jwks(jwks)

    def run(client: Any) -> tuple[list[str], dict[str, Any]]:
        logged = TransparencyLog(str(log), LogTrust(signer.verifier))
        report = Verifier(keyring, Policy(), log=logged).verify([cut], dask=client)
        results = sorted(json.dumps(r.to_json(), sort_keys=True) for r in report.results())
        return results, report.summary_json()

    alone = run(None)
    client, close = connect("local:1")
    try:
        clustered = run(client)
    finally:
        close()
    assert clustered == alone
    assert alone[1]["counts"]["not_logged"] == 1 and alone[1]["counts"]["missing_from_export"] == 1


def test_a_log_read_through_fsspec(tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any) -> None:
    """A log named by an fsspec URL (file://) is read as the folder is."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    code, lines = _verify_json(export, jwks, "--tlog", log.as_uri(), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 0 and lines[-1]["tlog"]["runs"]["included"] == 12


def test_an_empty_log_and_entries_that_are_no_statement(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """An empty log (size 0, the empty tree's root) holds no run: every run is not_logged. Entries that are no
    signed statement are counted as unusable, never reported as runs missing from the export."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path / "empty", [], signer)
    code, lines = _verify_json(export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 1 and {r["code"] for r in _runs(lines)} == {"not_logged"}
    log, vkey = _log(tmp_path / "odd", [b"not json", b'{"statement": 1}', *entries], signer)
    code, lines = _verify_json(export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 0 and lines[-1]["tlog"]["unusable_entries"] == 2
    assert sorted(r["log"]["index"] for r in _runs(lines)) == list(range(2, 14))


def test_a_logged_entry_with_a_forged_signature_is_no_deletion_evidence(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """A log entry naming our key whose signature does not verify is not a missing run: it is counted as
    rejected, and the text report warns that the log appended it."""
    export, jwks, entries = demo
    forged = json.loads(entries[0])
    forged["statement"]["trace_id"] = "f" * 32
    entry = json.dumps(forged, separators=(",", ":"), sort_keys=True).encode()
    log, vkey = _log(tmp_path, [*entries, entry], signer)
    code, lines = _verify_json(export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    assert code == 0 and lines[-1]["tlog"]["rejected_entries"] == 1
    assert main(["verify", str(export), "--keyring", str(jwks), "--tlog", str(log), "--tlog-key", str(vkey)]) == 0
    assert "WARNING: 1 log entry names a trusted key but no valid signed statement" in capsys.readouterr().out


def test_a_statement_signed_again_later_is_not_the_logged_one(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """Two signed statements for one span, differing in declared_at (one signed again, back-dated): the log
    holds one, the export the other. The exported run is not_logged, and the finding names the logged entry;
    the logged statement, which the export does not hold, is missing_from_export."""
    export, jwks, entries = demo
    logged = json.loads(entries[3])["statement"]
    other = {**logged, "declared_at": "2020-01-01T00:00:00.000000Z"}
    producer = Ed25519Signer.from_file(export.parent / "keys" / "signing-key.pem")
    statement = BindingStatement.from_json(other)
    resigned = entry_bytes(statement, producer.sign(statement.signing_input()))
    log, vkey = _log(tmp_path, [*entries[:3], resigned, *entries[4:]], signer)
    code, lines = _verify_json(export, jwks, "--tlog", str(log), "--tlog-key", str(vkey), capsys=capsys)
    bad, missing = [r for r in _runs(lines) if r["code"] != "verified"]
    assert code == 1 and bad["code"] == "not_logged" and bad["span_id"] == logged["span_id"]
    assert "the log holds another statement for this span (entry 3)" in bad["findings"][0]["message"]
    assert missing["code"] == "missing_from_export" and missing["span_id"] == logged["span_id"]
    assert "the export holds this span, but not with this signed statement" in missing["findings"][0]["message"]


def test_a_log_server_that_changes_an_entry_between_reads_gets_no_verdict(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """A mirror serves the honest entry bundle first (hashed to the root) and another on the read that looks
    for runs missing from the export: the verification is refused, never passed with a deleted run hidden."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    gone = json.loads(entries[2])["statement"]
    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("traces.jsonl", "manifests.jsonl"):
        (cut / name).write_text(_drop_run((export / name).read_text(), gone["trace_id"], gone["span_id"]))
    reads: dict[str, int] = {}

    class Lying(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if "tile/entries" in self.path:
                reads[self.path] = reads.get(self.path, 0) + 1
                if reads[self.path] > 1:  # the second read: one byte of entry 2's signature flipped
                    data = bytearray((log / self.path.lstrip("/")).read_bytes())
                    at = -1
                    for _ in range(3):
                        at = data.find(b'"signature":"', at + 1)
                    data[at + 14] ^= 1
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(bytes(data))
                    return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Lying, directory=str(log)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        capsys.readouterr()
        code = main(["verify", str(cut), "--keyring", str(jwks), "--tlog", url, "--tlog-key", str(vkey)])
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and max(reads.values()) == 2
    assert "entry 2 read again is not the entry hashed to the checkpoint's root" in capsys.readouterr().err


def test_a_logged_statement_the_export_replaced_is_missing_whatever_the_window(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """The producer re-signs a logged run back-dated to 2020, logs that too, and exports only the new one:
    the exported run is included, and the log's original statement, which the export does not hold, is
    missing_from_export, with no window and with a window that leaves the back-dated one out."""
    export, jwks, entries = demo
    original = json.loads(entries[3])
    producer = Ed25519Signer.from_file(export.parent / "keys" / "signing-key.pem")
    backdated = BindingStatement.from_json({**original["statement"], "declared_at": "2020-01-01T00:00:00.000000Z"})
    new_signature = producer.sign(backdated.signing_input())
    log, vkey = _log(tmp_path, [*entries, entry_bytes(backdated, new_signature)], signer)
    forged = tmp_path / "forged"
    forged.mkdir()
    encoded = base64.b64encode(new_signature).decode("ascii")
    for name in ("traces.jsonl", "manifests.jsonl"):
        text = (export / name).read_text()
        text = text.replace(original["statement"]["declared_at"], backdated.declared_at)
        (forged / name).write_text(text.replace(original["signature"], encoded))
    for window in ((), ("--since", "2025-01-01T00:00:00Z")):
        code, lines = _verify_json(forged, jwks, "--tlog", str(log), "--tlog-key", str(vkey), *window, capsys=capsys)
        (missing,) = [r for r in _runs(lines) if r["code"] == "missing_from_export"]
        assert code == 1 and missing["log"]["index"] == 3, window
        assert missing["span_id"] == original["statement"]["span_id"]


def test_a_span_that_lost_its_identity_does_not_hide_its_logged_statement(
    tmp_path: Path, demo: Any, signer: NoteSigner, capsys: Any
) -> None:
    """A logged run exported as a span with run_identity.error (its run_identity.* attributes gone) and no
    manifest: even where the policy tolerates unidentified, the log's signed statement for that span is
    missing_from_export."""
    export, jwks, entries = demo
    log, vkey = _log(tmp_path, entries, signer)
    statement = json.loads(entries[3])["statement"]
    out = tmp_path / "lost"
    out.mkdir()
    manifests = _drop_run((export / "manifests.jsonl").read_text(), statement["trace_id"], statement["span_id"])
    (out / "manifests.jsonl").write_text(manifests)
    lines = []
    for line in (export / "traces.jsonl").read_text().splitlines():
        doc = json.loads(line)
        for resource in doc["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    if (span["traceId"], span["spanId"]) == (statement["trace_id"], statement["span_id"]):
                        kept = [a for a in span["attributes"] if not a["key"].startswith("run_identity.")]
                        span["attributes"] = [*kept, {"key": "run_identity.error", "value": {"stringValue": "lost"}}]
        lines.append(json.dumps(doc))
    (out / "traces.jsonl").write_text("\n".join(lines) + "\n")
    code, results = _verify_json(
        out, jwks, "--tlog", str(log), "--tlog-key", str(vkey), "--allow", "unidentified", capsys=capsys
    )
    (missing,) = [r for r in _runs(results) if r["code"] == "missing_from_export"]
    assert code == 1 and missing["span_id"] == statement["span_id"] and missing["log"]["index"] == 3
