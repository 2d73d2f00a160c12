"""The ``tlog`` command group: the transparency log of runs (docs/spec.md §15, docs/tlog.md).

Each module below adds its subcommands to the group: the log operator's (``keygen``, ``serve``) and the
relying party's (``check-consistency``, ``proof``, ``verify-proof``), and the witness's (``witness``,
``witness-keygen``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``tlog`` command and its subcommands."""
    from run_identity.cli import _tlog_check, _tlog_log, _tlog_proof, _tlog_witness

    p = sub.add_parser("tlog", help="the transparency log of runs: run a log, check it, witness it")
    group = p.add_subparsers(dest="tlog_command", metavar="SUBCOMMAND")
    group.required = True
    _tlog_log.register_commands(group)
    _tlog_check.register_commands(group)
    _tlog_proof.register_proof_commands(group)
    _tlog_witness.register_commands(group)
