"""Compact forms of run summaries, so the run table costs a few hundred bytes per run.

A clean pending span, a clean pending manifest, and a run whose span and manifest joined cleanly are each
packed into one ``bytes`` object; what many runs share (key id, spec version, telemetry, model, file) lives
once in a :class:`Profiles` registry and is named by its index. Anything with a finding, a note or an
unusual field stays an ordinary summary object.
"""

from __future__ import annotations

import struct
from typing import Any

from run_identity.verify._checks import ManifestSummary, SpanSummary, Telemetry, typed_key

__all__ = ["JOINED", "MANIFEST", "SPAN", "Profiles", "pack_manifest", "pack_span", "pack_verified"]

SPAN, MANIFEST, JOINED = b"S"[0], b"M"[0], b"V"[0]
_DECLARED = 27  # RFC 3339 with six fractional digits: 2026-11-22T02:07:12.123456Z
# tag, identity, signature, declared_at, position, index, profile
_SPAN = struct.Struct(f"<B32s64s{_DECLARED}sQII")
# tag, identity, binding, fingerprint, declared_at, position, index, profile
_MANIFEST = struct.Struct(f"<B32s16s16s{_DECLARED}sQII")
# tag, identity, binding, fingerprint, declared_at, span position, index, profile, manifest position, ...
_VERIFIED = struct.Struct(f"<B32s16s16s{_DECLARED}sQIIQII")


class Profiles:
    """Values shared by many runs, stored once and named by a small integer."""

    def __init__(self) -> None:
        self._index: dict[tuple[tuple[Any, ...], Any], int] = {}
        self._items: list[tuple[Any, ...]] = []
        # The last profile added, by its length (span and manifest profiles differ in length): consecutive
        # runs of one application add the same one, recognised without hashing its telemetry again.
        self._recent: dict[int, tuple[tuple[Any, ...], Telemetry, int]] = {}

    def add(self, profile: tuple[Any, ...], telemetry: Telemetry) -> int:
        """The number of ``profile``, which holds ``telemetry``: equal profiles share one only when their
        telemetry values also have the same types (:func:`typed_key`)."""
        recent = self._recent.get(len(profile))
        # The same telemetry object and an equal profile: the same types, hence the same number.
        if recent is not None and recent[1] is telemetry and recent[0] == profile:
            return recent[2]
        key = (profile, typed_key(telemetry)[1])
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self._items)
            self._items.append(profile)
        self._recent[len(profile)] = (profile, telemetry, found)
        return found

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return self._items[index]


def _identity(identity: str) -> bytes | None:
    return bytes.fromhex(identity[7:]) if len(identity) == 71 else None


def _fits(statement: tuple[str, str, str, str]) -> bool:
    return len(statement[0]) == 71 and len(statement[2]) == _DECLARED and statement[2].isascii()


def pack_span(span: SpanSummary, profiles: Profiles) -> bytes | None:
    """A clean identified span packed, or None when it must stay an object."""
    st = span.statement
    if st is None or span.problem or span.error or span.signature is None or not _fits(st):
        return None
    profile = profiles.add((span.source, st[1], st[3], span.telemetry), span.telemetry)
    return _SPAN.pack(SPAN, _identity(st[0]), span.signature, st[2].encode(), span.position, span.index, profile)


def unpack_span(blob: bytes, key: bytes, profiles: Profiles) -> SpanSummary:
    _, identity, signature, declared, position, index, profile = _SPAN.unpack(blob)
    source, key_id, spec, telemetry = profiles[profile]
    statement = ("sha256:" + identity.hex(), key_id, declared.decode(), spec)
    return SpanSummary(key, source, position, index, True, statement, signature, telemetry)


def _manifest_profile(m: ManifestSummary, profiles: Profiles) -> int:
    return profiles.add((m.source, m.statement[1], m.statement[3], m.telemetry, m.unknown, m.model), m.telemetry)


def pack_manifest(m: ManifestSummary, profiles: Profiles) -> bytes | None:
    """A clean manifest packed, or None when it must stay an object."""
    if m.findings or m.notes or not m.bound or not _fits(m.statement) or m.identity != m.statement[0]:
        return None
    profile = _manifest_profile(m, profiles)
    return _MANIFEST.pack(
        MANIFEST,
        _identity(m.identity),
        m.binding,
        m.fingerprint,
        m.statement[2].encode(),
        m.position,
        m.index,
        profile,
    )


def packed_statement(blob: bytes, profiles: Profiles) -> tuple[str, str, str, str]:
    """The statement (without its ids) of a packed pending manifest."""
    _, identity, _, _, declared, _, _, profile = _MANIFEST.unpack(blob)
    _, key_id, spec, *_ = profiles[profile]
    return ("sha256:" + identity.hex(), key_id, declared.decode(), spec)


def _manifest(
    key: bytes,
    identity: bytes,
    binding: bytes,
    fingerprint: bytes,
    declared: bytes,
    pos: int,
    idx: int,
    prof: tuple[Any, ...],
) -> ManifestSummary:
    source, key_id, spec, telemetry, unknown, model = prof
    full = "sha256:" + identity.hex()
    statement = (full, key_id, declared.decode(), spec)
    return ManifestSummary(
        key, source, pos, idx, full, statement, binding, (), telemetry, unknown, fingerprint, model, True
    )


def unpack_manifest(blob: bytes, key: bytes, profiles: Profiles) -> ManifestSummary:
    _, identity, binding, fingerprint, declared, position, index, profile = _MANIFEST.unpack(blob)
    return _manifest(key, identity, binding, fingerprint, declared, position, index, profiles[profile])


def pack_verified(span: SpanSummary, m: ManifestSummary, profiles: Profiles) -> bytes | None:
    """A run whose span and manifest joined cleanly, packed (both summaries can be rebuilt from it)."""
    st = span.statement
    if st is None or span.problem or span.error or span.signature is None or not _fits(st):
        return None
    if m.findings or m.notes or not m.bound or m.identity != st[0]:
        return None
    return _VERIFIED.pack(
        JOINED,
        _identity(m.identity),
        m.binding,
        m.fingerprint,
        st[2].encode(),
        span.position,
        span.index,
        profiles.add((span.source, st[1], st[3], span.telemetry), span.telemetry),
        m.position,
        m.index,
        _manifest_profile(m, profiles),
    )


def unpack_verified(blob: bytes, key: bytes, profiles: Profiles) -> tuple[SpanSummary, ManifestSummary]:
    """The span and manifest summaries of a packed verified run (the span's signature is not kept)."""
    _, identity, binding, fingerprint, declared, s_pos, s_idx, s_prof, m_pos, m_idx, m_prof = _VERIFIED.unpack(blob)
    manifest = _manifest(key, identity, binding, fingerprint, declared, m_pos, m_idx, profiles[m_prof])
    source, _, _, telemetry = profiles[s_prof]
    span = SpanSummary(key, source, s_pos, s_idx, True, manifest.statement, None, telemetry)
    return span, manifest


def verified_view(
    blob: bytes, profiles: Profiles
) -> tuple[str, str, str, str | None, tuple[int, int, int], tuple[int, int, int]]:
    """What a verified result shows: identity, key id, declared_at, model, span and manifest locations."""
    _, identity, _, _, declared, s_pos, s_idx, s_prof, m_pos, m_idx, m_prof = _VERIFIED.unpack(blob)
    s_source = profiles[s_prof][0]
    m_source, key_id, _, _, _, model = profiles[m_prof]
    return (
        "sha256:" + identity.hex(),
        key_id,
        declared.decode(),
        model,
        (s_source, s_pos, s_idx),
        (m_source, m_pos, m_idx),
    )


def same_span(blob: bytes, span: SpanSummary, profiles: Profiles, binding: bytes) -> bool:
    """Whether ``span`` repeats the span packed in a verified run (same statement, signature, telemetry)."""
    fields = _VERIFIED.unpack(blob)
    return (
        fields[2] == binding
        and profiles[fields[7]][3] == span.telemetry
        and span.problem is None
        and span.error is None
    )
