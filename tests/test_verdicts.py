"""Verdicts that never claim more than was checked: each test reproduces one attack on the verifier's verdict
(exact result code and exit status, for ``verify``, ``show`` and the library alike). The record-level
forgeries are cases of the tamper suite (tests/test_tamper.py); these are the ones that need a salted run,
the CLI, another encoding, or the whole suite."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import orjson
import pytest
import test_tamper as tt
import verify_fixtures as vf
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from run_identity.cli import main
from run_identity.core.keys import Keyring
from run_identity.core.strict_json import StrictJsonError, loads_strict
from run_identity.verify import Policy, Verifier
from run_identity.verify._requests import BadRequest, decode_protobuf

SALT = bytes(range(32))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    return vf.export_runs(tmp_path_factory.mktemp("pristine") / "export")


@pytest.fixture(scope="module")
def salted(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    return vf.export_runs(tmp_path_factory.mktemp("salted") / "export", vf.compositions()[:2], salt=SALT)


def _keyring() -> Keyring:
    return Keyring([vf.signer().public_key])


def _verify(paths: list[Path], **policy: object) -> list[tuple[str | None, str, bool]]:
    report = Verifier(_keyring(), Policy(**policy)).verify(paths)  # type: ignore[arg-type]
    return [(r.span_id, r.code, r.passed) for r in report.results()]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --- 1. the salt is signed, and unchecked content is never "verified" -------------------------------------


def test_a_salted_run_signs_its_salt_id(salted: vf.Export) -> None:
    """The span and the manifest statement carry the salt id; with the salt the runs verify."""
    records = list(vf.spans_of(vf.read_lines(salted.traces)))
    assert all(vf.attribute(span, "run_identity.salt_id") for span in records)
    doc = orjson.loads(vf.manifest_bodies(salted.manifests)[0])
    assert doc["statement"]["salt_id"] == doc["salt_id"]
    report = Verifier(_keyring(), Policy(), salts=[SALT]).verify([salted.directory])
    assert report.counts["verified"] == 2 and report.passed


def test_swapping_the_salt_id_of_a_salted_run_fails_even_with_the_salt(
    salted: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another salt id in the manifest (one the verifier knows, so it would recompute) is identity_mismatch."""
    other = bytes(range(1, 33))
    t = vf.tamper_copy(salted, tmp_path / "export")
    label = salted.runs[0].label
    doc = t.manifest(label)
    doc["salt_id"] = "sha256:" + __import__("hashlib").sha256(b"run-identity/v1/salt-id\x00" + other).hexdigest()
    t.set_manifest(label, doc)
    t.save()
    codes = dict(
        (r.span_id, r.code)
        for r in Verifier(_keyring(), Policy(), salts=[SALT, other]).verify([t.directory]).results()
    )
    assert codes[salted.runs[0].span_id] == "identity_mismatch"
    (tmp_path / "salt.hex").write_text(SALT.hex())
    keyring = vf.write_keyring(tmp_path / "k.jwks", vf.signer())
    code, out = _cli(capsys, "verify", str(t.directory), "--keyring", str(keyring), "--salt-file", str(tmp_path / "salt.hex"))
    assert code == 1 and "identity_mismatch" in out and "PASS" not in out


def test_salted_content_without_the_salt_is_content_unchecked_everywhere(
    salted: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No salt given: verify, show (by run and as a manifest file) and the JSON all say content_unchecked,
    exit 1; the policy may accept it by name, and then the run passes but is still not 'verified'."""
    keyring = str(salted.keyring_path)
    code, out = _cli(capsys, "verify", str(salted.directory), "--keyring", keyring)
    assert code == 1 and "content_unchecked" in out and "PASS" not in out
    code, out = _cli(capsys, "verify", str(salted.directory), "--keyring", keyring, "--allow", "content_unchecked")
    assert code == 0 and "every run passes the policy" in out and "every run verified" not in out
    run = salted.runs[0]
    code, out = _cli(capsys, "show", run.identity, "--in", str(salted.directory), "--keyring", keyring)
    assert code == 1 and "content_unchecked" in out and "VERIFIED" not in out
    manifest_file = tmp_path / "m.json"
    manifest_file.write_text(vf.manifest_bodies(salted.manifests)[0])
    code, out = _cli(capsys, "show", str(manifest_file), "--keyring", keyring)
    assert code == 1 and "content_unchecked" in out and "VERIFIED" not in out
    code, out = _cli(capsys, "verify", str(salted.directory), "--keyring", keyring, "--json")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {d["code"] for d in lines if d["type"] == "run"} == {"content_unchecked"}


def test_an_unsigned_salt_id_on_a_manifest_file_is_not_verified(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The attack of the issue on ``show FILE``: content rewritten, a salt id added; not VERIFIED, exit 1."""
    doc = orjson.loads(vf.manifest_bodies(pristine.manifests)[0])
    doc["components"]["parameters"]["value"]["temperature"] = 0.9
    doc["salt_id"] = "sha256:" + "0" * 64
    (tmp_path / "m.json").write_text(json.dumps(doc))
    code, out = _cli(capsys, "show", str(tmp_path / "m.json"), "--keyring", str(pristine.keyring_path))
    assert code == 1 and "identity_mismatch" in out and "VERIFIED" not in out


# --- 2. the requested model comes from signed data only ------------------------------------------------------


def test_a_withheld_model_and_a_receipt_without_request_model_name_the_check_not_made(
    pristine: vf.Export, tmp_path: Path
) -> None:
    """Model withheld, the span claiming the served model, a receipt naming no requested model: the span's
    model is never taken as the requested one; the substitution check is named as not made."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    doc = t.manifest("chat")
    doc["components"]["model"] = {"digest": doc["components"]["model"]["digest"], "withheld": True}
    t.set_manifest("chat", doc)
    vf.set_attribute(t.span("chat"), "gen_ai.request.model", "gpt-3.5-turbo")
    t.add_receipt("chat", request_model=None, response_model="gpt-3.5-turbo")
    t.save()
    report = Verifier(_keyring(), Policy()).verify([t.directory])
    (chat,) = [r for r in report.results() if r.span_id == pristine.run("chat").span_id]
    assert chat.withheld == ("model",)
    assert any("model substitution" in u for u in chat.unchecked)
    assert any("gen_ai.request.model" in u for u in chat.unchecked)
    strict = Verifier(_keyring(), Policy(require_content={"model"})).verify([t.directory])
    (chat,) = [r for r in strict.results() if r.span_id == pristine.run("chat").span_id]
    assert (chat.code, chat.passed) == ("content_withheld", False)


# --- 3. withholding never turns a check off silently ----------------------------------------------------------


def test_withheld_model_and_parameters_are_listed_and_can_be_required(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The span claims another model and temperature while the manifest withholds both: every report
    (JSON, text, show) lists what was withheld and which checks were not made; --require-content fails it."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    doc = t.manifest("chat")
    for name in ("model", "parameters"):
        doc["components"][name] = {"digest": doc["components"][name]["digest"], "withheld": True}
    t.set_manifest("chat", doc)
    vf.set_attribute(t.span("chat"), "gen_ai.request.model", "gpt-5")
    vf.set_attribute(t.span("chat"), "gen_ai.request.temperature", 1.5)
    t.save()
    keyring = str(pristine.keyring_path)
    code, out = _cli(capsys, "verify", str(t.directory), "--keyring", keyring, "--json")
    (chat,) = [json.loads(x) for x in out.splitlines() if pristine.run("chat").span_id in x]
    assert chat["withheld"] == ["model", "parameters"]
    assert len(chat["unchecked"]) == 2 and code == 0
    code, out = _cli(capsys, "verify", str(t.directory), "--keyring", keyring)
    assert "checks that could not be made" in out and "withheld: model, parameters" in out
    assert "not checked: parameters withheld" in out
    code, out = _cli(capsys, "show", pristine.run("chat").identity, "--in", str(t.directory), "--keyring", keyring)
    assert code == 0 and "withheld     model, parameters" in out and "not checked" in out
    code, out = _cli(
        capsys, "verify", str(t.directory), "--keyring", keyring, "--require-content", "model,parameters"
    )
    assert code == 1 and "content_withheld" in out


# --- 5. verdicts never depend on record order ---------------------------------------------------------------


def _shuffled(directory: Path, seed: int) -> None:
    """Every record in a request of its own, the requests of each file in a random order."""
    for name in ("traces.jsonl", "manifests.jsonl"):
        path = directory / name
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        docs = []
        for line in lines:
            try:
                doc = loads_strict(line)
            except StrictJsonError:
                docs.append(line)  # a line with no single reading stays as it is
                continue
            if "resourceSpans" in doc and "resourceLogs" in doc:
                docs.append(line)
            else:
                docs.extend(vf.rebatch([doc], 1))
        random.Random(seed).shuffle(docs)
        path.write_text("".join((d if isinstance(d, str) else orjson.dumps(d).decode()) + "\n" for d in docs))


def _signature(report_paths: list[Path], signers: list[vf.Ed25519Signer], export: vf.Export) -> dict[str, object]:
    report = vf.verify_with(report_paths, signers)
    labels = {(r.trace_id, r.span_id): r.label for r in export.runs}
    out: dict[str, object] = {}
    extra = []
    for result in report.results():
        key = labels.get((result.trace_id, result.span_id))
        value = (result.code, tuple(sorted({f.code for f in result.findings})))
        if key is None:
            extra.append(value)
        else:
            out[key] = value
    out["+"] = sorted(extra)
    return out


@pytest.mark.parametrize(("name", "tamper", "expected"), tt.CASES, ids=[c[0] for c in tt.CASES])
def test_every_tampering_gets_the_same_codes_in_any_record_order(
    pristine: vf.Export, tmp_path: Path, name: str, tamper: vf.TamperFn, expected: dict[str, str]
) -> None:
    """Each tampering of the suite, its records split one per request and shuffled (three orders): the same
    code and the same set of finding codes for every run."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    tamper(t)
    t.save()
    want = _signature([t.directory], t.keyring_signers, pristine)
    for seed in range(3):
        copy = tmp_path / f"shuffled-{seed}"
        shutil.copytree(t.directory, copy)
        _shuffled(copy, seed)
        assert _signature([copy], t.keyring_signers, pristine) == want, seed


# --- 6. records never disappear -------------------------------------------------------------------------------


def test_protobuf_bytes_that_decode_as_both_requests_with_records_are_malformed() -> None:
    """A logs request whose record also reads as a span: neither reading is taken, nothing is dropped."""
    record = LogRecord(body=AnyValue(string_value="x"), severity_text="INFO")
    data = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    ).SerializeToString()
    found = decode_protobuf(data, 0)
    assert isinstance(found, BadRequest) and "both" in found.message


# --- 8. no option turns a failed signature into a pass --------------------------------------------------------


def test_no_option_accepts_a_missing_unknown_or_bad_signature(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--allow unknown_key / bad_signature / malformed / identity_mismatch are usage errors (exit 2); the
    insecure mode labels every run signature_unchecked and exits 1."""
    keyring = str(pristine.keyring_path)
    for code_name in ("unknown_key", "bad_signature", "malformed", "identity_mismatch", "signature_unchecked"):
        code, _ = _cli(capsys, "verify", str(pristine.directory), "--keyring", keyring, "--allow", code_name)
        assert code == 2, code_name
    code, out = _cli(capsys, "verify", str(pristine.directory), "--insecure-skip-signatures")
    assert code == 1 and "signature_unchecked" in out and "PASS" not in out
    with pytest.raises(ValueError, match="cannot be allowed"):
        Policy(allow={"bad_signature"})


# --- 9. show says what verify says ---------------------------------------------------------------------------


def test_show_exits_as_verify_judges_each_run_over_the_whole_tamper_suite(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For every tampering and every run: show's exit status is verify's verdict on that run, and show names
    the same code."""
    keyring = vf.write_keyring(tmp_path / "k.jwks", vf.signer())
    checked = 0
    for i, (_, tamper, _expected) in enumerate(tt.CASES):
        t = vf.tamper_copy(pristine, tmp_path / f"e{i}")
        tamper(t)
        t.save()
        if [s.key_id for s in t.keyring_signers] != [vf.signer().key_id]:
            continue
        results = {(r.trace_id, r.span_id): r for r in vf.verify_with([t.directory], t.keyring_signers).results()}
        for run in pristine.runs:
            result = results.get((run.trace_id, run.span_id))
            if result is None:
                continue
            selector = f"{run.trace_id}/{run.span_id}"
            code, out = _cli(capsys, "show", selector, "--in", str(t.directory), "--keyring", str(keyring))
            assert code == (0 if result.passed else 1), (i, run.label, result.code, out[-400:])
            assert (result.code.upper() if result.verified else result.code) in out, (tt.CASES[i][0], run.label)
            checked += 1
    assert checked > 300


def test_show_reports_the_receipt_and_a_substitution(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = vf.tamper_copy(pristine, tmp_path / "export")
    t.add_receipt("chat", response_model="gpt-3.5-turbo")
    t.save()
    run = pristine.run("chat")
    code, out = _cli(capsys, "show", run.identity, "--in", str(t.directory), "--keyring", str(pristine.keyring_path))
    assert code == 1 and "model_substituted" in out
    assert "served     gpt-3.5-turbo" in out and "output     sha256:" in out


# --- 10. nothing checked is not a pass ------------------------------------------------------------------------


def test_an_empty_input_fails_unless_allowed_and_expect_counts_runs(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    keyring = str(pristine.keyring_path)
    code, out = _cli(capsys, "verify", str(empty), "--keyring", keyring)
    assert code == 1 and "no run found" in out and "PASS" not in out
    assert _cli(capsys, "verify", str(empty), "--keyring", keyring, "--allow-empty")[0] == 0
    directory = str(pristine.directory)
    assert _cli(capsys, "verify", directory, "--keyring", keyring, "--expect", "5")[0] == 0
    code, out = _cli(capsys, "verify", directory, "--keyring", keyring, "--expect", "6")
    assert code == 1 and "expected exactly 6" in out
    assert _cli(capsys, "verify", directory, "--keyring", keyring, "--expect", "3+")[0] == 0
    assert _cli(capsys, "verify", directory, "--keyring", keyring, "--expect", "9+")[0] == 1
    assert _cli(capsys, "verify", directory, "--keyring", keyring, "--expect", "many")[0] == 2
    assert not Verifier(_keyring(), Policy()).verify([empty]).passed


# --- 11. untrusted text never reaches a terminal raw ----------------------------------------------------------


def test_escape_sequences_in_untrusted_text_are_shown_escaped(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error attribute and signed content holding ANSI escapes and a fake PASS line: verify and show print
    them with the control characters visible, never raw."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    span = t.span("nfc")
    span["attributes"] = [kv for kv in span["attributes"] if not kv["key"].startswith("run_identity.")]
    vf.set_attribute(span, "run_identity.error", "\x1b[2J\x1b[H\nPASS: every run verified\u202e")
    t.save()
    keyring = str(pristine.keyring_path)
    code, out = _cli(capsys, "verify", str(t.directory), "--keyring", keyring)
    assert code == 1 and "\x1b" not in out and "\\x1b[2J" in out and "\u202e" not in out
    assert "\nPASS" not in out
    composition = {
        "model": {"provider": "openai", "name": "gpt-4o-mini\x1b[31m"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "hi\x1b]0;owned\x07\nline two\x9b2J"}]}],
    }
    export = vf.export_runs(tmp_path / "esc", [("esc", composition)])
    code, out = _cli(
        capsys, "show", export.runs[0].identity, "--in", str(export.directory), "--keyring", str(export.keyring_path)
    )
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "\\x1b]0;owned\\x07" in out and "\\x9b2J" in out and "line two" in out


# --- 12. bounded memory on bad input -------------------------------------------------------------------------


def test_a_file_of_garbage_gives_a_bounded_number_of_results(pristine: vf.Export, tmp_path: Path) -> None:
    """100,000 unreadable lines: the first 20 are results of their own, the rest counted in one more."""
    (tmp_path / "bad.jsonl").write_bytes(b"{]\n" * 100_000)
    report = Verifier(_keyring(), Policy()).verify([tmp_path / "bad.jsonl"], chunk_size=64 << 10)
    results = list(report.results())
    assert len(results) == 21 and all(r.code == "malformed" for r in results)
    assert "99,980 more unreadable records" in results[-1].findings[0].message
    assert not report.passed
    # Lines of a lone "{" are not one JSON document spread over lines (a pretty-printed file): lines again.
    (tmp_path / "braces.jsonl").write_bytes(b"{\n" * 100_000)
    assert len(list(Verifier(_keyring(), Policy()).verify([tmp_path / "braces.jsonl"]).results())) == 21


# --- receipt and manifest files among the inputs (issue 14, command-line habits) --------------------------


def test_receipt_and_manifest_files_are_inputs_not_malformed(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receipt.json (one line or pretty-printed) and a manifest.json beside the export are read as the records
    they would travel in; ``verify`` and ``show`` check a receipt file on its own too."""
    from run_identity.core.receipt import sign_receipt

    run = pristine.run("chat")
    receipt = sign_receipt(
        vf.signer(),
        identity=run.identity,
        trace_id=run.trace_id,
        span_id=run.span_id,
        output=[{"role": "assistant", "parts": [{"type": "text", "content": "Yes."}]}],
        finish_reasons=["stop"],
        request_model="gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
    )
    folder = tmp_path / "export"
    shutil.copytree(pristine.directory, folder)
    (folder / "receipt.json").write_bytes(receipt.to_json_bytes())
    pretty = tmp_path / "pretty-receipt.json"
    pretty.write_text(json.dumps(receipt.to_json(), indent=2))
    (folder / "manifest.json").write_text(json.dumps(json.loads(vf.manifest_bodies(pristine.manifests)[0]), indent=2))
    keyring = str(pristine.keyring_path)
    code, out = _cli(capsys, "verify", str(folder), str(pretty), "--keyring", keyring, "--json")
    runs = [json.loads(x) for x in out.splitlines() if x.startswith('{"type":"run"')]
    assert code == 0 and {r["code"] for r in runs} == {"verified"} and len(runs) == 5
    (chat,) = [r for r in runs if r["span_id"] == run.span_id]
    assert len(chat["receipt_locations"]) == 1  # the same receipt twice counts once
    code, out = _cli(capsys, "show", str(pretty), "--keyring", keyring)
    assert code == 0 and "served     gpt-4o-mini-2024-07-18" in out
    forged = receipt.to_json()
    forged["output"][0]["parts"][0]["content"] = "No."
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out = _cli(capsys, "show", str(tmp_path / "forged.json"), "--keyring", keyring)
    assert code == 1 and "identity_mismatch" in out
    code, out = _cli(capsys, "verify", str(tmp_path / "forged.json"), "--keyring", keyring)
    assert code == 1 and "identity_mismatch" in out


# --- serve's running summary says what verify says --------------------------------------------------------


def _post_line(url: str, line: bytes) -> int:
    import urllib.error
    import urllib.request

    kind = "traces" if b'"resourceSpans"' in line[:64] or b'"resource_spans"' in line[:64] else "logs"
    request = urllib.request.Request(f"{url}/v1/{kind}", data=line, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_summarizes_every_tampering_as_verify_judges_what_it_stored(pristine: vf.Export, tmp_path: Path) -> None:
    """Every tampering of the suite sent to ``serve`` line by line: whatever serve acknowledged (200), its
    running summary gives the same verdict, counts and failures as ``verify`` over the files it wrote; a
    line serve refuses (4xx: ambiguous or malformed) is never acknowledged."""
    from run_identity.pipeline.serve import start_server, verification_summarizer

    refused = compared = 0
    for i, (name, tamper, _expected) in enumerate(tt.CASES):
        t = vf.tamper_copy(pristine, tmp_path / f"e{i}")
        tamper(t)
        t.save()
        signers = t.keyring_signers
        keyring = Keyring([s.public_key for s in signers])
        handle = start_server(tmp_path / f"serve{i}", summarize=verification_summarizer(keyring))
        try:
            statuses = [
                _post_line(handle.url, line)
                for path in (t.directory / "traces.jsonl", t.directory / "manifests.jsonl")
                for line in path.read_bytes().splitlines()
                if line.strip()
            ]
            summary = handle.summary()["verification"]
        finally:
            handle.stop()
        assert set(statuses) <= {200, 400, 413}, (name, statuses)
        refused += statuses.count(400)
        direct = Verifier(keyring, Policy()).verify([tmp_path / f"serve{i}"]).summary_json()
        assert (summary["passed"], summary["runs"], summary["counts"]) == (
            direct["passed"],
            direct["runs"],
            direct["counts"],
        ), name
        if 400 not in statuses:  # everything acknowledged: the verdicts are those of the data as sent
            sent = vf.verify_with([t.directory], signers).summary_json()
            assert summary["passed"] == sent["passed"], name
            assert summary["passed"] is (set(_expected.values()) <= {"verified"}), name
            compared += 1
    assert compared >= 60 and refused >= 1


def test_serve_with_nothing_received_has_not_passed(tmp_path: Path) -> None:
    """No run received is no pass in serve's running summary either (it used to say "passed: 0 runs")."""
    from run_identity.pipeline.serve import start_server, verification_summarizer

    handle = start_server(tmp_path / "out", summarize=verification_summarizer(_keyring()))
    try:
        verification = handle.summary()["verification"]
    finally:
        handle.stop()
    assert verification["passed"] is False and verification["runs"] == 0
    assert "no run found" in verification["count_problem"]


# --- found by an attacker's review of this change ----------------------------------------------------------


def test_many_copies_of_one_span_are_collected_in_linear_time(
    pristine: vf.Export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 spans at one run's ids, each other: each copy's key is computed a bounded number of times (the
    old pairwise comparison made it quadratic: a 3 MB input took minutes)."""
    from run_identity.verify._checks import SpanSummary

    calls = 0
    real = SpanSummary.same_key

    def counted(self: SpanSummary) -> object:
        nonlocal calls
        calls += 1
        return real(self)

    monkeypatch.setattr(SpanSummary, "same_key", counted)
    spans = [
        {"traceId": "11" * 16, "spanId": "22" * 8, "attributes": [
            {"key": "run_identity.error", "value": {"stringValue": str(i)}}]}
        for i in range(5000)
    ]  # fmt: skip
    (tmp_path / "s.jsonl").write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}) + "\n")
    report = Verifier(_keyring(), Policy()).verify([tmp_path / "s.jsonl"])
    (result,) = report.results()
    assert result.code == "binding_mismatch" and calls <= 3 * 5000


@pytest.mark.parametrize("forged_first", [False, True])
def test_a_forged_output_riding_on_an_honest_receipts_signature_fails_in_either_order(
    pristine: vf.Export, tmp_path: Path, forged_first: bool
) -> None:
    t = vf.tamper_copy(pristine, tmp_path / "export")
    honest = t.add_receipt("chat")
    forged = json.loads(json.dumps(honest))
    body = json.loads(forged["body"]["stringValue"])
    body["output"][0]["parts"][0]["content"] = "FORGED OUTPUT: refund approved"
    forged["body"]["stringValue"] = json.dumps(body)
    t.manifests.append({"resourceLogs": [{"scopeLogs": [{"logRecords": [forged]}]}]})
    if forged_first:
        t.manifests[-1], t.manifests[-2] = t.manifests[-2], t.manifests[-1]
    t.save()
    codes = vf.codes_by_label(vf.verify_with([t.directory], t.keyring_signers), pristine)
    assert codes["chat"] == "identity_mismatch"


def test_a_span_stripped_of_its_identity_is_not_taken_for_a_sampled_out_one(
    pristine: vf.Export, tmp_path: Path
) -> None:
    """No run_identity.* and no operation left, but a gen_ai.* attribute: the span is there, so the run is
    binding_mismatch, which --allow span_missing does not accept."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    span = t.span("chat")
    span["attributes"] = [
        kv for kv in span["attributes"] if not kv["key"].startswith("run_identity.") and kv["key"] != "gen_ai.operation.name"
    ]
    vf.set_attribute(span, "gen_ai.request.model", "claude-opus-4")
    t.save()
    report = Verifier(_keyring(), Policy(allow={"span_missing"})).verify([t.directory])
    codes = vf.codes_by_label(report, pristine)
    assert codes["chat"] == "binding_mismatch" and not report.passed


def test_receipt_checks_that_cannot_be_made_are_named_and_record_ids_are_checked(
    pristine: vf.Export, tmp_path: Path
) -> None:
    """A salted receipt without its salt is content_unchecked; a receipt naming no response model says the
    substitution check was not made; a receipt record without ids, or whose run_identity.* attributes differ
    from its statement, is binding_mismatch."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    t.add_receipt("chat", salt=bytes(range(16)))
    t.add_receipt("rag", request_model="claude-sonnet-4-5", response_model=None)
    record = t.add_receipt("tools")
    del record["traceId"], record["spanId"]
    other = t.add_receipt("nfc")
    vf.set_attribute(other, "run_identity.id", t.export.run("rag").identity)
    t.save()
    results = {r.span_id: r for r in Verifier(_keyring(), Policy()).verify([t.directory]).results()}
    assert results[pristine.run("chat").span_id].code == "content_unchecked"
    rag = results[pristine.run("rag").span_id]
    assert rag.code == "verified" and any("names no response model" in u for u in rag.unchecked)
    assert results[pristine.run("tools").span_id].code == "binding_mismatch"
    assert results[pristine.run("nfc").span_id].code == "binding_mismatch"


def test_a_repeated_event_name_attribute_is_malformed_not_ignored(pristine: vf.Export, tmp_path: Path) -> None:
    """A record whose only event name is an event.name attribute given twice (ours, then another): which one
    holds decides whether it is read at all, so it is malformed."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    record = json.loads(json.dumps(t.record("chat")))
    record.pop("eventName", None)
    record["attributes"] += [
        {"key": "event.name", "value": {"stringValue": "run_identity.manifest"}},
        {"key": "event.name", "value": {"stringValue": "something.else"}},
    ]
    t.manifests.append({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
    t.save()
    codes = vf.codes_by_label(vf.verify_with([t.directory], t.keyring_signers), pristine)
    assert codes["chat"] == "malformed"


def test_json_output_escapes_what_a_terminal_acts_on(
    pristine: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = vf.tamper_copy(pristine, tmp_path / "export")
    span = t.span("nfc")
    span["attributes"] = [kv for kv in span["attributes"] if not kv["key"].startswith("run_identity.")]
    vf.set_attribute(span, "run_identity.error", "\u202ePASS\x9b2J\x1b[H")
    t.save()
    code, out = _cli(capsys, "verify", str(t.directory), "--keyring", str(pristine.keyring_path), "--json")
    assert code == 1 and "\u202e" not in out and "\x9b" not in out and "\x1b" not in out
    assert any("\u202ePASS" in json.dumps(json.loads(line), ensure_ascii=False) for line in out.splitlines())


def test_diff_does_not_call_salted_runs_identical(salted: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """Equal stated identities of salted manifests prove nothing without recomputing: exit 1, said so."""
    run = salted.runs[0]
    code, out = _cli(capsys, "diff", run.identity, f"{run.trace_id}/{run.span_id}", "--in", str(salted.directory))
    assert code == 1 and "not established: A is salted" in out
