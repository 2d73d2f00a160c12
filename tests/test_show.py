"""``show``: a run's manifest, readable, with its verification status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import verify_fixtures as vf

from run_identity.cli import main


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    """The fixture runs exported by the SDK pipeline."""
    return vf.export_runs(tmp_path_factory.mktemp("show") / "export")


def test_show_prints_the_manifest_and_its_verdict(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """Header, VERIFIED status and every component's content, by identity prefix."""
    rag = export.run("rag")
    assert main(["show", rag.identity[:16], "--in", str(export.directory), "--keyring", str(export.keyring_path)]) == 0
    out = capsys.readouterr().out
    assert f"run          {rag.trace_id}/{rag.span_id}" in out
    assert "status       VERIFIED" in out
    assert "model        anthropic claude-sonnet-4-5" in out
    assert "kb-101  https://kb.example/warranty" in out and "What is the warranty on frames?" in out


def test_show_reports_a_failing_run_with_its_findings(
    export: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose span was edited: FAILED with the code, the finding and where it was read; exit 1."""
    directory = tmp_path / "x"
    shutil.copytree(export.directory, directory)
    chat = export.run("chat")
    traces = vf.read_lines(directory / "traces.jsonl")
    vf.set_attribute(vf.find(vf.spans_of(traces), chat.span_id), "gen_ai.request.model", "gpt-5")
    vf.write_lines(directory / "traces.jsonl", traces)
    args = [
        "show",
        f"{chat.trace_id}:{chat.span_id}",
        "--in",
        str(directory),
        "--keyring",
        str(export.keyring_path),
    ]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "status       FAILED: telemetry_mismatch" in out
    assert "gen_ai.request.model='gpt-5'" in out and "traces.jsonl:1 record 1" in out


def test_show_json_has_the_result_and_the_manifest(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the run's result object and its manifest."""
    run = export.run("tools")
    args = [
        "show",
        run.trace_id,
        "--in",
        str(export.directory),
        "--keyring",
        str(export.keyring_path),
        "--json",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"]["code"] == "verified" and doc["manifest"]["identity"] == run.identity
    assert doc["insecure"] is False


def test_show_a_manifest_file_checks_it_alone(
    export: vf.Export, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest file: signature and content checked, no span expected."""
    record = next(vf.logs_of(vf.read_lines(export.manifests)))
    (tmp_path / "m.json").write_text(record["body"]["stringValue"])
    assert main(["show", str(tmp_path / "m.json"), "--keyring", str(export.keyring_path)]) == 0
    assert "VERIFIED (manifest file: signature and content; no span checked)" in capsys.readouterr().out
    other = tmp_path / "other.jwks"
    vf.write_keyring(other, vf.signer(vf.OTHER_SEED))
    assert main(["show", str(tmp_path / "m.json"), "--keyring", str(other)]) == 1
    assert "FAILED: unknown_key" in capsys.readouterr().out


def test_show_without_trust_says_so(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """Show needs --keyring, or the explicit insecure flag whose banner goes to stderr."""
    run = export.run("chat")
    assert main(["show", run.identity, "--in", str(export.directory)]) == 2
    assert main(["show", run.identity, "--in", str(export.directory), "--insecure-skip-signatures"]) == 1
    captured = capsys.readouterr()
    assert "NO SIGNATURE WAS CHECKED" in captured.err
    assert "signature_unchecked" in captured.out and "VERIFIED" not in captured.out


def test_show_an_ambiguous_trace_names_its_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace id with two runs asks for TRACE_ID/SPAN_ID and lists them."""
    from opentelemetry import trace

    from run_identity.otel.genai import start_genai_span
    from run_identity.pipeline.wiring import setup

    pipeline = setup(vf.signer(), directory=tmp_path / "x", set_global=False)
    tracer = pipeline.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("request") as parent:
        trace_id = f"{parent.get_span_context().trace_id:032x}"
        for _, composition in vf.compositions()[:2]:
            with start_genai_span(composition, tracer_provider=pipeline.tracer_provider):
                assert trace.get_current_span().get_span_context().trace_id == parent.get_span_context().trace_id
    pipeline.shutdown()
    assert main(["show", trace_id, "--in", str(tmp_path / "x"), "--insecure-skip-signatures"]) == 1
    assert "matches 2 runs" in capsys.readouterr().err
