#!/usr/bin/env python3
"""Run every benchmark in bench/ (or the ones named), each in its own process, one after the other.

    python3 scripts/dev.py bench                 all of them
    python3 scripts/dev.py bench identity verify only bench_identity.py and bench_verify.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {f"bench_{name}.py" for name in argv}
        unknown = wanted - {p.name for p in scripts}
        if unknown:
            print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.name in wanted]
    failed = 0
    for script in scripts:
        print(f"=== {script.stem} ===", flush=True)
        failed |= subprocess.call([sys.executable, str(script)], cwd=HERE.parent) != 0
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
