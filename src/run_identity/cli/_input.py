"""Reading JSON documents given on the command line, strictly: errors name the file and line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError

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


def _no_duplicates(name: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise CliError(f"{name}: duplicate member name {key!r} (ambiguous JSON)")
            out[key] = value
        return out

    return hook


def _reject_constant(name: str) -> Any:
    def hook(token: str) -> Any:
        raise CliError(f"{name}: {token} is not JSON (RFC 8785 has no NaN or Infinity)")

    return hook


def _finite(name: str) -> Any:
    def hook(token: str) -> float:
        value = float(token)
        if math.isinf(value):
            raise CliError(f"{name}: number {token} is outside the range of an IEEE 754 double")
        return value

    return hook


def _integer(name: str, text: str) -> Any:
    """int(token), except past Python's limit on digits: an error with the place (such a number is far
    outside ±(2^53-1) anyway, which the composition's checks would name by path)."""

    def hook(token: str) -> int:
        try:
            return int(token)
        except ValueError:
            at = text.find(token)
            line = text.count("\n", 0, at) + 1
            column = at - (text.rfind("\n", 0, at) + 1) + 1
            digits = len(token.lstrip("-"))
            raise CliError(f"{name}:{line}:{column}: an integer of {digits} digits is outside ±(2^53-1)") from None

    return hook


def load_json(source: str) -> Any:
    """Parse FILE or ``-`` as strict JSON (UTF-8, no duplicate keys, no NaN/Infinity); raises CliError."""
    data, name = read_bytes(source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{name}: not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates(name),
            parse_constant=_reject_constant(name),
            parse_float=_finite(name),
            parse_int=_integer(name, text),
        )
    except json.JSONDecodeError as exc:
        raise CliError(f"{name}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise CliError(f"{name}: JSON nested too deeply") from None
