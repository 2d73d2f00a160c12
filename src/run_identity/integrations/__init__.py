"""Client integrations: the composition is captured from the request the LLM client sends.

``run_identity.integrations.openai.instrument()`` and ``run_identity.integrations.anthropic.instrument()``
patch the client libraries; :func:`instrument` enables several by name (what ``RUN_IDENTITY_CAPTURE``
does under ``opentelemetry-instrument``). Guides: docs/integrations/.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import Any

from run_identity.integrations._capture import CaptureStats
from run_identity.integrations._values import CaptureError

__all__ = ["INTEGRATIONS", "CaptureError", "CaptureStats", "instrument", "uninstrument"]

#: The integrations by name.
INTEGRATIONS = ("openai", "anthropic")
_LOG = logging.getLogger("run_identity")


def instrument(names: Iterable[str], **options: Any) -> list[str]:
    """Enable the named integrations (unknown names are logged and skipped); returns those enabled."""
    enabled = []
    for name in names:
        if name not in INTEGRATIONS:
            _LOG.warning("run_identity: unknown integration %r (known: %s)", name, ", ".join(INTEGRATIONS))
            continue
        module = importlib.import_module(f"run_identity.integrations.{name}")
        if module.instrument(**options):
            enabled.append(name)
        else:
            _LOG.warning(
                "run_identity: integration %r not enabled: its client library is not installed, or none of its "
                "methods could be patched",
                name,
            )
    return enabled


def uninstrument(names: Iterable[str] = INTEGRATIONS) -> None:
    """Disable the named integrations (all by default)."""
    for name in names:
        if name in INTEGRATIONS:
            importlib.import_module(f"run_identity.integrations.{name}").uninstrument()
