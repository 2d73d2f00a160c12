"""``diff``: which components differ between two runs and, inside them, which message, part, tool,
document or parameter."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import verify_fixtures as vf

from run_identity.cli import main
from run_identity.core.composition import Composition
from run_identity.core.manifest import Manifest
from run_identity.core.manifest_proto import manifest_to_proto
from run_identity.core.signing import sign_run
from run_identity.verify.diff import diff_manifests

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _manifest(composition: dict[str, Any], span: str = "00f067aa0ba902b7") -> Manifest:
    run = sign_run(Composition.from_dict(composition), vf.signer(), trace_id=TRACE, span_id=span)
    return Manifest.from_json(run.manifest_json())


def _base() -> dict[str, Any]:
    return dict(vf.compositions()[1][1])


def _changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    d = diff_manifests(_manifest(a), _manifest(b))
    return {c.name: [(x.kind, x.path) for x in c.changes] for c in d.components if c.status != "same"}


def test_identical_compositions_are_identical() -> None:
    """Same composition, other span: identical identity, every component the same."""
    d = diff_manifests(_manifest(_base()), _manifest(_base(), "1111111111111111"))
    assert d.identical and all(c.status == "same" for c in d.components)


def test_a_changed_parameter_is_named() -> None:
    """Only parameters differ, and inside them only temperature."""
    b = _base()
    b["parameters"] = {**b["parameters"], "temperature": 0.9}
    assert _changes(_base(), b) == {"parameters": [("changed", "parameters.temperature")]}


def test_an_inserted_message_is_one_insertion() -> None:
    """Messages are aligned by digest: an inserted message does not make the later ones differ."""
    b = _base()
    b["messages"] = [*b["messages"][:1], vf._text("assistant", "Hello!"), *b["messages"][1:]]
    assert _changes(_base(), b) == {"messages": [("added", "messages[1]")]}


def test_a_changed_part_is_located_inside_its_message() -> None:
    """One edited text part shows as messages[i].parts[j].content."""
    b = _base()
    b["messages"] = [*b["messages"][:2], vf._text("user", "Disc, mechanical.")]
    assert _changes(_base(), b) == {"messages": [("changed", "messages[2].parts[0].content")]}


def test_swapped_messages_are_a_reordering() -> None:
    """The same messages in another order: one reordering change naming the new order."""
    b = _base()
    b["messages"] = [b["messages"][2], b["messages"][1], b["messages"][0]]
    d = diff_manifests(_manifest(_base()), _manifest(b))
    (messages,) = [c for c in d.components if c.status == "changed"]
    (change,) = messages.changes
    assert change.kind == "reordered" and "[2, 1, 0]" in change.note


def test_a_tool_and_a_document_are_diffed_to_the_field() -> None:
    """A tool's description and a document's content are named by their paths."""
    a = dict(vf.compositions()[3][1], tools=[{"type": "function", "name": "t", "description": "one"}])
    b = dict(a, tools=[{"type": "function", "name": "t", "description": "two"}])
    b["context"] = [dict(a["context"][0], content="Frames: 5 years."), a["context"][1]]
    assert _changes(a, b) == {
        "tools": [("changed", "tools[0].description")],
        "context": [("changed", "context[0].content")],
    }


def test_unicode_normalization_is_pointed_out() -> None:
    """NFC text against its NFD form: the change says it is the same text, normalized differently."""
    a = vf.compositions()[4][1]
    b = dict(a, messages=[vf._text("user", unicodedata.normalize("NFD", vf.NFC_TEXT))])
    d = diff_manifests(_manifest(a), _manifest(b))
    (change,) = [x for c in d.components for x in c.changes]
    assert "NFC in A, NFD in B" in change.note


def test_withheld_content_is_compared_by_digest() -> None:
    """A withheld element that differs is reported as withheld, not as a content change."""
    b = _base()
    b["messages"] = [*b["messages"][:2], vf._text("user", "Disc, mechanical.")]
    d = diff_manifests(_manifest(_base()).withhold("messages", 2), _manifest(b))
    (change,) = [x for c in d.components for x in c.changes]
    assert change.kind == "withheld" and "withheld in A" in change.note
    same = diff_manifests(_manifest(_base()).withhold("messages", 2), _manifest(_base()))
    assert same.identical


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    """The fixture runs exported by the SDK pipeline."""
    return vf.export_runs(tmp_path_factory.mktemp("diff") / "export")


def test_cli_diff_by_run_ids_and_identity_prefix(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs named by TRACE/SPAN and by an identity prefix, found in the exported data."""
    chat, multi = export.run("chat"), export.run("multi-turn")
    args = ["diff", f"{chat.trace_id}/{chat.span_id}", multi.identity[:20], "--in", str(export.directory)]
    assert main(args) == 1  # the runs differ
    out = capsys.readouterr().out
    assert "parameters.temperature" in out and "- 0.3" in out and "+ 0.2" in out
    assert "messages[0].parts[0].content" in out and "same: model, operation, instructions" in out


def test_cli_diff_reads_the_inputs_twice_at_most(
    export: vf.Export, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs are looked up in one reading (and one more to learn which runs two identities name)."""
    from run_identity.verify import lookup as _lookup

    readings = []
    real = _lookup._iter_records

    def counted(paths: list[Path]) -> Any:
        readings.append(len(paths))
        return real(paths)

    monkeypatch.setattr(_lookup, "_iter_records", counted)
    chat, multi = export.run("chat"), export.run("multi-turn")
    assert main(["diff", chat.identity[:20], multi.identity[:20], "--in", str(export.directory)]) == 1
    assert "parameters.temperature" in capsys.readouterr().out
    assert len(readings) <= 2
    readings.clear()
    assert main(["diff", f"{chat.trace_id}/{chat.span_id}", multi.trace_id, "--in", str(export.directory)]) == 1
    assert len(readings) == 1


def test_cli_diff_of_a_run_with_itself_says_identical(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """Identical identities say so."""
    rag = export.run("rag")
    assert main(["diff", rag.identity, rag.trace_id, "--in", str(export.directory)]) == 0
    assert "identical: both runs have the same identity" in capsys.readouterr().out


def test_cli_diff_of_two_manifest_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two manifest files, one JSON and one protobuf, need no --in; --json gives the changes as data."""
    b = _base()
    b["parameters"] = {**b["parameters"], "seed": 8}
    (tmp_path / "a.json").write_bytes(_manifest(_base()).to_json_bytes())
    (tmp_path / "b.pb").write_bytes(manifest_to_proto(_manifest(b)))
    assert main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.pb"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["identical"] is False
    (params,) = [c for c in doc["components"] if c["status"] == "changed"]
    assert params["changes"] == [{"path": "parameters.seed", "kind": "changed", "a": 7, "b": 8, "note": ""}]


def test_cli_diff_exits_1_and_shows_the_values_of_a_component_only_one_run_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs that differ exit 1 (like diff(1)); a component only B has is shown with its value, not only named."""
    b = _base()
    b["tools"] = [{"type": "function", "name": "lookup_order", "description": "Find an order by its number."}]
    (tmp_path / "a.json").write_bytes(_manifest(_base()).to_json_bytes())
    (tmp_path / "b.json").write_bytes(_manifest(b).to_json_bytes())
    assert main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "tools: only in B" in out and "lookup_order" in out and "Find an order by its number." in out
    assert main(["diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0


def test_cli_diff_user_errors(export: vf.Export, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown run, a name that is no run, and a missing --in are each one line."""
    assert main(["diff", "sha256:" + "0" * 64, export.runs[0].identity, "--in", str(export.directory)]) == 1
    assert "no run with a readable manifest" in capsys.readouterr().err
    assert main(["diff", "hello", "world", "--in", str(export.directory)]) == 2
    assert "neither a manifest file" in capsys.readouterr().err
    assert main(["diff", export.runs[0].identity, export.runs[1].identity]) == 2
    assert "--in" in capsys.readouterr().err


def test_cli_diff_warns_when_content_does_not_recompute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest edited after signing is still diffed, with a warning that it fails its identity."""
    doc = _manifest(_base()).to_json()
    (tmp_path / "a.json").write_text(json.dumps(doc))
    doc["components"]["parameters"]["value"]["seed"] = 99
    (tmp_path / "b.json").write_text(json.dumps(doc))
    # The stated identities are equal, but B's content does not stand for its identity: not identical, exit 1.
    assert main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    captured = capsys.readouterr()
    assert "B (" in captured.err and "identity_mismatch" in captured.err
    assert "not established: B does not recompute to its identity" in captured.out
