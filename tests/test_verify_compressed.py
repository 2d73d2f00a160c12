"""Compressed inputs (gzip, zstd, detected by their magic bytes) and fsspec URLs verify like plain files, in a
single process; corrupt compressed data is a located ``malformed`` result, never a crash."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
import verify_fixtures as vf
import zstandard

from run_identity.verify import MALFORMED, VerificationReport


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> vf.Export:
    return vf.export_runs(tmp_path_factory.mktemp("pristine") / "export")


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data)


def _all_verified(report: VerificationReport, export: vf.Export) -> None:
    assert vf.codes_by_label(report, export) == {r.label: "verified" for r in export.runs}
    assert report.passed


@pytest.mark.parametrize("compress", [_gzip, _zstd], ids=["gzip", "zstd"])
def test_compressed_json_lines_verify(pristine: vf.Export, tmp_path: Path, compress: object) -> None:
    """Both files compressed, under names that do not say so: the magic bytes decide."""
    assert callable(compress)
    for name in ("traces", "manifests"):
        (tmp_path / f"{name}.jsonl").write_bytes(compress((pristine.directory / f"{name}.jsonl").read_bytes()))
    report = vf.verify_with([tmp_path], [vf.signer()])
    _all_verified(report, pristine)
    kind = "gzip" if compress is _gzip else "zstd"
    assert {i["encoding"] for i in report.summary_json()["inputs"]} == {f"otlp-json+{kind}"}


def test_compressed_framed_proto_and_multi_member_gzip(pristine: vf.Export, tmp_path: Path) -> None:
    """The file exporter's proto format, zstd-compressed; JSON lines as two concatenated gzip members."""
    framed = vf.write_framed(tmp_path / "plain.bin", vf.rebatch(vf.read_lines(pristine.traces), 1)).read_bytes()
    (tmp_path / "plain.bin").unlink()
    (tmp_path / "traces.bin.zst").write_bytes(_zstd(framed))
    lines = pristine.manifests.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "manifests.jsonl.gz").write_bytes(_gzip(b"".join(lines[:half])) + _gzip(b"".join(lines[half:])))
    _all_verified(vf.verify_with([tmp_path], [vf.signer()]), pristine)


def test_pieces_cut_on_record_boundaries(pristine: vf.Export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decompressed data handed over in tiny pieces still decodes every record, with the right line numbers."""
    from run_identity.verify import _inputs

    monkeypatch.setattr(_inputs, "_PIECE", 64)
    monkeypatch.setattr(_inputs, "_BLOCK", 50)
    data = pristine.traces.read_bytes() + b"not json\n" + pristine.manifests.read_bytes()
    (tmp_path / "all.gz").write_bytes(_gzip(data))
    framed = vf.write_framed(tmp_path / "f.bin", vf.rebatch(vf.read_lines(pristine.traces), 1)).read_bytes()
    (tmp_path / "f.bin").write_bytes(_zstd(framed))
    report = vf.verify_with([tmp_path / "all.gz"], [vf.signer()])
    bad = [r for r in report.results() if r.code == MALFORMED]
    line = data[: data.index(b"not json")].count(b"\n") + 1
    assert [r.findings[0].location for r in bad] == [f"{tmp_path / 'all.gz'}:{line}"]
    assert sum(r.code == "verified" for r in report.results()) == len(pristine.runs)
    both = vf.verify_with([tmp_path / "f.bin", pristine.manifests], [vf.signer()])
    _all_verified(both, pristine)


def test_corrupt_compressed_data_is_malformed(pristine: vf.Export, tmp_path: Path) -> None:
    """A truncated gzip file: the records before the cut verify, the cut is one malformed result."""
    whole = _gzip(pristine.traces.read_bytes() * 50)
    (tmp_path / "traces.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "garbage.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\xff" * 100)
    report = vf.verify_with([tmp_path, pristine.manifests], [vf.signer()])
    messages = [r.findings[0].message for r in report.results() if r.code == MALFORMED]
    assert any("gzip data stops decompressing" in m for m in messages), messages
    assert any("zstd-compressed" in m for m in messages), messages
    assert sum(r.code == "verified" for r in report.results()) == len(pristine.runs)


def test_file_urls_verify(pristine: vf.Export, tmp_path: Path) -> None:
    """fsspec URLs: a file:// folder and a file:// file, in one process and in a pool."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifests.jsonl.gz").write_bytes(_gzip(pristine.manifests.read_bytes()))
    inputs = [f"file://{tmp_path / 'm'}", f"file://{pristine.traces}"]
    _all_verified(vf.verify_with(inputs, [vf.signer()]), pristine)  # type: ignore[arg-type]
    _all_verified(vf.verify_with(inputs, [vf.signer()], jobs=2), pristine)  # type: ignore[arg-type]


def test_missing_url_is_an_input_error(tmp_path: Path) -> None:
    from run_identity.verify import InputError

    with pytest.raises(InputError, match="no such file or folder"):
        vf.verify_with([f"file://{tmp_path}/nothing"], [vf.signer()])  # type: ignore[list-item]


@pytest.mark.parametrize("inner", ["json", "proto"])
def test_file_exporter_compressed_frames(pristine: vf.Export, tmp_path: Path, inner: str) -> None:
    """The otelcol file exporter's ``compression: zstd`` (legacy mode): every request zstd-compressed on its
    own and length-prefixed, whether its format is json or proto; rotated files beside the current one."""
    for name in ("traces", "manifests"):
        docs = vf.rebatch(vf.read_lines(pristine.directory / f"{name}.jsonl"), 2)
        out = bytearray()
        for doc in docs:
            body = _zstd(orjson.dumps(doc) if inner == "json" else vf.to_proto(doc))
            out += len(body).to_bytes(4, "big") + body
        half = len(docs) // 2
        cut = 0
        for _ in range(half):
            cut += 4 + int.from_bytes(out[cut : cut + 4], "big")
        (tmp_path / f"{name}-2026-12-07T05-02-14.173.{inner}").write_bytes(bytes(out[:cut]))
        (tmp_path / f"{name}.{inner}").write_bytes(bytes(out[cut:]))
    report = vf.verify_with([tmp_path], [vf.signer()])
    _all_verified(report, pristine)
    assert {i["encoding"] for i in report.summary_json()["inputs"]} == {"otlp-proto-framed"}


def test_corrupt_compressed_frame_is_malformed_at_its_offset(pristine: vf.Export, tmp_path: Path) -> None:
    good = _zstd(vf.to_proto(vf.read_lines(pristine.traces)[0]))
    bad = b"\x28\xb5\x2f\xfd" + b"\x00" * 20
    data = len(good).to_bytes(4, "big") + good + len(bad).to_bytes(4, "big") + bad
    (tmp_path / "traces.bin").write_bytes(data)
    report = vf.verify_with([tmp_path, pristine.manifests], [vf.signer()])
    bad_results = [r for r in report.results() if r.code == MALFORMED]
    assert len(bad_results) == 1
    assert bad_results[0].findings[0].location == f"{tmp_path / 'traces.bin'}@{4 + len(good)}"
    assert "does not decompress" in bad_results[0].findings[0].message
    assert sum(r.code == "verified" for r in report.results()) == len(pristine.runs)


def test_truncated_zstd_file_is_malformed(pristine: vf.Export, tmp_path: Path) -> None:
    """A zstd file cut inside its frame: the cut is reported, not read as the end of the data."""
    whole = _zstd(pristine.traces.read_bytes())
    (tmp_path / "traces.zst").write_bytes(whole[: len(whole) - 10])
    report = vf.verify_with([tmp_path, pristine.manifests], [vf.signer()])
    messages = [r.findings[0].message for r in report.results() if r.code == MALFORMED]
    assert any("ends inside a frame" in m for m in messages), messages
