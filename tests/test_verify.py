"""The verifier's library API: policy, trust, inputs, coverage, precedence of codes, and the CLI command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import verify_fixtures as vf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from run_identity.cli import main
from run_identity.core.keys import Keyring
from run_identity.verify import (
    FAILURE_CODES,
    NEVER_ALLOWED,
    RESULT_CODES,
    InputError,
    Policy,
    VerificationReport,
    Verifier,
)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    """Five identified runs, one GenAI span without a declaration and one whose composition was refused."""
    return vf.export_runs(tmp_path_factory.mktemp("verify") / "export", undeclared=1, failing=1)


def _keyring(*seeds: bytes) -> Keyring:
    return Keyring(vf.signer(s).public_key for s in (seeds or (vf.SIGNER_SEED,)))


def _verify(paths: list[Path], *, policy: Policy | None = None, **options: Any) -> VerificationReport:
    return Verifier(_keyring(), policy or Policy()).verify(paths, **options)


def _copy(export: vf.Export, target: Path) -> Path:
    shutil.copytree(export.directory, target)
    return target


# --- policy and trust -------------------------------------------------------------------------------------


def test_policy_refuses_unknown_codes() -> None:
    """A policy naming a code that does not exist is a programming error, raised at once."""
    with pytest.raises(ValueError, match="unknown result code"):
        Policy(allow={"span_gone"})


def test_policy_cannot_allow_verified_and_knows_every_failure_code() -> None:
    """Every failure code but those of an unestablished claim can be tolerated; ``verified`` is no failure."""
    allowable = set(FAILURE_CODES) - NEVER_ALLOWED
    assert Policy(allow=allowable).allow == frozenset(allowable)
    assert {"malformed", "unknown_key", "bad_signature", "identity_mismatch", "signature_unchecked"} == NEVER_ALLOWED
    for code in NEVER_ALLOWED:
        with pytest.raises(ValueError, match="cannot be allowed"):
            Policy(allow={code})
    with pytest.raises(ValueError):
        Policy(allow={"verified"})
    assert RESULT_CODES[0] == "verified" and set(RESULT_CODES[1:]) == set(FAILURE_CODES)


def test_verifier_requires_a_keyring_and_a_policy() -> None:
    """Trust is explicit: no keyring (or no policy) is refused; insecure() is the named way around it."""
    with pytest.raises(TypeError, match="insecure"):
        Verifier(None, Policy())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Policy"):
        Verifier(Keyring(), None)  # type: ignore[arg-type]
    assert not Verifier.insecure(Policy()).checks_signatures


def test_unidentified_spans_fail_unless_allowed(export: vf.Export) -> None:
    """A span whose identity was lost (run_identity.error) is unidentified, with the processor's reason; a
    model call never declared is no run unless the policy requires an identity on every model call (spec §12
    step 7); --allow tolerates them."""
    report = _verify([export.directory])
    codes = [r.code for r in report.results()]
    assert codes.count("verified") == 5 and codes.count("unidentified") == 1
    assert not report.passed and report.failed == 1
    reasons = [r.findings[0].message for r in report.results() if r.code == "unidentified"]
    assert any("parameters.bogus" in m for m in reasons)
    assert report.undeclared_spans == 1 and report.summary_json()["records"]["undeclared_spans"] == 1
    strict = _verify([export.directory], policy=Policy(require_identity=True))
    assert strict.counts["unidentified"] == 2 and strict.failed == 2 and strict.undeclared_spans == 0
    allowed = _verify([export.directory], policy=Policy(allow={"unidentified"}, require_identity=True))
    assert allowed.passed and allowed.counts["unidentified"] == 2


def test_a_key_missing_from_the_keyring_is_unknown_key(export: vf.Export) -> None:
    """The same data against a keyring that trusts another key: every identified run is unknown_key."""
    report = Verifier(_keyring(vf.OTHER_SEED), Policy(allow={"unidentified"})).verify([export.directory])
    assert report.counts["unknown_key"] == 5
    first = next(r for r in report.results() if r.code == "unknown_key")
    assert [f.step for f in first.findings] == [2, 3]


def test_insecure_checks_consistency_only_and_says_so(export: vf.Export, tmp_path: Path) -> None:
    """Without signature checks no run is verified or passes: each is signature_unchecked, and the report says
    signatures were not checked; the consistency checks still run."""
    directory = _copy(export, tmp_path / "x")
    traces = vf.read_lines(directory / "traces.jsonl")
    span = next(vf.spans_of(traces))
    vf.set_attribute(span, "run_identity.signature", "A" * 86 + "==")
    vf.write_lines(directory / "traces.jsonl", traces)
    assert _verify([directory]).counts["bad_signature"] == 1
    report = Verifier.insecure(Policy(allow={"unidentified"})).verify([directory])
    assert report.counts["verified"] == 0 and not report.passed
    assert report.counts["signature_unchecked"] == 5
    summary = report.summary_json()
    assert summary["insecure"] is True and summary["signatures_checked"] is False


def test_salted_manifests_verify_with_the_salt_and_are_noted_without(tmp_path: Path) -> None:
    """Blinded content recomputes with the deployment's salt; without it nothing vouches for the content:
    content_unchecked, which passes only when the policy names it."""
    salt = bytes(range(32))
    salted = vf.export_runs(tmp_path / "salted", vf.compositions()[:2], salt=salt)
    with_salt = Verifier(_keyring(), Policy(), salts=[salt]).verify([salted.directory])
    assert with_salt.counts["verified"] == 2
    assert all(not r.notes for r in with_salt.results())
    without = _verify([salted.directory])
    assert without.counts["content_unchecked"] == 2 and not without.passed
    assert all("not given" in r.findings[0].message for r in without.results())
    allowed = Verifier(_keyring(), Policy(allow={"content_unchecked"})).verify([salted.directory])
    assert allowed.passed and allowed.counts["verified"] == 0


def test_one_signature_verification_per_run_when_span_and_manifest_agree(export: vf.Export) -> None:
    """The span's statement equals the verified manifest's: its signature is not verified a second time."""

    class CountingKeyring(Keyring):
        calls = 0

        def verify(self, key_id: str, signature: bytes, data: bytes) -> bool:
            CountingKeyring.calls += 1
            return super().verify(key_id, signature, data)

    keys: list[Ed25519PublicKey] = [vf.signer().public_key]
    report = Verifier(CountingKeyring(keys), Policy()).verify([export.directory])
    assert report.counts["verified"] == 5
    assert CountingKeyring.calls == 5


def test_span_statements_are_judged_alike_whichever_file_is_read_first(export: vf.Export, tmp_path: Path) -> None:
    """A span's statement is validated (or vouched for by its manifest's) with the same outcome either way."""
    target = _copy(export, tmp_path / "export")
    traces = vf.read_lines(target / "traces.jsonl")
    spans = [s for s in vf.spans_of(traces) if vf.attribute(s, "run_identity.id")]
    vf.set_attribute(spans[0], "run_identity.declared_at", "2026-13-01T00:00:00.000000Z")
    vf.set_attribute(spans[1], "run_identity.spec_version", "2")
    vf.set_attribute(spans[2], "run_identity.key_id", 7)
    vf.write_lines(target / "traces.jsonl", traces)

    def outcome(paths: list[Path]) -> list[tuple[str | None, str, list[str]]]:
        results = _verify(paths).results()
        return sorted((r.span_id, r.code, [f.message for f in r.findings]) for r in results)

    manifests_first = outcome([target / "manifests.jsonl", target / "traces.jsonl"])
    assert manifests_first == outcome([target / "traces.jsonl", target / "manifests.jsonl"])
    codes = {span_id: code for span_id, code, _ in manifests_first}
    assert [codes[s["spanId"]] for s in spans[:3]] == ["malformed"] * 3
    assert list(codes.values()).count("verified") == 2


# --- codes and their precedence ---------------------------------------------------------------------------


def test_the_first_failing_step_gives_the_code_and_every_failure_is_listed(export: vf.Export, tmp_path: Path) -> None:
    """A run with a bad span signature (step 2) and edited content (step 4) is bad_signature, with both."""
    directory = _copy(export, tmp_path / "x")
    run = export.run("chat")
    traces, manifests = (
        vf.read_lines(directory / "traces.jsonl"),
        vf.read_lines(directory / "manifests.jsonl"),
    )
    vf.set_attribute(
        vf.find(vf.spans_of(traces), run.span_id), "run_identity.declared_at", "2020-01-01T00:00:00.000000Z"
    )
    record = vf.find(vf.logs_of(manifests), run.span_id)
    record["body"]["stringValue"] = record["body"]["stringValue"].replace("cargo bikes", "cargo boats")
    vf.write_lines(directory / "traces.jsonl", traces)
    vf.write_lines(directory / "manifests.jsonl", manifests)
    (result,) = [r for r in _verify([directory]).results() if r.span_id == run.span_id]
    assert result.code == "bad_signature"
    assert [f.code for f in result.findings] == ["bad_signature", "identity_mismatch", "binding_mismatch"]
    assert [f.step for f in result.findings] == [2, 4, 5]
    assert result.findings[0].location == f"{directory / 'traces.jsonl'}:1 record 1"


def test_span_missing_is_tolerated_by_policy(export: vf.Export) -> None:
    """Manifests alone (spans sampled out): span_missing, accepted when the policy allows it."""
    report = _verify([export.manifests])
    assert report.counts["span_missing"] == 5 and not report.passed
    assert _verify([export.manifests], policy=Policy(allow={"span_missing"})).passed


def test_results_carry_the_run_and_where_it_was_read(export: vf.Export) -> None:
    """A verified result names its ids, identity, key, declaration time, model and both locations."""
    run = export.run("rag")
    (result,) = [r for r in _verify([export.directory]).results() if r.span_id == run.span_id]
    doc = result.to_json()
    assert doc["code"] == "verified" and doc["passed"] is True
    assert (doc["trace_id"], doc["span_id"], doc["identity"]) == (run.trace_id, run.span_id, run.identity)
    assert doc["key_id"] == vf.signer().key_id and doc["model"] == "claude-sonnet-4-5"
    assert doc["span_location"].endswith("traces.jsonl:1 record 4")
    assert doc["manifest_locations"] == [f"{export.manifests}:1 record 4"]


# --- inputs -------------------------------------------------------------------------------------------------


def test_a_missing_path_is_an_input_error(tmp_path: Path) -> None:
    """A path that does not exist is refused before anything is read."""
    with pytest.raises(InputError, match="no such file"):
        _verify([tmp_path / "nope"])


def test_an_unrecognized_file_is_malformed_and_does_not_stop_the_rest(export: vf.Export, tmp_path: Path) -> None:
    """A stray file in the folder is one malformed result naming it; the runs still verify."""
    directory = _copy(export, tmp_path / "x")
    (directory / "notes.txt").write_text("not telemetry\n")
    report = _verify([directory], policy=Policy(allow={"unidentified"}))
    (bad,) = [r for r in report.results() if r.code == "malformed"]
    assert bad.findings[0].location == f"{directory / 'notes.txt'}@0"
    assert report.counts["verified"] == 5


def test_empty_files_blank_lines_and_crlf_are_fine(export: vf.Export, tmp_path: Path) -> None:
    """Empty files, files of blank lines only, blank lines and CRLF line ends are not records and not errors."""
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "newline.jsonl").write_bytes(b"\n")  # its first byte is also a protobuf request's first byte
    (tmp_path / "blank.jsonl").write_bytes(b"\r\n \n\t\n")
    lines = [orjson.dumps(d) for d in vf.read_lines(export.traces) + vf.read_lines(export.manifests)]
    (tmp_path / "all.jsonl").write_bytes(b"\r\n\r\n".join(lines) + b"\r\n")
    report = _verify([tmp_path], policy=Policy(allow={"unidentified"}))
    assert report.counts["verified"] == 5 and report.counts["malformed"] == 0


def test_a_byte_order_mark_is_not_an_error(export: vf.Export, tmp_path: Path) -> None:
    """A UTF-8 byte order mark before the first line (an editor's) is skipped."""
    (tmp_path / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + export.manifests.read_bytes())
    report = _verify([tmp_path / "m.jsonl", export.traces], policy=Policy(allow={"unidentified"}))
    assert report.counts["verified"] == 5 and report.counts["malformed"] == 0


def test_a_corrupt_line_is_reported_with_its_line_number(export: vf.Export, tmp_path: Path) -> None:
    """A line that is not JSON is malformed at file:line; the lines after it are still read."""
    docs = vf.rebatch(vf.read_lines(export.manifests), 1)
    text = [orjson.dumps(d).decode() for d in docs]
    text.insert(2, '{"resourceLogs": [ oops')
    (tmp_path / "m.jsonl").write_text("\n".join(text) + "\n")
    report = _verify([tmp_path / "m.jsonl", export.traces], policy=Policy(allow={"unidentified"}))
    (bad,) = [r for r in report.results() if r.code == "malformed"]
    assert bad.findings[0].location == f"{tmp_path / 'm.jsonl'}:3"
    assert report.counts["verified"] == 5


def test_other_spans_and_log_records_are_ignored_and_counted(export: vf.Export, tmp_path: Path) -> None:
    """Non-GenAI spans and ordinary log records are not runs; the tally says how many were skipped."""
    traces = vf.read_lines(export.traces)
    plain = orjson.loads(orjson.dumps(next(vf.spans_of(traces))))
    plain.update(spanId="1" * 16, attributes=[{"key": "http.method", "value": {"stringValue": "GET"}}])
    traces[0]["resourceSpans"][0]["scopeSpans"][0]["spans"].append(plain)
    logs = vf.read_lines(export.manifests)
    logs[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append({"body": {"stringValue": "hello"}})
    vf.write_lines(tmp_path / "t.jsonl", traces)
    vf.write_lines(tmp_path / "l.jsonl", logs)
    report = _verify([tmp_path], policy=Policy(allow={"unidentified"}))
    assert report.passed and report.runs == 6
    assert report.tally.ignored_spans == 1 and report.tally.ignored_log_records == 1


def test_progress_is_reported_up_to_the_total(export: vf.Export) -> None:
    """The progress callback ends at (total, total) bytes."""
    seen: list[tuple[int, int]] = []
    _verify([export.directory], progress=lambda done, total: seen.append((done, total)), chunk_size=1)
    assert len(seen) >= 2 and seen[-1][0] == seen[-1][1] > 0


def test_the_progress_bar_draws_only_on_a_terminal() -> None:
    """On a terminal the bar is drawn and cleared; elsewhere nothing is written."""
    import io

    from run_identity.verify.report import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream)
        bar(50, 100)
        bar(100, 100)
        bar.close()
    assert "verifying [" in tty.getvalue() and "100.0%" in tty.getvalue()
    assert pipe.getvalue() == ""


# --- the command ---------------------------------------------------------------------------------------


def test_cli_verify_prints_a_summary_and_a_table_of_failures(
    export: vf.Export, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 while runs fail the policy, with counts and a table row per failing run; 0 once allowed."""
    assert main(["verify", str(export.directory), "--keyring", str(export.keyring_path)]) == 1
    out = capsys.readouterr().out
    assert "verified" in out and "FAIL: 1 run of 6 fail the policy" in out
    assert out.count("\nunidentified  ") == 1
    code = main(["verify", str(export.directory), "--keyring", str(export.keyring_path), "--allow", "unidentified"])
    assert code == 0
    assert "PASS" in capsys.readouterr().out


def test_cli_verify_json_is_one_object_per_run_then_a_summary(
    export: vf.Export, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json writes JSON lines: a run object per run, the summary last."""
    args = ["verify", str(export.directory), "--keyring", str(export.keyring_path), "--json", "--jobs", "2"]
    assert main(args) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["type"] for d in lines] == ["run"] * 6 + ["summary"]
    assert lines[-1]["counts"]["verified"] == 5 and lines[-1]["passed"] is False
    assert lines[-1]["insecure"] is False


def test_cli_verify_requires_a_keyring(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --keyring: exit 2 and one line saying what is missing."""
    assert main(["verify", str(export.directory)]) == 2
    assert "--keyring JWKS is required" in capsys.readouterr().err


def test_cli_insecure_flag_is_loud(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """--insecure-skip-signatures prints a banner on stderr and marks the JSON summary."""
    main(["verify", str(export.directory), "--insecure-skip-signatures", "--json"])
    captured = capsys.readouterr()
    assert "NO SIGNATURE WAS CHECKED" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["insecure"] is True


def test_cli_user_errors_are_one_line(export: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing input or a bad keyring is one error line and exit 1, no traceback."""
    assert main(["verify", str(tmp_path / "nope"), "--keyring", str(export.keyring_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("run-identity: error:") and "no such file" in err and "Traceback" not in err
    (tmp_path / "bad.jwks").write_text("{}")
    assert main(["verify", str(export.directory), "--keyring", str(tmp_path / "bad.jwks")]) == 1
    assert "keys" in capsys.readouterr().err


def test_the_verifier_imports_nothing_from_the_sdk_side() -> None:
    """The verifier is a separate party: its modules import no SDK, processor or exporter module."""
    import ast

    import run_identity.verify

    forbidden = (
        "opentelemetry.sdk",
        "opentelemetry.exporter",
        "run_identity.otel.processor",
        "run_identity.pipeline.wiring",
        "run_identity.otel.export_file",
        "run_identity.otel.manifest_export",
        "run_identity.declare",
        "run_identity.otel.genai",
        "run_identity.otel.sampling",
    )
    package = Path(run_identity.verify.__file__).parent
    files = [*package.glob("*.py"), package.parent / "cli" / "_verify.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def _twin_runs(tmp_path: Path, **more: Any) -> vf.Export:
    """Two runs, "first" and "second", of one small composition (plus ``more`` components)."""
    composition = {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "operation": "chat",
        "messages": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
        **more,
    }
    return vf.export_runs(tmp_path / "export", [("first", composition), ("second", composition)])


def test_a_boolean_span_value_is_not_shared_with_an_equal_number(tmp_path: Path) -> None:
    """Runs share equal telemetry objects to save memory, but only of the same types: a span whose seed is
    ``true`` where its manifest says ``1`` is a telemetry mismatch even after a run whose span says ``1``
    (``True == 1`` in Python)."""
    export = _twin_runs(tmp_path, parameters={"seed": 1})
    docs = vf.read_lines(export.traces)
    second = vf.find(vf.spans_of(docs), export.runs[1].span_id)
    assert vf.attribute(second, "gen_ai.request.seed") == "1"
    vf.set_attribute(second, "gen_ai.request.seed", True)
    vf.write_lines(export.traces, docs)
    codes = vf.codes_by_label(vf.verify_with([export.directory], [vf.signer()]), export)
    assert codes == {"first": "verified", "second": "telemetry_mismatch"}


@pytest.mark.parametrize("text", ["--5", "\u00b2", "-", "5-", " 5"])
def test_an_int_value_that_is_no_decimal_integer_is_malformed(export: vf.Export, tmp_path: Path, text: str) -> None:
    """An OTLP/JSON intValue must be a decimal integer; anything else is reported, not a crash."""
    docs = vf.read_lines(export.traces)
    span = vf.find(vf.spans_of(docs), export.runs[0].span_id)
    span["attributes"] = [kv for kv in span["attributes"] if kv["key"] != "gen_ai.request.max_tokens"]
    span["attributes"].append({"key": "gen_ai.request.max_tokens", "value": {"intValue": text}})
    folder = tmp_path / "odd"
    folder.mkdir()
    vf.write_lines(folder / "traces.jsonl", docs)
    shutil.copy(export.manifests, folder / "manifests.jsonl")
    report = _verify([folder])
    assert any(r.code == "malformed" for r in report.results())


def test_an_object_valued_span_attribute_is_a_mismatch_not_a_crash(tmp_path: Path) -> None:
    """A kvlistValue where the span should carry the model name is compared like any value (and shared
    between runs like any value), never hashed as a dict."""
    export = _twin_runs(tmp_path)
    docs = vf.read_lines(export.traces)
    for run in export.runs:
        span = vf.find(vf.spans_of(docs), run.span_id)
        span["attributes"] = [kv for kv in span["attributes"] if kv["key"] != "gen_ai.request.model"]
        kvlist = {"values": [{"key": "name", "value": {"stringValue": "gpt-4o-mini"}}]}
        span["attributes"].append({"key": "gen_ai.request.model", "value": {"kvlistValue": kvlist}})
    vf.write_lines(export.traces, docs)
    report = vf.verify_with([export.directory], [vf.signer()])
    assert vf.codes_by_label(report, export) == {"first": "telemetry_mismatch", "second": "telemetry_mismatch"}
    messages = [f.message for r in report.results() for f in r.findings]
    assert "the span has gen_ai.request.model={'name': 'gpt-4o-mini'}, the manifest declares 'gpt-4o-mini'" in messages


def test_object_values_in_a_manifest_break_the_composition_rules(tmp_path: Path) -> None:
    """A tampered manifest whose model name and seed are objects breaks §2 (spec §12 step 1: malformed, the
    path named), and the verifier carries on."""
    export = _twin_runs(tmp_path, parameters={"seed": 1})
    docs = vf.read_lines(export.manifests)

    def change(manifest: dict[str, Any]) -> None:
        manifest["components"]["parameters"]["value"]["seed"] = {"a": [1, {"b": True}]}
        manifest["components"]["model"]["value"]["name"] = {"x": 1}

    vf.edit_manifest(vf.find(vf.logs_of(docs), export.runs[1].span_id), change)
    vf.write_lines(export.manifests, docs)
    report = vf.verify_with([export.directory], [vf.signer()])
    assert vf.codes_by_label(report, export) == {"first": "verified", "second": "malformed"}
    messages = [f.message for r in report.results() for f in r.findings]
    assert any("components.model.value.name" in m for m in messages), messages


def test_telemetry_keys_tell_nested_booleans_from_numbers() -> None:
    from run_identity.verify._checks import as_tuple, typed_key

    def key(value: Any) -> Any:
        return typed_key((("gen_ai.request.seed", as_tuple(value)),))

    assert key({"a": True}) != key({"a": 1})
    assert key([True]) != key([1])
    assert key({"a": [1, 2]}) == key({"a": [1, 2]})
    assert as_tuple({"b": 1, "a": [2]}) == as_tuple({"a": [2], "b": 1})
    assert as_tuple({"a": [2]}) != (("a", (2,)),)


def _repeat_model_attribute(obj: dict[str, Any]) -> None:
    obj["attributes"].append({"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}})


@pytest.mark.parametrize("encoding", ["json", "framed proto"])
def test_a_repeated_attribute_is_malformed_in_either_encoding(
    export: vf.Export, tmp_path: Path, encoding: str
) -> None:
    """Two values under one kept key on a span or a manifest record: readers disagree on which holds, so
    the record is malformed (attached to its run), in OTLP/JSON and in protobuf alike."""
    traces, manifests = vf.read_lines(export.traces), vf.read_lines(export.manifests)
    first, second = export.runs[0], export.runs[1]
    _repeat_model_attribute(vf.find(vf.spans_of(traces), first.span_id))
    _repeat_model_attribute(vf.find(vf.logs_of(manifests), second.span_id))
    folder = tmp_path / "repeated"
    folder.mkdir()
    if encoding == "json":
        vf.write_lines(folder / "traces.jsonl", traces)
        vf.write_lines(folder / "manifests.jsonl", manifests)
    else:
        vf.write_framed(folder / "traces.pb", traces)
        vf.write_framed(folder / "manifests.pb", manifests)
    report = _verify([folder])
    codes = vf.codes_by_label(report, export)
    assert codes[first.label] == "malformed" and codes[second.label] == "malformed"
    untouched = vf.codes_by_label(_verify([export.directory]), export)
    assert {k: v for k, v in codes.items() if k not in (first.label, second.label)} == {
        k: v for k, v in untouched.items() if k not in (first.label, second.label)
    }
    messages = [f.message for r in report.results() for f in r.findings if f.code == "malformed"]
    assert any("'gen_ai.request.model' appears more than once" in m for m in messages)


def test_a_repeated_attribute_on_a_log_record_of_another_kind_is_ignored(export: vf.Export, tmp_path: Path) -> None:
    manifests = vf.read_lines(export.manifests)
    other = orjson.loads(orjson.dumps(next(vf.logs_of(manifests))))
    other.pop("eventName", None)
    other["body"] = {"stringValue": "an application log"}
    other["attributes"] = [{"key": "gen_ai.system", "value": {"stringValue": s}} for s in ("a", "b")]
    manifests[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append(other)
    folder = tmp_path / "other"
    folder.mkdir()
    shutil.copy(export.traces, folder / "traces.jsonl")
    vf.write_lines(folder / "manifests.jsonl", manifests)
    vf.write_framed(tmp_path / "manifests.pb", manifests)
    for paths in ([folder], [folder / "traces.jsonl", tmp_path / "manifests.pb"]):
        report = _verify(paths)
        assert vf.codes_by_label(report, export) == vf.codes_by_label(_verify([export.directory]), export)
        assert report.tally.ignored_log_records >= 1


def test_manifest_text_that_repeats_a_member_names_where() -> None:
    from run_identity.core.errors import ManifestError
    from run_identity.core.manifest import Manifest

    text = '{"components":{"model":{"digest":"x","digest":"y"}}}'
    with pytest.raises(ManifestError, match=r"components\.model: member 'digest' appears more than once"):
        Manifest.from_json(text)


def test_a_manifest_whose_operation_is_a_list_is_checked_not_a_crash(tmp_path: Path) -> None:
    export = _twin_runs(tmp_path)
    docs = vf.read_lines(export.manifests)

    def change(manifest: dict[str, Any]) -> None:
        manifest["components"]["operation"]["value"] = [{}]

    vf.edit_manifest(vf.find(vf.logs_of(docs), export.runs[1].span_id), change)
    vf.write_lines(export.manifests, docs)
    report = vf.verify_with([export.directory], [vf.signer()])
    assert vf.codes_by_label(report, export) == {"first": "verified", "second": "malformed"}
    messages = [f.message for r in report.results() for f in r.findings]
    assert any("components.operation.value: expected a non-empty string" in m for m in messages), messages


@pytest.mark.parametrize(
    ("text", "ok"),
    [("9" * 4301, False), ("9223372036854775808", False), ("-9223372036854775809", False), ("-9223372036854775808", True)],
)
def test_an_int_value_outside_int64_is_malformed(export: vf.Export, tmp_path: Path, text: str, ok: bool) -> None:
    """OTLP's intValue is an int64: past it (even past Python's 4300-digit limit) the span is malformed."""
    docs = vf.read_lines(export.traces)
    span = vf.find(vf.spans_of(docs), export.runs[0].span_id)
    span["attributes"].append({"key": "gen_ai.usage.input_tokens", "value": {"intValue": text}})
    folder = tmp_path / "odd"
    folder.mkdir()
    vf.write_lines(folder / "traces.jsonl", docs)
    shutil.copy(export.manifests, folder / "manifests.jsonl")
    codes = vf.codes_by_label(_verify([folder]), export)
    assert codes[export.runs[0].label] == ("verified" if ok else "malformed")


def _nested(kind: str, levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "gpt-4o-mini"}
    for _ in range(levels):
        if kind == "kvlist":
            value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
        else:
            value = {"arrayValue": {"values": [value]}}
    return value


def _nested_text(levels: int) -> str:
    head = '{"kvlistValue":{"values":[{"key":"k","value":'
    return head * levels + '{"stringValue":"gpt-4o-mini"}' + "}]}}" * levels


@pytest.mark.parametrize(
    ("encoding", "kind", "levels", "code"),
    [
        *[(e, "kvlist", 3, "telemetry_mismatch") for e in ("json", "framed proto")],
        *[(e, "array", 40, "malformed") for e in ("json", "framed proto")],
        ("json", "kvlist", 40, "malformed"),  # protobuf cannot encode it: its recursion limit is 100 messages
        # Past the strict reader's 512 levels of JSON the whole line has no reading: its spans are lost to the
        # run (span_missing) and the line itself is a malformed result that says why.
        ("json", "kvlist", 190, "span_missing"),
    ],
)
def test_deeply_nested_attribute_values_are_reported_not_a_crash(
    export: vf.Export, tmp_path: Path, encoding: str, kind: str, levels: int, code: str
) -> None:
    """Values nested past 32 levels are malformed; shallower ones are compared and shown like any value."""
    docs = vf.read_lines(export.traces)
    span = vf.find(vf.spans_of(docs), export.runs[0].span_id)
    span["attributes"] = [kv for kv in span["attributes"] if kv["key"] != "gen_ai.request.model"]
    span["attributes"].append({"key": "gen_ai.request.model", "value": {"stringValue": "@@deep@@"}})
    folder = tmp_path / "deep"
    folder.mkdir()
    if encoding == "json":  # written as text: orjson writes no deeper than 254 levels, but reads 1024
        text = vf.write_lines(folder / "traces.jsonl", docs).read_text()
        nested = orjson.dumps(_nested(kind, levels)).decode() if levels < 60 else _nested_text(levels)
        (folder / "traces.jsonl").write_text(text.replace('{"stringValue":"@@deep@@"}', nested))
    else:
        span["attributes"][-1]["value"] = _nested(kind, levels)
        vf.write_framed(folder / "traces.pb", docs)
    shutil.copy(export.manifests, folder / "manifests.jsonl")
    report = _verify([folder])
    assert vf.codes_by_label(report, export)[export.runs[0].label] == code
    messages = [f.message for r in report.results() for f in r.findings]
    if code == "span_missing":
        assert any("nested too deeply" in m for m in messages)
    if code == "telemetry_mismatch":
        assert "the span has gen_ai.request.model={'k': {'k': {'k': 'gpt-4o-mini'}}}, the manifest declares" in " ".join(
            messages
        )


def test_deep_values_in_a_manifest_are_compared_without_recursing(tmp_path: Path) -> None:
    from run_identity.verify._checks import as_tuple, show_value, telemetry_mismatches

    deep: Any = "x"
    for _ in range(900):
        deep = [deep]
    frozen = as_tuple(deep)
    assert telemetry_mismatches((("gen_ai.operation.name", "chat"),), (("gen_ai.operation.name", frozen),), frozenset(), "the span has")
    assert show_value(frozen) == "[[[[[…]]]]]"
    assert frozen != as_tuple(deep)  # nothing past the depth limit is equal, even to itself


@pytest.mark.parametrize("encoding", ["json", "framed proto"])
def test_a_manifest_record_with_an_unreadable_attribute_is_malformed_at_its_run(
    export: vf.Export, tmp_path: Path, encoding: str
) -> None:
    manifests = vf.read_lines(export.manifests)
    record = vf.find(vf.logs_of(manifests), export.runs[0].span_id)
    record["attributes"].append({"key": "gen_ai.request.model", "value": _nested("array", 40)})
    folder = tmp_path / "deep"
    folder.mkdir()
    shutil.copy(export.traces, folder / "traces.jsonl")
    if encoding == "json":
        vf.write_lines(folder / "manifests.jsonl", manifests)
    else:
        vf.write_framed(folder / "manifests.pb", manifests)
    report = _verify([folder])
    assert vf.codes_by_label(report, export)[export.runs[0].label] == "malformed"
    assert all(r.trace_id is not None for r in report.results())
