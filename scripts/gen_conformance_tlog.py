"""The transparency-log cases of the conformance suite (``tlog-*``, docs/spec.md §11.1 and §12 step 9).

A case with a log holds, beside ``input/`` and the keyring: ``tlog/`` (the log as C2SP tlog-tiles:
``checkpoint``, ``tile/...``), ``tlog.vkey`` (the log's verifier key), ``witness-1.vkey``... (trusted witness
keys) and ``tlog.json`` (optional: ``{"witness_quorum": n, "since": time, "until": time}``). Keys and
cosignature times are fixed, so the cases are the same on every run. A case whose checkpoint must be refused
expects no run at all and exit status 1 (``"log_refused": true``).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import verify_fixtures as vf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tlog_fixtures import entries_of, publish

from run_identity.core.keys import Keyring
from run_identity.core.note import TYPE_COSIGNATURE_V1, NoteSigner
from run_identity.verify.tlog import LogTrust

if TYPE_CHECKING:
    from gen_conformance import Suite

__all__ = ["log_cases"]

ORIGIN = "conformance.run-identity.invalid/log"
#: When the witnesses cosign (2026-11-22T12:00:00Z).
COSIGNED_AT = 1_795_348_800


def _key(label: str, name: str, sig_type: int = 1) -> NoteSigner:
    seed = hashlib.sha256(f"conformance tlog {label}".encode()).digest()
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed), sig_type)


LOG = _key("log", ORIGIN)
OTHER_LOG = _key("impostor", ORIGIN)
WITNESSES = [_key(f"witness {i}", f"witness{i}.conformance.invalid", TYPE_COSIGNATURE_V1) for i in (1, 2)]


def _write_log(case: Any, entries: list[bytes], *, signer: NoteSigner = LOG, cosigners: int = 0) -> None:
    publish(
        case.directory / "tlog", entries, signer, cosigners=WITNESSES[:cosigners], origin=ORIGIN, timestamp=COSIGNED_AT
    )
    (case.directory / "tlog.vkey").write_text(LOG.verifier.vkey() + "\n", encoding="ascii")


def _trust(case: Any, *, witnesses: int = 0, **window: Any) -> None:
    """The log trust of the case: written as files, and given to the reference verifier."""
    for i, w in enumerate(WITNESSES[:witnesses], 1):
        (case.directory / f"witness-{i}.vkey").write_text(w.verifier.vkey() + "\n", encoding="ascii")
    options = {k: v for k, v in window.items() if v is not None}
    if options:
        (case.directory / "tlog.json").write_text(json.dumps(options, indent=2) + "\n", encoding="utf-8")
    quorum = options.get("witness_quorum", witnesses)
    case.log_trust = LogTrust(
        LOG.verifier, tuple(w.verifier for w in WITNESSES[:witnesses]), quorum, options.get("since"),
        options.get("until"),
    )  # fmt: skip


def _drop(t: Any, label: str) -> None:
    """Remove every record of the run ``label`` from the input (its span and its manifest record)."""
    run = t.export.run(label)
    for scope in t.traces[0]["resourceSpans"][0]["scopeSpans"]:
        scope["spans"] = [s for s in scope["spans"] if s["spanId"] != run.span_id]
    for scope in t.manifests[0]["resourceLogs"][0]["scopeLogs"]:
        scope["logRecords"] = [r for r in scope["logRecords"] if r["spanId"] != run.span_id]


def log_cases(suite: Suite, finish: Any) -> None:
    """Write the ``tlog-*`` cases."""
    pristine = suite.pristine
    keyring = Keyring([vf.signer().public_key])
    entries = entries_of(pristine.directory, keyring)
    labels = [r.label for r in pristine.runs]
    assert len(entries) == len(labels)

    def case(name: str, description: str, **options: Any) -> tuple[Any, Any]:
        c = suite.case(f"tlog-{name}", description, **options)
        t = suite.copy(c)
        return c, t

    c, t = case("every-run-logged", "§12 step 9: a log holding every run: each inclusion proof verifies", want_exit=0)
    t.save()
    _write_log(c, entries)
    _trust(c)
    finish(c)

    c, t = case(
        "run-not-logged", "§12 step 9: a run whose entry the log lacks is not_logged", want={labels[1]: "not_logged"},
        want_exit=1,
    )  # fmt: skip
    t.save()
    _write_log(c, [e for i, e in enumerate(entries) if i != 1])
    _trust(c)
    finish(c)

    c, t = case(
        "run-not-logged-allowed", "§12.1: not_logged tolerated by the policy (a log known to lag)",
        want={labels[1]: "not_logged"}, policy={"allow": ["not_logged"]}, want_exit=0,
    )  # fmt: skip
    t.save()
    _write_log(c, [e for i, e in enumerate(entries) if i != 1])
    _trust(c)
    finish(c)

    c, t = case(
        "missing-from-export",
        "§12 step 9: a run removed from the export (span and manifest) is in the log: missing_from_export",
        want={labels[2]: "missing_from_export"}, want_exit=1,
    )  # fmt: skip
    _drop(t, labels[2])
    t.save()
    _write_log(c, entries)
    _trust(c)
    finish(c)

    last_declared = json.loads(entries[-1])["statement"]["declared_at"]
    c, t = case(
        "window-until",
        "§12 step 9, §12.1 lag rule: the last run is not in the log, but declared at or after --until: a check "
        "not made; the run removed from the export is declared before --until: missing_from_export",
        want={labels[0]: "missing_from_export"}, want_exit=1,
    )  # fmt: skip
    _drop(t, labels[0])
    t.save()
    _write_log(c, entries[:-1])
    _trust(c, until=last_declared)
    finish(c)

    c, t = case(
        "window-since", "§12 step 9: a run removed from the export, declared before --since: not required", want_exit=0
    )
    _drop(t, labels[0])
    t.save()
    _write_log(c, entries)
    _trust(c, since=json.loads(entries[1])["statement"]["declared_at"])
    finish(c)

    c, t = case("checkpoint-signed-by-another-key", "§12 step 9: the checkpoint does not verify: no run is judged",
                want_exit=1)  # fmt: skip
    t.save()
    _write_log(c, entries, signer=OTHER_LOG)
    _trust(c)
    finish(c)

    edited = "§12 step 9: the checkpoint's tree size edited after signing: refused"
    c, t = case("checkpoint-edited", edited, want_exit=1)
    t.save()
    _write_log(c, entries)
    note = (c.directory / "tlog" / "checkpoint").read_bytes()
    (c.directory / "tlog" / "checkpoint").write_bytes(note.replace(f"\n{len(entries)}\n".encode(), b"\n4\n", 1))
    _trust(c)
    finish(c)

    c, t = case(
        "witness-quorum-met", "§12 step 9: two trusted witnesses, quorum 2, both cosigned", want_exit=0
    )
    t.save()
    _write_log(c, entries, cosigners=2)
    _trust(c, witnesses=2, witness_quorum=2)
    finish(c)

    c, t = case(
        "witness-quorum-not-met", "§12 step 9: two trusted witnesses, quorum 2, one cosigned: refused", want_exit=1
    )
    t.save()
    _write_log(c, entries, cosigners=1)
    _trust(c, witnesses=2, witness_quorum=2)
    finish(c)
