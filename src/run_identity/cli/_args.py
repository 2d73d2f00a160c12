"""Checks of option values that argparse's ``type=`` cannot express: port ranges, URLs, worker counts.

Each raises :class:`~run_identity.cli.CliError` with exit code 2 (a usage error), so a bad value is one line
on stderr naming the option, never a traceback from deep inside a server or an HTTP client.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from run_identity.cli import CliError

__all__ = ["MAX_JOBS", "check_jobs", "check_port", "check_positive", "check_url"]

#: More worker processes than this is a typo, not a plan (each one holds a verifier and its input).
MAX_JOBS = 256


def check_port(value: int, option: str, *, allow_zero: bool = True) -> int:
    """``value`` when it is a TCP port number (0, "any free port", only with ``allow_zero``)."""
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise CliError(f"{option} {value}: not a port number ({low} to 65535)", exit_code=2)
    return value


def check_url(value: str, option: str) -> str:
    """``value`` when it is an ``http://`` or ``https://`` URL with a host (and a valid port, if any)."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise CliError(f"{option} {value!r}: not a URL ({exc})", exit_code=2) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"{option} {value!r}: not an http:// or https:// URL with a host", exit_code=2)
    if port == 0:
        raise CliError(f"{option} {value!r}: port 0 is not a destination", exit_code=2)
    if parts.query or parts.fragment:
        raise CliError(f"{option} {value!r}: a base URL takes no ?query or #fragment", exit_code=2)
    return value


def check_jobs(value: int, option: str = "--jobs") -> int:
    """``value`` when it is a worker count from 0 (one per core) to :data:`MAX_JOBS`."""
    if not 0 <= value <= MAX_JOBS:
        raise CliError(f"{option} {value}: give 0 (one per core) to {MAX_JOBS} worker processes", exit_code=2)
    return value


def check_positive(value: float, option: str) -> float:
    """``value`` when it is a number of seconds above zero."""
    if not value > 0 or value != value or value == float("inf"):
        raise CliError(f"{option} {value}: give a number of seconds above 0", exit_code=2)
    return value
