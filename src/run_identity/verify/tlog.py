"""Step 9 (docs/spec.md §12): the runs against a transparency log of their signed statements (``--tlog``).

The log is read as C2SP tlog-tiles from a folder or an http(s) URL (any other fsspec URL with the
``[dask]`` extra). Before any run is judged its checkpoint must verify: the log's Ed25519 note signature
under the log key the verifier trusts, and, when witnesses are trusted, a quorum of their cosignatures
(c2sp.org/tlog-cosignature). A checkpoint that does not is a :class:`LogError`: the whole verification
is refused, since a log that cannot be authenticated vouches for nothing.

Every entry up to the checkpoint's size is read once (entry bundles), hashed into the tree and compared
with the checkpoint's root, and indexed by leaf hash; a run's entry is then looked up there and proven by
an inclusion proof computed from the tiles. Nothing read from the log is trusted unchecked.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from run_identity.core.errors import RunIdentityError
from run_identity.core.merkle import ProofError, leaf_hash, verify_inclusion
from run_identity.core.note import TYPE_COSIGNATURE_V1, TYPE_ED25519, Checkpoint, NoteError, NoteVerifier
from run_identity.core.statement import BindingStatement
from run_identity.core.tlog import TILE_WIDTH, Fetch, TileReader, TlogError, entry_bytes, parse_entry
from run_identity.core.tlog_fetch import fetcher
from run_identity.verify._checks import run_key
from run_identity.verify._codes import NOT_LOGGED
from run_identity.verify._result import LogInclusion

__all__ = [
    "INCLUDED",
    "NOT_CHECKED",
    "CheckedCheckpoint",
    "LogError",
    "LogTrust",
    "MissingRun",
    "TransparencyLog",
    "check_checkpoint",
    "log_fetcher",
    "window_time",
]

INCLUDED = "included"
NOT_CHECKED = "not_checked"


class LogError(RunIdentityError):
    """The transparency log cannot be checked (checkpoint absent, unsigned, short of its witness quorum, or
    its tiles do not match it): no verdict is given. The message names what and where."""


def window_time(text: str) -> str:
    """An RFC 3339 time (``2026-12-07T10:00:00Z``, any fraction, an offset, or a date alone for its midnight
    UTC) as a statement writes ``declared_at``, so the two compare as text. Raises ValueError."""
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-12-07T10:00:00Z") from None
    if when.tzinfo is None:
        if "T" in raw or " " in raw:
            raise ValueError(f"{text!r} has no time zone (add Z for UTC)")
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LogTrust:
    """What the verifier trusts about a log: its key (Ed25519 note key, type 0x01, whose name is the log's
    origin), the witnesses' cosigning keys (type 0x04) and how many of them must cosign, and the audited
    window of ``declared_at`` times, ``since`` included, ``until`` excluded (None: open). Raises ValueError."""

    log_key: NoteVerifier
    witnesses: tuple[NoteVerifier, ...] = ()
    quorum: int = 0
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        if self.log_key.sig_type != TYPE_ED25519:
            name = self.log_key.name
            raise ValueError(f"log key {name}: a log signs its checkpoints with an Ed25519 key (type 0x01)")
        for w in self.witnesses:
            if w.sig_type != TYPE_COSIGNATURE_V1:
                raise ValueError(f"witness key {w.name}: a witness key is a cosignature/v1 key (type 0x04)")
        if len(set(self.witnesses)) != len(self.witnesses):
            raise ValueError("a witness key is given twice")
        if not 0 <= self.quorum <= len(self.witnesses):
            raise ValueError(f"a witness quorum of {self.quorum} needs at least as many witness keys")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"the window since {self.since} until {self.until} is empty")

    def in_window(self, declared_at: str) -> bool:
        """Whether a run declared at ``declared_at`` lies in the audited window."""
        return (self.since is None or declared_at >= self.since) and (self.until is None or declared_at < self.until)


@dataclass(frozen=True)
class CheckedCheckpoint:
    """A checkpoint whose log signature verified, with the witnesses that cosigned it (name, timestamp)."""

    checkpoint: Checkpoint
    note: bytes
    cosigners: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        """What the JSON summary says of the checkpoint."""
        c = self.checkpoint
        return {
            "origin": c.origin,
            "size": c.size,
            "root": base64.b64encode(c.root_hash).decode("ascii"),
            "witnesses": [{"name": n, "timestamp": t} for n, t in self.cosigners],
        }


def check_checkpoint(data: bytes, trust: LogTrust, where: str) -> CheckedCheckpoint:
    """Verify a signed checkpoint: the log's signature (origin = the log key's name), then the trusted
    witnesses' cosignatures against the quorum. Raises LogError naming ``where``."""
    try:
        checkpoint, note, _ = Checkpoint.open(data, trust.log_key)
    except NoteError as exc:
        raise LogError(f"{where}: the checkpoint does not verify under log key {trust.log_key.name}: {exc}") from None
    cosigners: dict[str, int] = {}
    by_id = {(w.name, w.key_id): w for w in trust.witnesses}
    for number, sig in enumerate(note.signatures, 1):
        witness = by_id.get((sig.name, sig.key_id))
        if witness is None:
            continue  # unknown keys are ignored (c2sp.org/signed-note)
        timestamp = witness.verify(note.text, sig.signature)
        if timestamp is None:
            raise LogError(f"{where}: signature line {number}: witness {sig.name}'s cosignature does not verify")
        cosigners.setdefault(sig.name, timestamp)
    if len(cosigners) < trust.quorum:
        named = ", ".join(sorted(cosigners)) or "none"
        raise LogError(
            f"{where}: {len(cosigners)} of {len(trust.witnesses)} trusted witnesses cosigned the checkpoint "
            f"({named}); the quorum is {trust.quorum}"
        )
    return CheckedCheckpoint(checkpoint, bytes(data), tuple(sorted(cosigners.items())))


def log_fetcher(location: str) -> Fetch:
    """A fetch function for a log at a folder, an http(s) URL, or another fsspec URL (``s3://…``)."""
    if "://" not in location or location.startswith(("http://", "https://")):
        return fetcher(location)
    try:
        import fsspec  # the [dask] extra
    except ModuleNotFoundError:
        raise LogError(
            f"--tlog {location}: a URL other than http(s) needs fsspec: pip install 'ai-run-identity[dask]'"
        ) from None

    base = location.rstrip("/") + "/"

    def fetch(path: str) -> bytes:
        try:
            with fsspec.open(base + path, "rb") as f:
                data: bytes = f.read()
                return data
        except (OSError, ValueError) as exc:
            raise TlogError(f"{base + path}: cannot read ({exc})") from None

    return fetch


@dataclass(frozen=True)
class MissingRun:
    """Log entries (index, statement) of one run the export does not hold; signatures verified."""

    key: bytes
    entries: tuple[tuple[int, BindingStatement, bytes], ...]


@dataclass
class _Index:
    leaves: dict[bytes, int] = field(default_factory=dict)
    #: run key -> (index, key id) of the entry declared in the window, or a list of them when there are several
    #: (memory: one tuple per run in the usual case, key ids shared)
    window: dict[bytes, tuple[int, str] | list[tuple[int, str]]] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    unusable: int = 0

    def add(self, key: bytes, index: int, key_id: str) -> None:
        item = (index, self.key_ids.setdefault(key_id, key_id))
        held = self.window.get(key)
        if held is None:
            self.window[key] = item
        elif type(held) is list:
            held.append(item)
        else:
            self.window[key] = [held, item]  # type: ignore[list-item]

    def held(self, key: bytes) -> list[tuple[int, str]]:
        found = self.window.get(key)
        return [] if found is None else found if type(found) is list else [found]  # type: ignore[list-item]


class TransparencyLog:
    """A log opened for verification: its checked checkpoint, its tiles, its entries indexed by leaf hash.

    ``location`` is the log's prefix (folder or URL). Raises LogError when the checkpoint cannot be read, does
    not verify under ``trust``, or its entries (read in full here) do not hash to its root.
    """

    def __init__(self, location: str, trust: LogTrust, *, fetch: Fetch | None = None) -> None:
        self.location = location
        self.trust = trust
        self._fetch = fetch if fetch is not None else log_fetcher(location)
        try:
            data = self._fetch("checkpoint")
        except TlogError as exc:
            raise LogError(f"--tlog {location}: no checkpoint ({exc})") from None
        self.checked = check_checkpoint(data, trust, f"{location.rstrip('/')}/checkpoint")
        self.reader = TileReader(self._fetch, self.size)
        self._index: _Index | None = None
        self._judged: dict[bytes, LogInclusion] = {}
        #: Entries naming a trusted key that are not a canonical entry or whose signature does not verify,
        #: among those looked at for runs missing from the export: a log that appended them misbehaved.
        self.rejected_entries = 0
        self._indexed()  # every entry up to the checkpoint, hashed to its root, before any run is judged

    @property
    def size(self) -> int:
        """The checkpoint's tree size: entries past it are not read (no signature commits to them)."""
        return self.checked.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checked.checkpoint.root_hash

    def _indexed(self) -> _Index:
        if self._index is None:
            index = _Index()
            try:
                for i, entry in self.reader.entries_verified(self.root):
                    index.leaves.setdefault(leaf_hash(entry), i)
                    key, declared_at, key_id = _light(entry)
                    if key is None:
                        index.unusable += 1
                    elif self.trust.in_window(declared_at):
                        index.add(key, i, key_id)
            except TlogError as exc:
                raise LogError(f"--tlog {self.location}: {exc}") from None
            self._index = index
        return self._index

    def inclusion(self, statement: BindingStatement, signature: bytes) -> LogInclusion:
        """Whether the entry of this signed statement is in the log, proven by an inclusion proof from the
        tiles against the checkpoint's root (``included``), or not (``not_logged``, with the reason)."""
        try:
            leaf = leaf_hash(entry_bytes(statement, signature))
        except TlogError as exc:
            return LogInclusion(NOT_LOGGED, None, None, f"the run has no log entry: {exc}")
        judged = self._judged.get(leaf)
        if judged is not None:
            return judged
        encoded = base64.b64encode(leaf).decode("ascii")
        index = self._indexed().leaves.get(leaf)
        if index is None:
            reason = f"its entry (leaf hash {encoded}) is not in the log {self.origin} at tree size {self.size:,}"
            judged = LogInclusion(NOT_LOGGED, None, encoded, reason)
        else:
            try:
                verify_inclusion(leaf, index, self.size, self.reader.inclusion_proof(index), self.root)
                judged = LogInclusion(INCLUDED, index, encoded)
            except (ProofError, TlogError) as exc:
                reason = f"entry {index}'s inclusion proof from the log's tiles does not verify: {exc}"
                judged = LogInclusion(NOT_LOGGED, index, encoded, reason)
        self._judged[leaf] = judged
        return judged

    def others_for(self, trace_id: str, span_id: str) -> list[int]:
        """Indexes of the log's entries (declared in the window) for this run: with a run whose own entry is
        not in the log, they show the producer signed another statement for the same span."""
        return [i for i, _key_id in self._indexed().held(run_key(trace_id, span_id))]

    @property
    def origin(self) -> str:
        return self.checked.checkpoint.origin

    @property
    def unusable_entries(self) -> int:
        """Entries that are no signed statement at all (not JSON of the entry's shape)."""
        return self._indexed().unusable

    def entries_in_window(self) -> int:
        """How many entries (of any producer) were declared in the audited window."""
        index = self._indexed()
        return sum(len(index.held(key)) for key in index.window)

    def missing(
        self,
        included: set[int],
        trusted: Callable[[str], bool],
        verify: Callable[[BindingStatement, bytes], bool],
    ) -> Iterator[MissingRun]:
        """The log's entries in the window that the export does not hold (their index is not in ``included``,
        the indexes the export's verified statements were proven at), signed by a key ``trusted`` accepts,
        whose entry ``verify`` accepts (a valid signature), grouped by run, in log order. An entry is read
        again here and MUST be the one hashed to the root when the log was opened (LogError otherwise: a
        log that serves other bytes the second time vouches for nothing)."""
        index = self._indexed()
        found = []
        for key in index.window:
            ours = [i for i, key_id in index.held(key) if i not in included and trusted(key_id)]
            if ours:
                found.append((ours[0], key, ours))
        bundles: dict[int, list[bytes]] = {}
        for _first, key, ours in sorted(found):
            entries = []
            for i in ours:
                try:
                    bundle = bundles.get(i // TILE_WIDTH)
                    if bundle is None:
                        if len(bundles) > 64:
                            bundles.clear()
                        bundle = bundles[i // TILE_WIDTH] = self.reader.bundle(i // TILE_WIDTH)
                    entry = bundle[i % TILE_WIDTH]
                except (TlogError, IndexError) as exc:
                    raise LogError(f"--tlog {self.location}: entry {i} cannot be read again ({exc})") from None
                if index.leaves.get(leaf_hash(entry)) != i:
                    raise LogError(
                        f"--tlog {self.location}: entry {i} read again is not the entry hashed to the checkpoint's "
                        "root when the log was opened (the log changed while it was read, or its server lies)"
                    )
                try:
                    statement, signature = parse_entry(entry)
                except TlogError:
                    self.rejected_entries += 1
                    continue
                if verify(statement, signature):
                    entries.append((i, statement, signature))
                else:
                    self.rejected_entries += 1
            if entries:
                yield MissingRun(key, tuple(entries))


def _light(entry: bytes) -> tuple[bytes | None, str, str]:
    """The run key, declared_at and key id of an entry, read leniently for the index (an entry reported as
    deletion evidence is parsed strictly and its signature verified first)."""
    try:
        statement = orjson.loads(entry)["statement"]
        declared, key_id = statement["declared_at"], statement["key_id"]
        key = run_key(statement["trace_id"], statement["span_id"])
        if type(declared) is not str or type(key_id) is not str or len(key) != 24:
            return None, "", ""
        return key, declared, key_id
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, "", ""
