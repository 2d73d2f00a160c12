"""The ``demo`` command: the main job, end to end (see run_identity.demo)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from run_identity.cli import CliError

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from run_identity.demo import run_demo

    if args.collector:
        from run_identity.collector import CollectorUnavailable

        try:
            return run_demo(args.out, collector=True, stream=sys.stdout)
        except CollectorUnavailable as exc:
            raise CliError(f"--collector: {exc} (run without --collector for the embedded export)") from None
    return run_demo(args.out, stream=sys.stdout)


def register(sub: Any) -> None:
    """Add the demo command."""
    p = sub.add_parser("demo", help="the main job: declare example runs, export, verify, print the table")
    p.add_argument("--out", default="out/demo", metavar="DIR", help="keys and exported data (default out/demo)")
    p.add_argument(
        "--collector", action="store_true", help="export through a local rotel collector into run-identity serve"
    )
    p.set_defaults(func=_demo)
