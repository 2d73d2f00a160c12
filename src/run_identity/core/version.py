"""The installed package's version, read from its metadata: ``pyproject.toml`` is the one place it is written."""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    __version__: str = metadata.version("ai-run-identity")
except metadata.PackageNotFoundError:  # the source tree put on sys.path without an install
    __version__ = "0+unknown"
