"""The collector's files: the ``rotel-agent`` binary of the ``rotel`` package, and the configuration folder.

:mod:`run_identity.pipeline.collector` re-exports these names; they live here so the collector module
itself keeps to running rotel and the local pipeline.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

from run_identity.core.errors import RunIdentityError

__all__ = [
    "CONFIG_DIR_ENV",
    "ENV_FILE",
    "PACKAGE_CONFIG_DIR",
    "CollectorError",
    "CollectorUnavailable",
    "default_config_dir",
    "load_env_file",
    "rotel_agent_path",
    "rotel_version",
]

#: Overrides where the collector configuration (``rotel.env``, the router) is looked for.
CONFIG_DIR_ENV = "RUN_IDENTITY_COLLECTOR_CONFIG"
ENV_FILE = "rotel.env"


class CollectorError(RunIdentityError):
    """The collector could not be configured, started or stopped."""


class CollectorUnavailable(CollectorError):
    """rotel is not installed here, or its binary cannot run on this machine."""


def rotel_agent_path() -> Path:
    """The ``rotel-agent`` binary of the installed ``rotel`` package.

    Raises :class:`CollectorUnavailable` when the package or its binary is missing.
    """
    spec = importlib.util.find_spec("rotel")
    if spec is None or spec.origin is None:
        raise CollectorUnavailable(
            "the rotel package is not installed (pip install 'ai-run-identity[collector]')"
        )
    agent = Path(spec.origin).parent / "rotel-agent"
    if not agent.is_file() or not os.access(agent, os.X_OK):
        raise CollectorUnavailable(f"the rotel wheel has no runnable binary at {agent}")
    return agent


def rotel_version(agent: Path | None = None, *, timeout: float = 15.0) -> str:
    """``rotel-agent version``'s output; raises :class:`CollectorUnavailable` when the binary cannot run."""
    agent = agent or rotel_agent_path()
    try:
        done = subprocess.run(
            [str(agent), "version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CollectorUnavailable(f"{agent} cannot run here: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise CollectorUnavailable(
            f"{agent} cannot run here (exit {done.returncode}): {detail[-1] if detail else 'no output'}"
        )
    return done.stdout.strip()


#: The configuration shipped in the package (rotel.env, the manifest router, otelcol-contrib.yaml).
PACKAGE_CONFIG_DIR = Path(__file__).resolve().parents[1] / "collector_config"


def default_config_dir() -> Path:
    """The collector configuration folder: ``$RUN_IDENTITY_COLLECTOR_CONFIG`` when set, else the package's.

    Never the current directory: rotel loads the Python router it names, so only a folder the user chose
    explicitly, or the installed package's own, is used. Raises :class:`CollectorError` when the folder
    holds no ``rotel.env``.
    """
    override = os.environ.get(CONFIG_DIR_ENV)
    directory = Path(override) if override else PACKAGE_CONFIG_DIR
    if not (directory / ENV_FILE).is_file():
        where = f"${CONFIG_DIR_ENV}={override}" if override else str(directory)
        raise CollectorError(f"no collector configuration: {ENV_FILE} is missing in {where}")
    return directory.resolve()


def load_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (``#`` comments and blank lines skipped, no shell expansion).

    Raises :class:`CollectorError` on a line that is not ``KEY=VALUE``.
    """
    env: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().replace("_", "").isalnum():
            raise CollectorError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        env[key.strip()] = value.strip()
    return env
