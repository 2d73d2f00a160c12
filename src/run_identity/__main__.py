"""``python -m run_identity``: the ``run-identity`` command line.

``python -m`` puts the current directory first on ``sys.path``. The package itself (and what its
``__init__`` imports: orjson, cryptography, the OpenTelemetry API) is already loaded when this runs, but
everything the commands import later (the SDK, the exporters, protobuf, rotel) must not come from a stray
file in the folder where the command runs, so the entry is taken off first. The ``run-identity`` script,
and ``python -P -m run_identity`` (Python 3.11+), never look in the current folder at all.
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
