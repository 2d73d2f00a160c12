"""Finding the identity processor: on a TracerProvider, or the one zero-code installation put in place.

One per process at most. Code below the zero-code layer (the completion hook of
:mod:`run_identity.integrations`) finds it here, so that it need not import the installation itself.
"""

from __future__ import annotations

from run_identity.otel.processor import IdentitySpanProcessor

__all__ = ["find_identity_processor", "installed_processor", "register_installed"]

_installed: list[IdentitySpanProcessor] = []


def installed_processor() -> IdentitySpanProcessor | None:
    """The processor zero-code installation put in place in this process, if any."""
    return _installed[0] if _installed else None


def register_installed(processor: IdentitySpanProcessor) -> None:
    """Record the processor zero-code installation put in place (the first one stays)."""
    if not _installed:
        _installed.append(processor)


def find_identity_processor(provider: object) -> IdentitySpanProcessor | None:
    """The IdentitySpanProcessor on an SDK TracerProvider, or None."""
    active = getattr(provider, "_active_span_processor", None)
    for processor in getattr(active, "_span_processors", ()):
        if isinstance(processor, IdentitySpanProcessor):
            return processor
    return None
