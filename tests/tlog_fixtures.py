"""Test helpers for the transparency log: a demo export, and a tiled log of entries published to a folder.

``publish`` writes what a log serves (checkpoint, tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]) with the
project's codecs, so tests can build logs that diverge, lag or lie; the log service has its own tests.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Sequence
from contextlib import redirect_stdout
from pathlib import Path

from run_identity.core.keys import Keyring
from run_identity.core.merkle import CompactRange, leaf_hash
from run_identity.core.note import TYPE_COSIGNATURE_V1, Checkpoint, NoteSigner, generate_signer, sign_note
from run_identity.core.tlog import (
    TILE_HEIGHT,
    TILE_WIDTH,
    encode_bundle,
    encode_tile,
    entries_path,
    entry_bytes,
    tile_path,
)
from run_identity.demo import run_demo
from run_identity.verify import Policy, Verifier

ORIGIN = "tlog.test/runs"


def entries_of(export: Path, keyring: Keyring) -> list[bytes]:
    """The log entry of each run of ``export`` whose signature verifies, in the order of the results."""
    report = Verifier(keyring, Policy()).verify([export])
    return [entry_bytes(*r.signed) for r in report.results() if r.signed is not None]


def demo_export(out: Path) -> tuple[Path, Path, list[bytes]]:
    """A demo export under ``out`` (12 runs): its folder, the keyring, and each run's log entry in run order."""
    with redirect_stdout(io.StringIO()):
        assert run_demo(out, stream=io.StringIO()) == 0
    jwks = out / "keys" / "trusted-keys.jwks.json"
    report = Verifier(Keyring.from_jwks(jwks), Policy()).verify([out / "export"])
    entries = []
    for result in report.results():
        assert result.signed is not None
        entries.append(entry_bytes(*result.signed))
    return out / "export", jwks, entries


def publish(
    directory: Path,
    entries: Sequence[bytes],
    signer: NoteSigner,
    *,
    cosigners: Iterable[NoteSigner] = (),
    origin: str | None = None,
    timestamp: int | None = None,
) -> bytes:
    """Write the tiles, entry bundles and a signed checkpoint of a log holding ``entries``; the checkpoint.
    ``cosigners`` cosign it at ``timestamp`` (default: now)."""
    size = len(entries)
    compact = CompactRange()
    levels: dict[int, list[bytes]] = {}
    for entry in entries:
        for level, _index, h in compact.append(leaf_hash(entry)):
            if level % TILE_HEIGHT == 0:
                levels.setdefault(level // TILE_HEIGHT, []).append(h)
    for tile_level, hashes in levels.items():
        for start in range(0, len(hashes), TILE_WIDTH):
            chunk = hashes[start : start + TILE_WIDTH]
            _write(directory / tile_path(tile_level, start // TILE_WIDTH, len(chunk)), encode_tile(chunk))
    for start in range(0, size, TILE_WIDTH):
        chunk = list(entries[start : start + TILE_WIDTH])
        _write(directory / entries_path(start // TILE_WIDTH, len(chunk)), encode_bundle(chunk))
    text = Checkpoint(origin or signer.name, size, compact.root()).text()
    note = sign_note(text, [signer]).to_bytes()
    now = int(time.time()) if timestamp is None else timestamp
    for cosigner in cosigners:
        note += cosigner.sign(text, timestamp=now).line().encode()
    _write(directory / "checkpoint", note)
    return note


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def log_signer(name: str = ORIGIN) -> NoteSigner:
    """A fresh log key."""
    return generate_signer(name)


def witness_signer(name: str) -> NoteSigner:
    """A fresh witness (cosignature/v1) key."""
    return generate_signer(name, TYPE_COSIGNATURE_V1)
