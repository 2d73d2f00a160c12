"""Benign re-encodings of real exported data verify with no false alarm: OTLP/JSON and protobuf (plain and
length-prefixed), re-batching, duplicate deliveries, reordered keys and respelled numbers in the manifest
JSON, withheld elements, protobuf's JSON mapping, and several processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import verify_fixtures as vf

from run_identity.verify import VerificationReport


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    """Five runs, exported by the real SDK pipeline into traces.jsonl and manifests.jsonl."""
    return vf.export_runs(tmp_path_factory.mktemp("pristine") / "export")


def _all_verified(report: VerificationReport, export: vf.Export) -> None:
    codes = vf.codes_by_label(report, export)
    assert codes == {r.label: "verified" for r in export.runs}, [
        (r.code, [f.message for f in r.findings]) for r in report.results() if not r.verified
    ]
    assert report.passed


def test_untouched_data_verifies(pristine: vf.Export) -> None:
    """The export as the SDK pipeline wrote it verifies run by run."""
    _all_verified(vf.verify_with([pristine.directory], [vf.signer()]), pristine)


def test_protobuf_requests_verify_like_json(pristine: vf.Export, tmp_path: Path) -> None:
    """Every OTLP/JSON line re-encoded as a raw protobuf export request (one file each) verifies the same."""
    for name in ("traces", "manifests"):
        for i, doc in enumerate(vf.rebatch(vf.read_lines(pristine.directory / f"{name}.jsonl"), 2)):
            (tmp_path / f"{name}-{i}.pb").write_bytes(vf.to_proto(doc))
    _all_verified(vf.verify_with([tmp_path], [vf.signer()]), pristine)


def test_length_prefixed_proto_verifies(pristine: vf.Export, tmp_path: Path) -> None:
    """The otelcol file exporter's proto format (4-byte length before each request) verifies the same."""
    vf.write_framed(tmp_path / "traces.bin", vf.rebatch(vf.read_lines(pristine.traces), 3))
    vf.write_framed(tmp_path / "manifests.bin", vf.rebatch(vf.read_lines(pristine.manifests), 1))
    _all_verified(vf.verify_with([tmp_path], [vf.signer()]), pristine)


def test_mixed_encodings_verify(pristine: vf.Export, tmp_path: Path) -> None:
    """Spans in one encoding, manifests in another, given as a file and a folder."""
    vf.write_framed(tmp_path / "spans.bin", vf.read_lines(pristine.traces))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "logs.pb").write_bytes(vf.to_proto(vf.read_lines(pristine.manifests)[0]))
    _all_verified(vf.verify_with([tmp_path / "spans.bin", tmp_path / "m"], [vf.signer()]), pristine)


@pytest.mark.parametrize("size", [1, 2, 1000])
def test_rebatching_verifies(pristine: vf.Export, tmp_path: Path, size: int) -> None:
    """Records split into single-record requests, or merged into one request, across files, verify."""
    traces = vf.read_lines(pristine.traces) + vf.read_lines(pristine.manifests)
    merged = vf.rebatch(traces, size)
    half = len(merged) // 2
    vf.write_lines(tmp_path / "part-1.jsonl", merged[:half])
    vf.write_lines(tmp_path / "part-2.jsonl", merged[half:])
    _all_verified(vf.verify_with([tmp_path], [vf.signer()]), pristine)


def test_duplicate_deliveries_count_once(pristine: vf.Export, tmp_path: Path) -> None:
    """A collector retry delivers manifests and spans twice (also in another encoding): no error."""
    shutil.copy(pristine.manifests, tmp_path / "manifests.jsonl")
    shutil.copy(pristine.traces, tmp_path / "traces.jsonl")
    vf.write_lines(tmp_path / "retry.jsonl", vf.read_lines(pristine.manifests) + vf.read_lines(pristine.traces))
    vf.write_framed(tmp_path / "retry.bin", vf.read_lines(pristine.manifests))
    _all_verified(vf.verify_with([tmp_path], [vf.signer()]), pristine)


def _reencode(body: str) -> str:
    """The same manifest value in another JSON spelling: keys reversed, indented, ASCII escapes, 1 as 1.0."""

    def reverse(node: Any) -> Any:
        if type(node) is dict:
            return {k: reverse(node[k]) for k in sorted(node, reverse=True)}
        if type(node) is list:
            return [reverse(v) for v in node]
        if type(node) is int and type(node) is not bool:
            return float(node)
        return node

    return json.dumps(reverse(orjson.loads(body)), indent=2, ensure_ascii=True)


def test_reencoded_manifest_json_verifies(pristine: vf.Export, tmp_path: Path) -> None:
    """Reordered keys, whitespace, \\u escapes and integers written as 1.0 hash to the same identity."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    for run in pristine.runs:
        t.body(run.label, _reencode)
    assert '"temperature": 1.0' in t.record("tools")["body"]["stringValue"]
    assert "\\u00e9" in t.record("nfc")["body"]["stringValue"]
    t.save()
    _all_verified(vf.verify_with([t.directory], [vf.signer()]), pristine)


def test_reencoded_and_canonical_copies_are_one_manifest(pristine: vf.Export, tmp_path: Path) -> None:
    """A canonical manifest and its re-encoded copy are the same manifest delivered twice, not a conflict."""
    t = vf.tamper_copy(pristine, tmp_path / "export")
    for run in pristine.runs:
        t.body(run.label, _reencode)
    t.save()
    shutil.copy(pristine.manifests, tmp_path / "export" / "original-manifests.jsonl")
    _all_verified(vf.verify_with([t.directory], [vf.signer()]), pristine)


def test_withheld_elements_verify(pristine: vf.Export, tmp_path: Path) -> None:
    """Withholding a message, a document and the whole parameters component keeps every run verified."""
    from run_identity.core.manifest import Manifest

    t = vf.tamper_copy(pristine, tmp_path / "export")
    for label, component, index in (
        ("multi-turn", "messages", 1),
        ("rag", "context", 0),
        ("chat", "parameters", None),
    ):
        manifest = Manifest.from_json(t.record(label)["body"]["stringValue"]).withhold(component, index)
        t.record(label)["body"]["stringValue"] = manifest.to_json_bytes().decode()
    t.save()
    _all_verified(vf.verify_with([t.directory], [vf.signer()]), pristine)


def test_protobuf_json_mapping_ids_and_field_names_verify(pristine: vf.Export, tmp_path: Path) -> None:
    """Requests written by protobuf's own JSON mapping (base64 ids, snake_case names) are read leniently."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    lines = []
    for name, cls in (("traces", ExportTraceServiceRequest), ("manifests", ExportLogsServiceRequest)):
        for doc in vf.read_lines(pristine.directory / f"{name}.jsonl"):
            message = cls.FromString(vf.to_proto(doc))
            lines.append(json_format.MessageToDict(message, preserving_proto_field_name=True))
    vf.write_lines(tmp_path / "mapped.jsonl", lines)
    _all_verified(vf.verify_with([tmp_path], [vf.signer()]), pristine)


def test_several_processes_give_the_same_results(pristine: vf.Export, tmp_path: Path) -> None:
    """--jobs 2 over many small chunks gives exactly the results of one process, in the same order."""
    vf.write_lines(
        tmp_path / "all.jsonl",
        vf.rebatch(vf.read_lines(pristine.traces) + vf.read_lines(pristine.manifests), 1),
    )
    one = [r.to_json() for r in vf.verify_with([tmp_path], [vf.signer()], chunk_size=1).results()]
    two = [r.to_json() for r in vf.verify_with([tmp_path], [vf.signer()], jobs=2, chunk_size=1).results()]
    assert one == two
    assert [r["code"] for r in one] == ["verified"] * 5
