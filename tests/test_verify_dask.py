"""Verification on a Dask cluster gives the verdicts of a single process, run by run (issue 16).

A real local cluster (2 worker processes) and, for s3:// inputs, a real S3 API endpoint (moto's server mode on
127.0.0.1) read through s3fs: nothing inside the project is mocked. The corpus: 3,000 runs exported as
OTLP/JSON lines, tampered in several ways (content, spans and manifests dropped, attributes changed, spans
repeated with other attributes, identities stripped, garbage lines past the per-file limit), in several
encodings (plain, gzip, zstd, length-prefixed protobuf) and delivered twice in part.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
import verify_fixtures as vf
import zstandard

from run_identity.cli import main
from run_identity.core.keys import Keyring
from run_identity.verify import Policy, VerificationReport, Verifier
from run_identity.verify.cluster import connect, parse_scheduler, partition_of

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3000
BATCH = 50


def _bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_verify", ROOT / "bench" / "bench_verify.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A local cluster of 2 worker processes, shared by this module's tests."""
    c, close = connect("local:2")
    try:
        yield c
    finally:
        close()


def _attr(item: dict[str, Any], key: str) -> dict[str, Any]:
    return next(a for a in item["attributes"] if a["key"] == key)


def _tamper(spans: list[dict[str, Any]], logs: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Runs i and their records, changed by i's residues (each kind of change on a few dozen runs)."""
    out_spans: list[Any] = []
    out_logs: list[Any] = []
    for i, (span, log) in enumerate(zip(spans, logs, strict=True)):
        if i % 97 == 0:  # content changed after signing
            log["body"]["stringValue"] = log["body"]["stringValue"].replace("capital", "Capital", 1)
        if i % 89 == 1:
            span = None  # sampled out
        if i % 83 == 2:
            log = None  # manifest lost
        if span is not None and i % 79 == 3:
            _attr(span, "gen_ai.request.model")["value"] = {"stringValue": "gpt-4o"}
        if span is not None and i % 73 == 4:  # a second span with the same ids says something else
            other = orjson.loads(orjson.dumps(span))
            _attr(other, "gen_ai.provider.name")["value"] = {"stringValue": "someone-else"}
            out_spans.append(other)
        if span is not None and i % 71 == 5:  # identity stripped
            span["attributes"] = [a for a in span["attributes"] if not a["key"].startswith("run_identity.")]
        if log is not None and i % 67 == 6:  # the manifest's span id is not hex: malformed, with its trace id
            log["spanId"] = "zz" * 8
        if span is not None:
            out_spans.append(span)
        if log is not None:
            out_logs.append(log)
    return out_spans, out_logs


def _lines(signal: str, scope_key: str, items_key: str, items: list[Any]) -> bytes:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "dask-test"}}]}
    out = bytearray()
    for a in range(0, len(items), BATCH):
        doc = {signal: [{"resource": resource, scope_key: [{"scope": {"name": "t"}, items_key: items[a : a + BATCH]}]}]}
        out += orjson.dumps(doc) + b"\n"
    return bytes(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tampered corpus (a folder) and its keyring file."""
    base = tmp_path_factory.mktemp("dask")
    generated = base / "generated"
    keyring = _bench().generate(generated, "minimal", RUNS)
    spans = [s for p in sorted(generated.glob("traces-*")) for d in vf.read_lines(p) for s in vf.spans_of([d])]
    logs = [r for p in sorted(generated.glob("manifests-*")) for d in vf.read_lines(p) for r in vf.logs_of([d])]
    spans, logs = _tamper(spans, logs)
    out = base / "export"
    out.mkdir()
    third = len(spans) // 3
    span_docs = _lines("resourceSpans", "scopeSpans", "spans", spans[:third])
    (out / "traces-a.jsonl").write_bytes(span_docs)
    (out / "traces-b.jsonl.gz").write_bytes(
        gzip.compress(_lines("resourceSpans", "scopeSpans", "spans", spans[third : 2 * third]))
    )
    vf.write_framed(
        out / "traces-c.bin",
        [
            orjson.loads(line)
            for line in _lines("resourceSpans", "scopeSpans", "spans", spans[2 * third :]).splitlines()
        ],
    )
    half = len(logs) // 2
    (out / "manifests-a.jsonl").write_bytes(
        _lines("resourceLogs", "scopeLogs", "logRecords", logs[:half]) + b"garbage\n" * 30
    )
    (out / "manifests-b.zst").write_bytes(
        zstandard.ZstdCompressor().compress(_lines("resourceLogs", "scopeLogs", "logRecords", logs[half:]))
    )
    (out / "retry").mkdir()  # a collector retry delivered part of the manifests again
    (out / "retry" / "manifests.jsonl").write_bytes(
        _lines("resourceLogs", "scopeLogs", "logRecords", logs[half - 200 : half + 200])
    )
    (out / "junk.dat").write_bytes(b"\x00\x01\x02 not telemetry")
    return out, keyring


def _verifier(keyring: Path) -> Verifier:
    return Verifier(Keyring.from_jwks(str(keyring)), Policy())


def _by_run(report: VerificationReport) -> dict[Any, bytes]:
    """Each result as JSON, keyed by run (unreadable records without ids by location)."""
    out: dict[Any, bytes] = {}
    for r in report.results():
        key = (r.trace_id, r.span_id) if r.trace_id else ("loose", r.findings[0].location, r.findings[0].message)
        assert key not in out
        out[key] = orjson.dumps(r.to_json(), option=orjson.OPT_SORT_KEYS)
    return out


def _same(one: VerificationReport, other: VerificationReport) -> None:
    a, b = _by_run(one), _by_run(other)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, (differ[:3], [a[k] for k in differ[:1]], [b[k] for k in differ[:1]])
    assert one.summary_json() == other.summary_json()


def test_cluster_verdicts_are_those_of_one_process(client: Any, corpus: tuple[Path, Path]) -> None:
    """Thousands of runs, tampered ones included: the same result for every run, the same summary."""
    folder, keyring = corpus
    verifier = _verifier(keyring)
    single = verifier.verify([folder])
    seen: list[tuple[int, int]] = []
    clustered = verifier.verify([folder], dask=client, chunk_size=64 << 10, progress=lambda d, t: seen.append((d, t)))
    _same(single, clustered)
    counts = single.counts
    assert counts["verified"] > RUNS * 0.8
    for code in (
        "identity_mismatch",
        "span_missing",
        "manifest_missing",
        "binding_mismatch",
        "malformed",  # (a stripped identity named by a manifest is binding_mismatch, spec 1.1 §12 step 5)
    ):
        assert counts[code] > 0, counts
    assert single.runs > RUNS
    assert seen and seen[-1][0] == seen[-1][1] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    # The shuffle spread the runs: both workers built partitions.
    assert len({partition_of(bytes.fromhex(r.trace_id + r.span_id), 8) for r in single.results() if r.trace_id}) == 8


def test_insecure_and_a_policy_travel_to_the_workers(client: Any, corpus: tuple[Path, Path]) -> None:
    folder, _ = corpus
    policy = Policy(allow=("span_missing", "manifest_missing"), require_content=("messages",))
    verifier = Verifier.insecure(policy)
    _same(verifier.verify([folder]), verifier.verify([folder], dask=client))


def test_cli_on_an_existing_cluster_and_a_local_one(
    client: Any, corpus: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--dask tcp://… uses the running cluster; --dask local:2 starts (and stops) one: same JSON lines, same
    exit code as one process."""
    folder, keyring = corpus
    args = ["verify", str(folder), "--keyring", str(keyring), "--json"]
    assert main(args) == 1
    single = sorted(capsys.readouterr().out.splitlines())
    address = client.scheduler.address
    assert address.startswith("tcp://")
    assert main([*args, "--dask", address]) == 1
    assert sorted(capsys.readouterr().out.splitlines()) == single
    assert main([*args, "--dask", "local:2"]) == 1
    assert sorted(capsys.readouterr().out.splitlines()) == single


def test_cli_refuses_a_bad_scheduler(corpus: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    folder, keyring = corpus
    for bad in ("local", "local:0", "localhost:8786", "8786"):
        assert main(["verify", str(folder), "--keyring", str(keyring), "--dask", bad]) == 2
        assert "--dask" in capsys.readouterr().err
    assert parse_scheduler("local:3") == 3
    assert parse_scheduler("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, client: Any) -> Iterator[Any]:
    """A real S3 API endpoint (moto's server mode) on 127.0.0.1, for this process and the workers."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client.run(_set_env, env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield s3fs.S3FileSystem()
    finally:
        client.run(_set_env, {k: None for k in env})
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _set_env(env: dict[str, str | None]) -> None:
    import s3fs

    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    s3fs.S3FileSystem.clear_instance_cache()


def test_s3_in_the_awss3exporter_layout(s3: Any, client: Any, tmp_path: Path) -> None:
    """Objects as awss3exporter writes them (one request per object under time-partitioned keys; otlp_json,
    otlp_proto, gzip) verify from s3:// in one process and on the cluster, with the verdicts of local files."""
    export = vf.export_runs(tmp_path / "export")
    s3.mkdir("telemetry")
    prefix = "telemetry/otel/year=2026/month=12/day=07/hour=08"
    local = tmp_path / "local"
    local.mkdir()
    for i, doc in enumerate(vf.rebatch(vf.read_lines(export.traces), 2)):
        key = f"{prefix}/minute={i:02d}/traces_{i}.json"
        data = orjson.dumps(doc)
        if i % 2:
            key, data = key[: -len("json")] + "binpb.gz", gzip.compress(vf.to_proto(doc))
        s3.pipe(key, data)
        (local / f"t{i}").write_bytes(data)
    for i, doc in enumerate(vf.rebatch(vf.read_lines(export.manifests), 3)):
        key = f"{prefix}/minute={i:02d}/logs_{i}.json.gz"
        data = gzip.compress(orjson.dumps(doc))
        s3.pipe(key, data)
        (local / f"m{i}").write_bytes(data)
    s3.pipe("telemetry/otel/.hidden/ignored.json", b"garbage")
    verifier = Verifier(Keyring.from_jwks(str(export.keyring_path)), Policy())
    url = "s3://telemetry/otel/"
    one = verifier.verify([url])
    assert all(i["path"].startswith("s3://telemetry/otel/year=2026/") for i in one.summary_json()["inputs"])
    assert vf.codes_by_label(one, export) == {r.label: "verified" for r in export.runs}
    assert vf.codes_by_label(verifier.verify([local]), export) == vf.codes_by_label(one, export)
    _same(one, verifier.verify([url], dask=client))


def test_empty_and_missing_inputs(client: Any, tmp_path: Path) -> None:
    """An empty folder gives no run, as in one process; a missing path is an InputError before any task."""
    from run_identity.verify import InputError

    verifier = Verifier.insecure(Policy(allow_empty=True))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.jsonl").write_bytes(b"\n\n")
    _same(verifier.verify([tmp_path / "empty"]), verifier.verify([tmp_path / "empty"], dask=client))
    with pytest.raises(InputError, match="no such file or folder"):
        verifier.verify([tmp_path / "nothing"], dask=client)
