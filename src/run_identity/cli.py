"""The run-identity command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("run-identity: not yet", file=sys.stderr)
    return 2
