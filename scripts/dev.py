#!/usr/bin/env python3
"""The project's commands, each setting up its own virtual environment first.

    python3 scripts/dev.py demo [ARGS...]    run the main job (run-identity demo)
    python3 scripts/dev.py test [ARGS...]    run the whole test suite (pytest)
    python3 scripts/dev.py bench [ARGS...]   run the benchmarks in bench/
    python3 scripts/dev.py proto [--check]   regenerate (or check) the protobuf code
    python3 scripts/dev.py lint              ruff and mypy
    python3 scripts/dev.py setup             only create (or refresh) the environment

The environment lives in ``.venv`` and is rebuilt when ``pyproject.toml`` or
``requirements/constraints.txt`` change, printing one line per stage and pip's own output. Only ``python3``
and the package registries are needed. The user-facing install (a wheel in a clean environment, no dev
extras) is checked by ``scripts/install_check.py``, which ``.ci/run`` runs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("RUN_IDENTITY_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
INPUTS = [ROOT / "pyproject.toml", ROOT / "requirements" / "constraints.txt"]
EXTRAS = "dev,collector"


def _fingerprint() -> str:
    h = hashlib.sha256(EXTRAS.encode())
    for path in INPUTS:
        h.update(path.read_bytes())
    return h.hexdigest()


def _stage(number: int, total: int, text: str) -> None:
    print(f"[{number}/{total}] {text}", flush=True)


def ensure_env() -> None:
    """Create or refresh .venv so that it holds exactly what the project pins; one line per stage."""
    stamp = VENV / ".run-identity-installed"
    want = _fingerprint()
    if PY.exists() and stamp.exists() and stamp.read_text() == want:
        return
    started = time.monotonic()
    fresh = not PY.exists()
    print(f"setting up {VENV} ({'first run' if fresh else 'pyproject.toml or the pins changed'}):", flush=True)
    if fresh:
        _stage(1, 3, f"creating the virtual environment ({sys.executable} -m venv)")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    else:
        _stage(1, 3, "reusing the virtual environment")
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check"]
    _stage(2, 3, "upgrading pip")
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    _stage(3, 3, f"installing ai-run-identity[{EXTRAS}] (editable) and its pinned dependencies; pip's output follows")
    subprocess.run(
        [*pip, "install", "-c", str(ROOT / "requirements" / "constraints.txt"), "-e", f".[{EXTRAS}]"],
        check=True,
        cwd=ROOT,
    )
    stamp.write_text(want)
    print(f"{VENV} is ready ({time.monotonic() - started:.0f} s)", flush=True)


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it, else absolute."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith(os.pardir) else relative


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "bench", "proto", "lint", "setup"}:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    ensure_env()
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if cmd == "setup":
        return 0
    if cmd == "demo":
        # In the caller's folder and with the caller's PATH, so that the commands the demo suggests at the end
        # (.venv/bin/run-identity ... out/demo/...) run as printed in the caller's shell.
        return subprocess.call([str(BIN / "run-identity"), "demo", *(rest or ["--out", _shown(ROOT / "out" / "demo")])])
    if cmd == "test":
        args = [str(PY), "-m", "pytest", *rest]
    elif cmd == "bench":
        args = [str(PY), str(ROOT / "bench" / "run.py"), *rest]
    elif cmd == "proto":
        args = [str(PY), str(ROOT / "scripts" / "gen_proto.py"), *rest]
    else:
        rc = subprocess.call([str(BIN / "ruff"), "check", "src", "tests", "bench", "scripts"], cwd=ROOT, env=env)
        return rc or subprocess.call([str(BIN / "mypy")], cwd=ROOT, env=env)
    return subprocess.call(args, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
