"""The ``run-identity`` command line: a thin layer over the library.

Each command lives in its own module exposing ``register(subparsers)``, which adds a subparser whose
``func(args) -> int`` runs it. User errors (bad input, missing files) are one line on stderr and exit 1;
usage errors exit 2; nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from run_identity.core.errors import RunIdentityError
from run_identity.core.version import __version__

__all__ = ["OPTIONAL_MODULES", "CliError", "main", "missing_extra"]

#: Modules that only an extra installs, and the extra that does (pyproject.toml, [project.optional-dependencies]).
OPTIONAL_MODULES = {
    "opentelemetry.exporter.otlp.proto.grpc": "otlp",
    "opentelemetry.exporter.otlp.proto.http": "otlp",
    "rotel": "collector",
}


class CliError(RunIdentityError):
    """A user error the CLI reports as one line, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that installs the module ``exc`` did not find, or None when no extra does."""
    name = exc.name or ""
    for module, extra in OPTIONAL_MODULES.items():
        if name == module or name.startswith(module + "."):
            return extra
    return None


def _escaped(exc: Exception) -> str:
    """An error's text with control characters visible: it may quote untrusted input (a member name, a path)."""
    from run_identity.verify.render import esc

    return esc(exc)


def _parser(prog: str) -> argparse.ArgumentParser:
    from run_identity.cli import _core, _demo, _relay, _replay, _serve, _verify

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Verifiable identities for AI runs, carried by OpenTelemetry.",
    )
    parser.add_argument("--version", action="version", version=f"run-identity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (_core, _verify, _serve, _relay, _demo, _replay):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "run-identity") -> int:
    """Run the CLI; returns the exit code (0 ok, 1 invalid input or failed check, 2 usage error).

    ``prog`` is how the user invoked it (``python -m run_identity`` passes its own), shown in usage lines.
    """
    parser = _parser(prog)
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"run-identity: error: {_escaped(exc)}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(
            f"run-identity: error: {args.command} needs the '{extra}' extra ({exc.name} is not installed): "
            f"pip install 'ai-run-identity[{extra}]'",
            file=sys.stderr,
        )
        return 1
    except RunIdentityError as exc:
        print(f"run-identity: error: {_escaped(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("run-identity: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
