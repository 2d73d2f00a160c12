"""Options that name a transparency log and the keys trusted for it (``verify --tlog``, ``tlog …``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from run_identity.cli import CliError
from run_identity.core.note import NoteError, NoteVerifier
from run_identity.verify.render import esc
from run_identity.verify.tlog import LogError, LogTrust, TransparencyLog, window_time

__all__ = ["add_log_options", "load_vkey", "log_trust", "open_log"]


def load_vkey(value: str, option: str) -> NoteVerifier:
    """The verifier key ``value`` names: a file holding it (``log.vkey``), or the vkey text itself."""
    text, where = value, f"{option} {value}"
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"{where}: cannot read the key file ({exc})") from None
    elif "+" not in value:
        raise CliError(f"{where}: no such file, and not a verifier key <name>+<hex id>+<base64 key>")
    try:
        return NoteVerifier.from_vkey(text)
    except NoteError as exc:
        raise CliError(f"{where}: {exc}") from None


def add_log_options(p: argparse.ArgumentParser, *, window: bool = True) -> None:
    """``--tlog DIR_OR_URL --tlog-key VKEY [--witness-key VKEY]... [--witness-quorum N] [--since T] [--until T]``."""
    p.add_argument("--tlog", metavar="DIR_OR_URL", help="check every run against this transparency log (tiles)")
    p.add_argument("--tlog-key", metavar="VKEY", help="the log's verifier key (a log.vkey file, or the key text)")
    p.add_argument(
        "--witness-key",
        action="append",
        metavar="VKEY",
        help="a trusted witness's cosignature key (file or text; repeatable)",
    )
    p.add_argument(
        "--witness-quorum",
        type=int,
        metavar="N",
        help="how many trusted witnesses must cosign the checkpoint (default: every --witness-key)",
    )
    if window:
        p.add_argument("--since", metavar="TIME", help="audited window: runs declared at or after TIME (RFC 3339)")
        p.add_argument("--until", metavar="TIME", help="audited window: runs declared before TIME (RFC 3339)")


def log_trust(args: argparse.Namespace) -> LogTrust:
    """The trust the options give (usage errors exit 2, unreadable keys 1)."""
    if not getattr(args, "tlog_key", None):
        raise CliError("--tlog needs --tlog-key VKEY (the log's verifier key)", exit_code=2)
    witnesses = tuple(load_vkey(w, "--witness-key") for w in getattr(args, "witness_key", None) or ())
    quorum = getattr(args, "witness_quorum", None)
    if quorum is None:
        quorum = len(witnesses)
    elif not witnesses or not 1 <= quorum <= len(witnesses):
        raise CliError(
            f"--witness-quorum {quorum}: give between 1 and the number of --witness-key options ({len(witnesses)})",
            exit_code=2,
        )
    bounds: dict[str, str | None] = {}
    for name in ("since", "until"):
        value = getattr(args, name, None)
        try:
            bounds[name] = None if value is None else window_time(value)
        except ValueError as exc:
            raise CliError(f"--{name} {esc(exc)}", exit_code=2) from None
    try:
        return LogTrust(load_vkey(args.tlog_key, "--tlog-key"), witnesses, quorum, bounds["since"], bounds["until"])
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None


def open_log(args: argparse.Namespace) -> TransparencyLog | None:
    """The log of ``--tlog``, its checkpoint verified, or None without ``--tlog`` (its other options are then
    a usage error). A checkpoint that does not verify exits 1 with one line."""
    tlog: Any = getattr(args, "tlog", None)
    if tlog is None:
        given = [o for o in ("tlog_key", "witness_key", "witness_quorum", "since", "until") if getattr(args, o, None)]
        if given:
            raise CliError(f"--{given[0].replace('_', '-')} needs --tlog DIR_OR_URL", exit_code=2)
        return None
    trust = log_trust(args)
    try:
        return TransparencyLog(tlog, trust)
    except LogError as exc:
        raise CliError(f"transparency log not verified: {exc}") from None
