"""The ``demo`` command: the main job, end to end (see run_identity.demo)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError

__all__ = ["invocation", "register"]


def _as_typed(path: str, names: tuple[str, ...]) -> str:
    """``path`` as the user's shell would run it: its bare name when PATH finds this very file, else a path."""
    for name in names:
        found = shutil.which(name)
        if found and os.path.abspath(found) == os.path.abspath(path):
            return name
    relative = os.path.relpath(path)
    return shlex.quote(relative if not relative.startswith(os.pardir) else os.path.abspath(path))


def _started_with_python_m() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "run_identity.__main__"


def invocation(argv0: str | None = None, *, as_module: bool | None = None) -> str:
    """How to run ``run-identity`` again from the shell that started this process.

    ``run-identity`` when PATH finds the script that is running, else its path (``.venv/bin/run-identity``);
    ``python -m run_identity`` (with the interpreter's path when needed) when started that way.
    """
    if as_module if as_module is not None else _started_with_python_m():
        return f"{_as_typed(sys.executable, ('python3', 'python'))} -m run_identity"
    argv0 = argv0 if argv0 is not None else (sys.argv[0] if sys.argv else "")
    if Path(argv0).name in ("run-identity", "run-identity.exe"):
        return _as_typed(argv0, ("run-identity",))
    return "run-identity"


def _demo(args: argparse.Namespace) -> int:
    from run_identity.demo import run_demo

    command = invocation()
    if args.collector:
        from run_identity.pipeline.collector import CollectorUnavailable

        try:
            return run_demo(args.out, collector=True, stream=sys.stdout, command=command)
        except CollectorUnavailable as exc:
            raise CliError(f"--collector: {exc} (run without --collector for the embedded export)") from None
    return run_demo(args.out, stream=sys.stdout, command=command)


def register(sub: Any) -> None:
    """Add the demo command."""
    p = sub.add_parser("demo", help="the main job: declare example runs, export, verify, print the table")
    p.add_argument("--out", default="out/demo", metavar="DIR", help="keys and exported data (default out/demo)")
    p.add_argument(
        "--collector", action="store_true", help="export through a local rotel collector into run-identity serve"
    )
    p.set_defaults(func=_demo)
