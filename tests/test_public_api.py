"""The package facade: every public name resolves, and the verifier side loads no SDK code."""

from __future__ import annotations

import subprocess
import sys

import pytest

import run_identity


@pytest.mark.parametrize("name", run_identity.__all__)
def test_every_public_name_resolves(name: str) -> None:
    """Each name in run_identity.__all__ is an attribute of the package (lazy ones load on access)."""
    assert getattr(run_identity, name) is not None


def test_unknown_attribute_raises_attribute_error() -> None:
    """A name that is not public raises AttributeError, as for any module."""
    with pytest.raises(AttributeError):
        run_identity.no_such_name  # noqa: B018


def test_verifier_import_loads_no_sdk() -> None:
    """Importing run_identity.verify (and the package) imports nothing from opentelemetry-sdk."""
    code = (
        "import sys, run_identity, run_identity.verify;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
