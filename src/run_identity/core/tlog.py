"""The transparency log of runs: entry bytes, C2SP tlog-tiles paths and codecs, a tile reader, tlog-proof bundles
and the tlog-witness add-checkpoint body (docs/spec.md, "Transparency log").

An entry is the canonical form (§3) of ``{"signature": <base64 signature>, "statement": <binding statement>}``;
its leaf hash is ``SHA-256(0x00 || entry)``. The log is published as C2SP tlog-tiles under a prefix (a folder or
an http(s) URL): ``checkpoint``, ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``.
:class:`TileReader` reads such a prefix through any ``fetch(path) -> bytes`` and computes tree hashes and
proofs; it trusts nothing it reads: every result is meant to be checked against a signed checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from run_identity.core.canonical import canonicalize
from run_identity.core.errors import ManifestError, RunIdentityError
from run_identity.core.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_hash,
)
from run_identity.core.statement import BindingStatement, decode_signature, encode_signature
from run_identity.core.strict_json import StrictJsonError, loads_strict

__all__ = [
    "MAX_ENTRY_SIZE",
    "PROOF_HEADER",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Fetch",
    "TileReader",
    "TlogError",
    "TlogProof",
    "decode_bundle",
    "decode_tile",
    "encode_bundle",
    "encode_index",
    "encode_tile",
    "entries_path",
    "entry_bytes",
    "format_add_checkpoint",
    "parse_add_checkpoint",
    "parse_entry",
    "tile_path",
]

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
MAX_ENTRY_SIZE: Final = 0xFFFF
"""An entry bundle prefixes each entry with a big-endian uint16 length."""
PROOF_HEADER: Final = "c2sp.org/tlog-proof@v1"
_HASH = 32
_DECIMAL = re.compile(r"0|[1-9][0-9]*")

#: ``fetch(path)`` -> the bytes of the resource at ``<prefix>/<path>``; raises TlogError when it is absent.
Fetch: TypeAlias = Callable[[str], bytes]


class TlogError(RunIdentityError):
    """A log resource is absent, malformed or does not match what it should; the message says which."""


# --- entries ---------------------------------------------------------------------------------------------------


def entry_bytes(statement: BindingStatement, signature: bytes) -> bytes:
    """The log entry of a signed run: JCS({"signature": base64, "statement": statement})."""
    if len(signature) != 64:
        raise TlogError(f"an Ed25519 signature is 64 bytes, not {len(signature)}")
    data = canonicalize({"signature": encode_signature(signature), "statement": statement.to_json()})
    if len(data) > MAX_ENTRY_SIZE:
        raise TlogError(f"the entry is {len(data)} bytes, more than an entry bundle holds ({MAX_ENTRY_SIZE})")
    return data


def parse_entry(data: bytes) -> tuple[BindingStatement, bytes]:
    """The statement and signature of an entry, which must be in canonical form. Raises TlogError."""
    try:
        value = loads_strict(data)
    except StrictJsonError as exc:
        raise TlogError(f"the entry is not JSON: {exc}") from None
    if type(value) is not dict or set(value) != {"signature", "statement"}:
        raise TlogError("an entry is an object with exactly the members 'signature' and 'statement'")
    signature = decode_signature(value["signature"])
    if signature is None:
        raise TlogError("the entry's signature is not canonical base64 of 64 bytes")
    try:
        statement = BindingStatement.from_json(value["statement"])
    except ManifestError as exc:
        raise TlogError(f"the entry's statement is malformed: {exc}") from None
    if entry_bytes(statement, signature) != bytes(data):
        raise TlogError("the entry is not in canonical form")
    return statement, signature


# --- tiles -----------------------------------------------------------------------------------------------------


def encode_index(index: int) -> str:
    """A tile index as 3-digit path elements, all but the last prefixed with ``x`` (1234067 -> x001/x234/067)."""
    if index < 0:
        raise ValueError(f"negative tile index {index}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} is not between 1 and {TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``."""
    if not 0 <= level <= 63:
        raise ValueError(f"tile level {level} is not between 0 and 63")
    return f"tile/{level}/{encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{encode_index(index)}{_suffix(width)}"


def encode_tile(hashes: Sequence[bytes]) -> bytes:
    """The concatenated hashes of a tile."""
    return b"".join(hashes)


def decode_tile(data: bytes, width: int) -> list[bytes]:
    """The ``width`` hashes of a tile. Raises TlogError."""
    if len(data) != width * _HASH:
        raise TlogError(f"a tile of width {width} is {width * _HASH} bytes, not {len(data)}")
    return [data[i : i + _HASH] for i in range(0, len(data), _HASH)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry prefixed with its uint16 big-endian length."""
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise TlogError(f"an entry of {len(entry)} bytes does not fit an entry bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes, width: int) -> list[bytes]:
    """The ``width`` entries of a bundle. Raises TlogError."""
    entries: list[bytes] = []
    position = 0
    while position < len(data):
        if position + 2 > len(data):
            raise TlogError("an entry bundle ends inside a length prefix")
        length = int.from_bytes(data[position : position + 2], "big")
        position += 2
        if position + length > len(data):
            raise TlogError(f"entry {len(entries)} of a bundle runs past its end")
        entries.append(data[position : position + length])
        position += length
    if len(entries) != width:
        raise TlogError(f"an entry bundle of width {width} holds {len(entries)} entries")
    return entries


# --- reading a published log -----------------------------------------------------------------------------------


class TileReader:
    """A tiled log of ``size`` entries (the size of the checkpoint read) through ``fetch``: tree hashes and proofs
    for that size or any smaller one, entries.

    Tiles are cached. Nothing read is trusted: check :meth:`tree_hash` against a verified checkpoint, proofs
    with :mod:`run_identity.core.merkle`, and all entries at once with :meth:`entries_verified`.
    """

    def __init__(self, fetch: Fetch, size: int) -> None:
        if size < 0:
            raise ValueError(f"negative tree size {size}")
        self._fetch = fetch
        self.size = size
        self._tiles: dict[tuple[int, int], list[bytes]] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}  # hashes computed inside tiles

    def _tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        tile = self._tiles.get(key)
        if tile is None:
            available = self.size >> (TILE_HEIGHT * level)
            width = min(TILE_WIDTH, available - index * TILE_WIDTH)
            if width <= 0:
                raise TlogError(f"tile {level}/{index} is beyond tree size {self.size}")
            try:
                tile = decode_tile(self._fetch(tile_path(level, index, width)), width)
            except TlogError:
                if width == TILE_WIDTH:
                    raise
                # A log may delete a partial tile once the full one exists (tlog-tiles, "Partial Tiles").
                tile = decode_tile(self._fetch(tile_path(level, index)), TILE_WIDTH)[:width]
            self._tiles[key] = tile
        return tile

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree at ``(level, index)`` (a :data:`~run_identity.core.merkle.NodeSource`)."""
        if (index + 1) << level > self.size:
            raise TlogError(f"node {level}/{index} is not complete in a tree of size {self.size}")
        key = (level, index)
        found = self._nodes.get(key)
        if found is None:
            tile_level, height = divmod(level, TILE_HEIGHT)
            if height == 0:
                found = self._tile(tile_level, index // TILE_WIDTH)[index % TILE_WIDTH]
            else:  # a level inside a tile: hashed from the level below, each node once
                found = node_hash(self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1))
                self._nodes[key] = found
        return found

    def _within(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise TlogError(f"tree size {size} is not within the published tree of size {self.size}")
        return size

    def tree_hash(self, size: int | None = None) -> bytes:
        """The root hash of the first ``size`` entries (by default all :attr:`size`), from the tiles."""
        return tree_hash(self._within(size), self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of entry ``index`` in the tree of ``size`` (by default :attr:`size`)."""
        return inclusion_proof(index, self._within(size), self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The consistency proof from tree size ``old_size`` to ``new_size`` (by default :attr:`size`)."""
        return consistency_proof(old_size, self._within(new_size), self.node)

    def leaf_hash(self, index: int) -> bytes:
        """The level-0 tile hash of entry ``index``."""
        return self.node(0, index)

    def bundle(self, index: int) -> list[bytes]:
        """The entries of bundle ``index`` (partial when it is the last)."""
        width = min(TILE_WIDTH, self.size - index * TILE_WIDTH)
        if width <= 0:
            raise TlogError(f"entry bundle {index} is beyond tree size {self.size}")
        try:
            return decode_bundle(self._fetch(entries_path(index, width)), width)
        except TlogError:
            if width == TILE_WIDTH:
                raise
            return decode_bundle(self._fetch(entries_path(index)), TILE_WIDTH)[:width]

    def entries_verified(self, root: bytes) -> Iterator[tuple[int, bytes]]:
        """Every entry as ``(index, entry)``, in order. The leaf hashes of all entries are hashed into a tree as
        they come; after the last one, a root other than ``root`` raises TlogError (consume the iterator to the
        end before trusting what it gave)."""
        compact = CompactRange()
        for bundle_index in range((self.size + TILE_WIDTH - 1) // TILE_WIDTH):
            for offset, entry in enumerate(self.bundle(bundle_index)):
                compact.append(leaf_hash(entry))
                yield bundle_index * TILE_WIDTH + offset, entry
        if compact.root() != root:
            raise TlogError(f"the log's entries do not hash to the checkpoint's root (tree size {self.size})")


# --- tlog-proof bundles (c2sp.org/tlog-proof) -----------------------------------------------------------------


def _b64_hash(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TlogError(f"{what} is not base64") from None
    if len(raw) != _HASH or base64.b64encode(raw).decode("ascii") != text:
        raise TlogError(f"{what} is not the canonical base64 of a 32-byte hash")
    return raw


@dataclass(frozen=True)
class TlogProof:
    """A C2SP tlog-proof: entry index, inclusion proof, the checkpoint note verbatim, optional extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        """The proof as text."""
        lines = [PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode("ascii") for h in self.proof]
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint

    @classmethod
    def decode(cls, data: bytes) -> TlogProof:
        """Parse a tlog-proof. Raises TlogError (the checkpoint is checked by whoever opens it)."""
        head, separator, checkpoint = data.partition(b"\n\n")
        if not separator:
            raise TlogError("a tlog-proof has an empty line before its checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise TlogError("a tlog-proof's proof lines are not ASCII") from None
        if lines[0] != PROOF_HEADER:
            raise TlogError(f"a tlog-proof starts with {PROOF_HEADER!r}")
        position, extra = 1, None
        if len(lines) > 1 and lines[1].startswith("extra "):
            try:
                extra = base64.b64decode(lines[1][6:], validate=True)
            except (binascii.Error, ValueError):
                raise TlogError("the tlog-proof's extra line is not base64") from None
            position = 2
        if len(lines) <= position or not lines[position].startswith("index "):
            raise TlogError("a tlog-proof has an 'index N' line")
        index_text = lines[position][6:]
        if not _DECIMAL.fullmatch(index_text):
            raise TlogError(f"tlog-proof index {index_text[:30]!r} is not a decimal without leading zeros")
        proof = tuple(_b64_hash(line, f"tlog-proof hash line {n}") for n, line in enumerate(lines[position + 1 :], 1))
        return cls(int(index_text), proof, checkpoint, extra)


# --- tlog-witness add-checkpoint (c2sp.org/tlog-witness) ------------------------------------------------------


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint: bytes) -> bytes:
    """The body of an add-checkpoint request: ``old <size>``, proof lines, an empty line, the signed checkpoint."""
    if len(proof) > 63:
        raise TlogError("a consistency proof of more than 63 hashes cannot be sent to a witness")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("\n".join(lines) + "\n\n").encode("ascii") + checkpoint


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], bytes]:
    """``(old size, consistency proof, checkpoint note)`` of an add-checkpoint request. Raises TlogError."""
    head, separator, checkpoint = body.partition(b"\n\n")
    if not separator:
        raise TlogError("an add-checkpoint body has an empty line before its checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise TlogError("an add-checkpoint body's proof lines are not ASCII") from None
    if not lines[0].startswith("old ") or not _DECIMAL.fullmatch(lines[0][4:]):
        raise TlogError("an add-checkpoint body starts with 'old <size>'")
    if len(lines) - 1 > 63:
        raise TlogError("an add-checkpoint body holds more than 63 proof lines")
    proof = [_b64_hash(line, f"consistency proof line {n}") for n, line in enumerate(lines[1:], 1)]
    return int(lines[0][4:]), proof, checkpoint
