"""ai-run-identity: a verifiable identity for every AI run, carried by OpenTelemetry."""

from __future__ import annotations

__version__ = "0.1.0"
