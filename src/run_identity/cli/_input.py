"""Reading JSON documents given on the command line, strictly: errors name the file and line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.core.strict_json import RepeatedMemberError, StrictJsonError, loads_strict

__all__ = ["load_json", "read_bytes"]


def read_bytes(source: str) -> tuple[bytes, str]:
    """The bytes of FILE, or of stdin for ``-``; returns (data, display name)."""
    if source == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        return Path(source).read_bytes(), source
    except FileNotFoundError:
        raise CliError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{source}: is a directory") from None
    except OSError as exc:
        raise CliError(f"{source}: cannot read ({exc.strerror})") from None


def load_json(source: str) -> Any:
    """Parse FILE or ``-`` as strict JSON (run_identity.core.strict_json.loads_strict); raises CliError.

    UTF-8 only; no member named twice in an object at any depth, no NaN/Infinity, no lone surrogate, no
    number outside the range of a double, nesting within ``MAX_JSON_DEPTH``. The error names the place.
    """
    data, name = read_bytes(source)
    try:
        return loads_strict(data)
    except RepeatedMemberError as exc:
        where = f" in {exc.path}" if exc.path else ""
        raise CliError(f"{name}: duplicate member name {exc.member[:80]!r}{where} (ambiguous JSON)") from None
    except StrictJsonError as exc:
        if exc.line is not None:
            raise CliError(f"{name}:{exc.line}:{exc.column}: {exc.reason}") from None
        raise CliError(f"{name}: {exc}") from None
