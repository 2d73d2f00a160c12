"""The ``run-identity`` command line: a thin layer over the library.

Each command lives in its own module exposing ``register(subparsers)``, which adds a subparser whose
``func(args) -> int`` runs it. User errors (bad input, missing files) are one line on stderr and exit 1;
usage errors exit 2; nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from run_identity import __version__
from run_identity.errors import RunIdentityError

__all__ = ["CliError", "main"]


class CliError(RunIdentityError):
    """A user error the CLI reports as one line, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def _parser() -> argparse.ArgumentParser:
    from run_identity.cli import _core, _demo, _replay, _serve, _verify

    parser = argparse.ArgumentParser(
        prog="run-identity",
        description="Verifiable identities for AI runs, carried by OpenTelemetry.",
    )
    parser.add_argument("--version", action="version", version=f"run-identity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (_core, _verify, _serve, _demo, _replay):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 invalid input or failed check, 2 usage error)."""
    parser = _parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"run-identity: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunIdentityError as exc:
        print(f"run-identity: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("run-identity: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
