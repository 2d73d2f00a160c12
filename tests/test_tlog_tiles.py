"""run_identity.core.tlog: entry bytes, tlog-tiles paths and codecs, the tile reader, tlog-proof bundles and the
tlog-witness add-checkpoint body. The tiles are written here by a writer made from the C2SP tlog-tiles text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from core_fixtures import DECLARED_AT, TRACE_ID, signer

from run_identity.core.canonical import canonicalize
from run_identity.core.merkle import (
    inclusion_proof,
    leaf_hash,
    list_source,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from run_identity.core.statement import BindingStatement, encode_signature
from run_identity.core.tlog import (
    TileReader,
    TlogError,
    TlogProof,
    decode_bundle,
    decode_tile,
    encode_bundle,
    encode_index,
    entries_path,
    entry_bytes,
    format_add_checkpoint,
    parse_add_checkpoint,
    parse_entry,
    tile_path,
)
from run_identity.core.tlog_fetch import fetcher


def statement(n: int = 0) -> BindingStatement:
    return BindingStatement(
        identity="sha256:" + hashlib.sha256(b"%d" % n).hexdigest(),
        trace_id=TRACE_ID,
        span_id=f"{n + 1:016x}",
        key_id=signer().key_id,
        declared_at=DECLARED_AT,
    )


def write_tiles(folder: Path, entries: list[bytes]) -> None:
    """Publish ``entries`` as tlog-tiles, straight from the spec: level-0 tiles are leaf hashes, level l+1 tiles
    hold the MTH of each full tile of level l, the rightmost tile of each level is partial."""
    level_hashes = [leaf_hash(e) for e in entries]
    level = 0
    while level_hashes:
        for n in range(0, len(level_hashes), 256):
            chunk = level_hashes[n : n + 256]
            path = folder / tile_path(level, n // 256, len(chunk))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"".join(chunk))
        level_hashes = [
            root_from_leaf_hashes(level_hashes[n : n + 256]) for n in range(0, len(level_hashes) - 255, 256)
        ]
        level += 1
    for n in range(0, len(entries), 256):
        chunk = entries[n : n + 256]
        path = folder / entries_path(n // 256, len(chunk))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(len(e).to_bytes(2, "big") + e for e in chunk))


def test_entry_bytes_are_the_canonical_signature_and_statement() -> None:
    """An entry is JCS({"signature", "statement"}) and parses back to the same statement and signature."""
    s = statement()
    signature = signer().sign(s.signing_input())
    data = entry_bytes(s, signature)
    assert data == canonicalize({"signature": encode_signature(signature), "statement": s.to_json()})
    assert data.startswith(b'{"signature":"') and b'"statement":{"declared_at":' in data
    assert parse_entry(data) == (s, signature)
    with pytest.raises(TlogError, match="canonical"):
        parse_entry(data.replace(b'{"signature"', b'{ "signature"'))
    with pytest.raises(TlogError, match="exactly"):
        parse_entry(data[:-1] + b',"extra":1}')
    with pytest.raises(TlogError, match="statement"):
        parse_entry(data.replace(TRACE_ID.encode(), b"0" * 32))
    with pytest.raises(TlogError, match="64"):
        entry_bytes(s, signature[:63])


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 0, 256, "tile/0/000"),
        (0, 1234067, 256, "tile/0/x001/x234/067"),
        (1, 999, 256, "tile/1/999"),
        (2, 1000, 17, "tile/2/x001/000.p/17"),
        (63, 5, 1, "tile/63/005.p/1"),
    ],
)
def test_tile_paths(level: int, index: int, width: int, path: str) -> None:
    """Tile paths follow tlog-tiles: 3-digit elements, x-prefixed but the last, .p/<W> for partial tiles."""
    assert tile_path(level, index, width) == path
    assert entries_path(index, width) == path.replace(f"tile/{level}/", "tile/entries/")


def test_index_and_width_limits() -> None:
    """Levels outside 0..63, widths outside 1..256 and negative indexes have no path."""
    assert encode_index(1000000) == "x001/x000/000"
    for bad in ((64, 0, 256), (0, -1, 256), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(ValueError):
            tile_path(*bad)


def test_tile_and_bundle_codecs() -> None:
    """Tiles are concatenated hashes, bundles uint16-length-prefixed entries; wrong sizes are refused."""
    hashes = [leaf_hash(bytes([i])) for i in range(3)]
    assert decode_tile(b"".join(hashes), 3) == hashes
    with pytest.raises(TlogError, match="96 bytes"):
        decode_tile(b"".join(hashes)[:-1], 3)
    entries = [b"", b"a", b"x" * 300]
    bundle = encode_bundle(entries)
    assert bundle[:5] == b"\x00\x00\x00\x01a"
    assert decode_bundle(bundle, 3) == entries
    with pytest.raises(TlogError, match="holds 3"):
        decode_bundle(bundle, 4)
    with pytest.raises(TlogError, match="past its end"):
        decode_bundle(bundle[:-1], 3)
    with pytest.raises(TlogError, match="does not fit"):
        encode_bundle([b"x" * 65536])


@pytest.mark.parametrize("size", [1, 255, 256, 257, 511, 70_000 // 100, 65_536 + 300])
def test_reader_computes_the_tree_and_proofs_from_tiles(tmp_path: Path, size: int) -> None:
    """The reader's root and proofs over tiles equal those over the leaf hashes, and verify."""
    entries = [b"entry %d" % i for i in range(size)]
    write_tiles(tmp_path, entries)
    hashes = [leaf_hash(e) for e in entries]
    root = root_from_leaf_hashes(hashes)
    reader = TileReader(fetcher(str(tmp_path)), size)
    assert reader.tree_hash() == root
    for index in {0, size // 2, size - 1}:
        proof = reader.inclusion_proof(index)
        assert proof == inclusion_proof(index, size, list_source(hashes))
        verify_inclusion(reader.leaf_hash(index), index, size, proof, root)
    for old in {0, 1, size // 3, size - 1}:
        old_root = reader.tree_hash(old)
        assert old_root == root_from_leaf_hashes(hashes[:old])
        verify_consistency(old, size, old_root, root, reader.consistency_proof(old))
    if size <= 1000:
        assert [e for _, e in reader.entries_verified(root)] == entries


def test_an_old_size_is_read_from_the_full_tile_when_its_partial_tile_is_gone(tmp_path: Path) -> None:
    """A reader at an old checkpoint's size falls back to the full tile once the log deleted the partial one."""
    entries = [b"%d" % i for i in range(300)]
    write_tiles(tmp_path, entries)
    old = TileReader(fetcher(str(tmp_path)), 100)  # tile/0/000.p/100 was never written here
    assert old.tree_hash() == root_from_leaf_hashes([leaf_hash(e) for e in entries[:100]])
    with pytest.raises(TlogError, match="not within"):
        old.tree_hash(101)


def test_entries_not_matching_the_root_are_refused(tmp_path: Path) -> None:
    """Reading all entries against a root they do not hash to raises after the last one."""
    write_tiles(tmp_path, [b"a", b"b", b"c"])
    reader = TileReader(fetcher(str(tmp_path)), 3)
    with pytest.raises(TlogError, match="do not hash"):
        list(reader.entries_verified(leaf_hash(b"x")))
    with pytest.raises(TlogError, match="cannot read"):
        TileReader(fetcher(str(tmp_path / "absent")), 3).tree_hash()
    with pytest.raises(TlogError, match="not complete"):
        reader.node(2, 0)


def test_tlog_proof_round_trip_and_errors() -> None:
    """A tlog-proof encodes to the C2SP text and decodes back; malformed ones are refused."""
    hashes = [leaf_hash(bytes([i])) for i in range(5)]
    checkpoint = b"origin\n5\nAAAA\n\n\xe2\x80\x94 origin AAAAAAAA\n"
    proof = TlogProof(3, tuple(inclusion_proof(3, 5, list_source(hashes))), checkpoint)
    data = proof.encode()
    assert data.startswith(b"c2sp.org/tlog-proof@v1\nindex 3\n")
    assert data.endswith(b"\n\n" + checkpoint)
    assert TlogProof.decode(data) == proof
    with_extra = TlogProof(0, (), checkpoint, extra=b"\x01\x02")
    assert b"\nextra AQI=\nindex 0\n\n" in with_extra.encode()
    assert TlogProof.decode(with_extra.encode()) == with_extra
    for bad, message in [
        (data.replace(b"@v1", b"@v2"), "starts with"),
        (data.replace(b"index 3", b"index 03"), "leading zeros"),
        (data.replace(b"index 3", b"idx 3"), "index N"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\n" + checkpoint, "32-byte"),
        (b"c2sp.org/tlog-proof@v1\nindex 1\n", "empty line"),
    ]:
        with pytest.raises(TlogError, match=message):
            TlogProof.decode(bad)


def test_add_checkpoint_body_round_trip() -> None:
    """The add-checkpoint body is 'old N', proof lines, an empty line and the checkpoint, as in tlog-witness."""
    proof = [leaf_hash(b"1"), leaf_hash(b"2")]
    body = format_add_checkpoint(20852014, proof, b"checkpoint\n")
    assert body.startswith(b"old 20852014\n") and body.endswith(b"=\n\ncheckpoint\n")
    assert parse_add_checkpoint(body) == (20852014, proof, b"checkpoint\n")
    assert parse_add_checkpoint(format_add_checkpoint(0, [], b"c\n")) == (0, [], b"c\n")
    with pytest.raises(TlogError, match="old"):
        parse_add_checkpoint(b"old 01\n\nc\n")
    with pytest.raises(TlogError, match="63"):
        format_add_checkpoint(1, proof * 32, b"c\n")
