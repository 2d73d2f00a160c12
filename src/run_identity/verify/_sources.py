"""Where exported data is read from: paths and fsspec URLs, files and folders (prefixes).

A folder or prefix is read whole, sorted, dotfiles skipped, in whatever layout the exporters wrote
(``awss3exporter``'s time-partitioned keys, the file exporter's rotated files). URLs (``s3://…``, ``gs://…``,
``file://…``) need fsspec and the filesystem's own package (the ``[dask]`` extra).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

from run_identity.core.errors import RunIdentityError

__all__ = ["InputError", "discover", "input_size", "is_url", "open_input"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class InputError(RunIdentityError):
    """An input path cannot be read at all (missing, unreadable); no record of it can be checked."""


def is_url(path: str) -> bool:
    """True for an fsspec URL (``scheme://…``), read through fsspec rather than the local filesystem."""
    return _URL.match(path) is not None


def _fs(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: reading URLs needs fsspec (pip install 'ai-run-identity[dask]')") from None
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise InputError(f"{url}: {exc}") from None
    return fs, root


def discover(inputs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The files to read: each file given, and every file below each folder given (sorted, no dotfiles).

    A URL names a file or a folder (prefix) the same way. Raises InputError for a path that does not exist.
    """
    files: list[str] = []
    for item in inputs:
        if isinstance(item, str) and is_url(item):
            files.extend(_discover_url(item))
            continue
        path = Path(item)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if found.is_file() and not any(part.startswith(".") for part in rel):
                    files.append(str(found))
        elif path.is_file():
            files.append(str(path))
        elif path.exists():
            raise InputError(f"{path}: not a regular file or folder")
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def _discover_url(url: str) -> list[str]:
    fs, root = _fs(url)
    try:
        if fs.isdir(root):
            base = root.rstrip("/")
            found = []
            for name in sorted(fs.find(base)):
                rel = name[len(base) :].strip("/").split("/")
                if not any(part.startswith(".") for part in rel):
                    found.append(fs.unstrip_protocol(name))
            return found
        if fs.isfile(root):
            return [url]
    except OSError as exc:
        raise InputError(f"{url}: cannot read ({exc})") from None
    raise InputError(f"{url}: no such file or folder")


def input_size(path: str) -> int:
    """The size in bytes of an input file (as stored: compressed files count compressed). Raises InputError."""
    try:
        if is_url(path):
            fs, root = _fs(path)
            return int(fs.size(root))
        return os.path.getsize(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def open_input(path: str) -> BinaryIO:
    """An input file opened for reading bytes (seekable), a path or a URL. Raises OSError."""
    if is_url(path):
        fs, root = _fs(path)
        return cast(BinaryIO, fs.open(root, "rb"))
    return open(path, "rb")
