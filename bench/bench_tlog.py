"""Issue 17 benchmark: the transparency log of runs (docs/tlog.md).

Measured in one run, each against a baseline measured beside it:

1. durable appends per second through ``LogStore.append`` (fsync before returning), one thread with batches
   of 1, 20 and 200 entries and 8 threads with batches of 20 (group commit); baseline: writing the same
   records to a plain file with one fsync per batch. Goal: >= 5,000 entries/s.
2. the log service end to end: OTLP/HTTP protobuf requests of 50 signed manifests from 4 clients on
   127.0.0.1, each statement's signature checked; baseline: Ed25519 verification alone, one core.
3. checkpoint latency: ``LogStore.publish`` (tiles written, checkpoint signed and written atomically) after
   1, 5,000 and 50,000 new entries.
4. a 1,000,000-entry log built through the store: inclusion and consistency proof sizes, proof computation
   from the tiles (cold and warm), inclusion-proof verification; baseline: one Ed25519 verification.
5. the verifier's extra work per run with a log (entry bytes, leaf hash, proof from warm tiles, verification)
   against one Ed25519 verification (the verifier's per-run cost is above that; issue 17's goal is <= 25 %
   of the verifier's cost, measured on ``verify --tlog`` itself in bench_verify).
6. pymerkle 7 (when importable; PYTHONPATH may point at a folder holding it) against core.merkle: building a
   100,000-leaf tree, its root, an inclusion proof and its verification.

    python3 scripts/dev.py bench tlog [--size N]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.core.merkle import leaf_hash, verify_consistency, verify_inclusion
from run_identity.core.note import generate_signer
from run_identity.core.statement import BindingStatement, encode_signature, format_timestamp
from run_identity.core.tlog import TileReader, TlogProof, entry_bytes
from run_identity.core.tlog_fetch import fetcher
from run_identity.pipeline.tlog_serve import start_log_server
from run_identity.pipeline.tlog_store import LogStore

ORIGIN = "bench.example/runs"
KEY_ID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def entries(start: int, count: int) -> list[bytes]:
    """Entries shaped like real ones (the canonical form of §Transparency log), made fast from a template."""
    template = (
        '{"signature":"%s","statement":{"declared_at":"2026-12-07T10:00:00.000000Z","identity":"sha256:%064x",'
        '"key_id":"' + KEY_ID + '","span_id":"%016x","spec_version":"1","trace_id":"%032x"}}'
    )
    signature = base64.b64encode(bytes(64)).decode()
    return [(template % (signature, n, n + 1, n + 1)).encode() for n in range(start, start + count)]


def check_template() -> None:
    statement = BindingStatement(
        identity=f"sha256:{7:064x}",
        trace_id=f"{8:032x}",
        span_id=f"{8:016x}",
        key_id=KEY_ID,
        declared_at="2026-12-07T10:00:00.000000Z",
    )
    assert entries(7, 1)[0] == entry_bytes(statement, bytes(64)), "the template is not the entry encoding"


def per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def bench_appends(folder: Path) -> None:
    print("1. durable appends (fsync before return)")
    for batch in (1, 20, 200):
        n = 2000 if batch == 1 else 40_000
        data = entries(0, n)
        raw = folder / f"raw-{batch}"
        fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        start = time.perf_counter()
        for i in range(0, n, batch):
            os.write(fd, b"".join(len(e).to_bytes(2, "big") + leaf_hash(e) + e for e in data[i : i + batch]))
            os.fsync(fd)
        baseline = time.perf_counter() - start
        os.close(fd)
        with LogStore(folder / f"store-{batch}", generate_signer(ORIGIN)) as store:
            start = time.perf_counter()
            for i in range(0, n, batch):
                store.append(data[i : i + batch])
            elapsed = time.perf_counter() - start
        print(
            f"   1 thread, batches of {batch:>3}: {per_second(n, elapsed):>10} "
            f"(plain file + fsync per batch: {per_second(n, baseline)}, ratio {baseline / elapsed:.2f})"
        )
    n, threads, batch = 80_000, 8, 20
    data = entries(10**6, n)
    with LogStore(folder / "store-threads", generate_signer(ORIGIN)) as store:
        share = n // threads

        def work(t: int) -> None:
            mine = data[t * share : (t + 1) * share]
            for i in range(0, len(mine), batch):
                store.append(mine[i : i + batch])

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
    print(f"   {threads} threads, batches of {batch} (group commit): {per_second(n, elapsed)}  (goal >= 5,000/s)")


def bench_service(folder: Path) -> None:
    print("2. the log service over OTLP/HTTP on 127.0.0.1 (4 clients, 50 manifests per request, signatures checked)")
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    signer = Ed25519Signer.generate()
    requests = []
    for r in range(80):
        request = ExportLogsServiceRequest()
        scope = request.resource_logs.add().scope_logs.add()
        for i in range(50):
            n = r * 50 + i
            statement = BindingStatement(
                identity=f"sha256:{n:064x}",
                trace_id="%032x" % (n + 1),
                span_id="%016x" % (n + 1),
                key_id=signer.key_id,
                declared_at=format_timestamp(),
            )
            sig = encode_signature(signer.sign(statement.signing_input()))
            record = scope.log_records.add(event_name="run_identity.manifest")
            record.body.string_value = json.dumps({"statement": statement.to_json(), "signature": sig})
        requests.append(request.SerializeToString())
    server = start_log_server(
        LogStore(folder / "service", generate_signer(ORIGIN)), Keyring([signer.public_key]), port=0
    )
    try:
        queue = list(requests)
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                req = urllib.request.Request(
                    f"{server.url}/v1/logs", data=body, headers={"Content-Type": "application/x-protobuf"}
                )
                with urllib.request.urlopen(req, timeout=30) as response:
                    assert response.status == 200

        clients = [threading.Thread(target=client) for _ in range(4)]
        start = time.perf_counter()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        elapsed = time.perf_counter() - start
        assert server.store.size == 4000
        while server.store.published.size < 4000:
            time.sleep(0.001)
        to_checkpoint = time.perf_counter() - start - elapsed
    finally:
        server.stop()
    key = Ed25519PrivateKey.generate()
    message = b"x" * 300
    signature = key.sign(message)
    public = key.public_key()
    start = time.perf_counter()
    for _ in range(4000):
        public.verify(signature, message)
    verify_only = time.perf_counter() - start
    print(
        f"   {per_second(4000, elapsed)} entries end to end; Ed25519 verification alone {per_second(4000, verify_only)}"
        f" (service = {verify_only / elapsed:.0%} of verification alone)"
    )
    print(f"   last 200 -> a checkpoint covering it: {to_checkpoint * 1000:.0f} ms (checkpoint interval 500 ms)")


def bench_checkpoints(folder: Path) -> None:
    print("3. checkpoint latency (tiles + signed checkpoint, atomic writes)")
    with LogStore(folder / "checkpoints", generate_signer(ORIGIN)) as store:
        offset = 0
        for new in (1, 5000, 50_000):
            store.append(entries(offset, new))
            offset += new
            start = time.perf_counter()
            store.publish()
            print(f"   after {new:>6,} new entries: {(time.perf_counter() - start) * 1000:7.1f} ms")


def bench_million(folder: Path, size: int) -> None:
    print(f"4. a {size:,}-entry log")
    store = LogStore(folder / "million", generate_signer(ORIGIN))
    start = time.perf_counter()
    for offset in range(0, size, 20_000):
        store.append(entries(offset, min(20_000, size - offset)))
    built = time.perf_counter() - start
    start = time.perf_counter()
    checkpoint = store.publish()
    published = time.perf_counter() - start
    assert checkpoint is not None
    note = store.checkpoint_note()
    store.close()
    print(
        f"   built through LogStore.append in {built:.1f} s ({per_second(size, built)}); "
        f"first publish {published:.1f} s"
    )
    fetched: list[str] = []
    plain = fetcher(str(folder / "million"))

    def counting(path: str) -> bytes:
        fetched.append(path)
        return plain(path)

    rng = random.Random(17)
    indexes = [rng.randrange(size) for _ in range(200)]
    cold, warm = [], []
    reader = TileReader(counting, size)
    for index in indexes[:20]:
        fresh = TileReader(plain, size)
        t = time.perf_counter()
        fresh.inclusion_proof(index)
        cold.append(time.perf_counter() - t)
    for index in indexes:
        reader.inclusion_proof(index)
    tiles_per_proof = len(fetched) / len(indexes)
    for index in indexes:
        t = time.perf_counter()
        reader.inclusion_proof(index)
        warm.append(time.perf_counter() - t)
    proof = reader.inclusion_proof(indexes[0])
    leaf = reader.leaf_hash(indexes[0])
    bundle = TlogProof(indexes[0], tuple(proof), note).encode()
    t = time.perf_counter()
    for _ in range(2000):
        verify_inclusion(leaf, indexes[0], size, proof, checkpoint.root_hash)
    verify_time = (time.perf_counter() - t) / 2000
    key = Ed25519PrivateKey.generate()
    sig = key.sign(b"m")
    t = time.perf_counter()
    for _ in range(2000):
        key.public_key().verify(sig, b"m")
    ed25519 = (time.perf_counter() - t) / 2000
    old = size // 3
    consistency = reader.consistency_proof(old)
    verify_consistency(old, size, reader.tree_hash(old), checkpoint.root_hash, consistency)
    print(
        f"   inclusion proof: {len(proof)} hashes = {len(proof) * 32} bytes; tlog-proof bundle {len(bundle)} bytes; "
        f"consistency proof {old:,} -> {size:,}: {len(consistency)} hashes"
    )
    print(
        f"   proof from tiles: cold {statistics.median(cold) * 1e3:.2f} ms (~{tiles_per_proof:.1f} tile reads), "
        f"warm {statistics.median(warm) * 1e6:.0f} µs; verification {verify_time * 1e6:.1f} µs "
        f"= {verify_time / ed25519:.2f} x one Ed25519 verification ({ed25519 * 1e6:.0f} µs)"
    )
    # 5. the verifier's extra work per run: entry bytes, leaf hash, proof (warm), verification.
    statement = BindingStatement(
        identity=f"sha256:{5:064x}",
        trace_id=f"{6:032x}",
        span_id=f"{6:016x}",
        key_id=KEY_ID,
        declared_at="2026-12-07T10:00:00.000000Z",
    )
    t = time.perf_counter()
    for index in indexes:
        entry = entry_bytes(statement, bytes(64))
        leaf_hash(entry)
        verify_inclusion(reader.leaf_hash(index), index, size, reader.inclusion_proof(index), checkpoint.root_hash)
    extra = (time.perf_counter() - t) / len(indexes)
    print(f"5. extra work per run with a log: {extra * 1e6:.0f} µs = {extra / ed25519:.2f} x one Ed25519 verification")


def bench_pymerkle(folder: Path, size: int = 100_000) -> None:
    try:
        import pymerkle
    except ImportError:
        print("6. pymerkle: not importable here (pip install --target DIR pymerkle==7.0.0; PYTHONPATH=DIR)")
        return
    print(f"6. pymerkle {pymerkle.__version__} (InmemoryTree) against core.merkle, {size:,} leaves")
    data = entries(0, size)
    t = time.perf_counter()
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for e in data:
        tree.append_entry(e)
    theirs_build = time.perf_counter() - t
    t = time.perf_counter()
    with LogStore(folder / "vs-pymerkle", generate_signer(ORIGIN)) as store:
        store.append(data)
        checkpoint = store.publish()
    ours_build = time.perf_counter() - t
    assert checkpoint is not None
    t = time.perf_counter()
    theirs_root = tree.get_root(size)
    theirs_root_time = time.perf_counter() - t
    assert theirs_root == checkpoint.root_hash, "pymerkle and core.merkle disagree on the root"
    reader = TileReader(fetcher(str(folder / "vs-pymerkle")), size)
    t = time.perf_counter()
    ours_root = reader.tree_hash()
    ours_root_time = time.perf_counter() - t
    assert ours_root == checkpoint.root_hash
    rng = random.Random(6)
    indexes = [rng.randrange(size) for _ in range(100)]
    t = time.perf_counter()
    theirs = [tree.prove_inclusion(i + 1, size) for i in indexes]
    theirs_proof = (time.perf_counter() - t) / len(indexes)
    t = time.perf_counter()
    ours = [reader.inclusion_proof(i) for i in indexes]
    ours_proof = (time.perf_counter() - t) / len(indexes)
    t = time.perf_counter()
    for i, proof in zip(indexes, theirs, strict=True):
        pymerkle.verify_inclusion(leaf_hash(data[i]), theirs_root, proof)
    theirs_verify = (time.perf_counter() - t) / len(indexes)
    t = time.perf_counter()
    for i, proof in zip(indexes, ours, strict=True):
        verify_inclusion(leaf_hash(data[i]), i, size, proof, ours_root)
    ours_verify = (time.perf_counter() - t) / len(indexes)
    print(f"   build: pymerkle in memory {theirs_build:.2f} s; LogStore (fsync, tiles, checkpoint) {ours_build:.2f} s")
    print(f"   root: pymerkle {theirs_root_time * 1e3:.1f} ms, from tiles {ours_root_time * 1e3:.1f} ms (same root)")
    print(
        f"   inclusion proof: pymerkle {theirs_proof * 1e6:.0f} µs, from tiles {ours_proof * 1e6:.0f} µs; "
        f"verification: pymerkle {theirs_verify * 1e6:.0f} µs, core.merkle {ours_verify * 1e6:.0f} µs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="entries of the large log (default 1,000,000)")
    args = parser.parse_args()
    check_template()
    with tempfile.TemporaryDirectory(prefix="bench-tlog-") as tmp:
        folder = Path(tmp)
        bench_appends(folder)
        bench_service(folder)
        bench_checkpoints(folder)
        bench_million(folder, args.size)
        bench_pymerkle(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
