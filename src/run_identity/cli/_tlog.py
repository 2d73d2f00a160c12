"""The ``tlog`` command group: the transparency log of runs (docs/spec.md, "Transparency log").

A relying party's commands (check-consistency, proof, verify-proof) and the witness live in their own modules;
each adds its subcommands to this group.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``tlog`` command and its subcommands."""
    from run_identity.cli import _tlog_check, _tlog_proof, _tlog_witness

    p = sub.add_parser("tlog", help="the transparency log of runs: check consistency, proofs, witness")
    group = p.add_subparsers(dest="tlog_command", metavar="SUBCOMMAND")
    group.required = True
    _tlog_check.register_commands(group)
    _tlog_proof.register_proof_commands(group)
    _tlog_witness.register_commands(group)
