"""``python -m run_identity``: the ``run-identity`` command line.

``python -m`` puts the current directory first on ``sys.path``; it is taken off before the CLI is imported,
so a stray module in the directory where the command runs (an ``orjson.py``, an ``opentelemetry/``) is never
loaded in place of an installed one.
"""

from __future__ import annotations

import os
import sys


def _drop_current_directory() -> None:
    if sys.path and sys.path[0] in ("", os.curdir, os.getcwd()):
        del sys.path[0]


if __name__ == "__main__":
    _drop_current_directory()
    from run_identity.cli import main

    sys.exit(main(prog="python -m run_identity"))
