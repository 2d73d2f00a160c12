"""The counters an :class:`~run_identity.otel.processor.IdentitySpanProcessor` keeps: ``coverage``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Coverage"]


@dataclass(frozen=True)
class Coverage:
    """Counters of an :class:`IdentitySpanProcessor`, read at one instant.

    ``genai_spans`` = ``identified`` + ``undeclared`` + ``failed``. ``manifest_failures`` counts identified
    runs whose manifest could not be handed to the Logs SDK; ``manifests_lost`` those handed over that the
    export pipeline reported lost afterwards (see :meth:`IdentitySpanProcessor.count_manifest_losses`).
    ``declarations_unclaimed`` counts ``declare`` blocks that exited with their declaration claimed by no
    span (no GenAI span started in the block, those that did had another operation or model, or a client
    integration captured the call); they are not GenAI spans, so not in ``genai_spans``. ``spans_lost`` counts
    run spans (those carrying an identity) that the span export pipeline dropped or lost (see
    :meth:`IdentitySpanProcessor.count_span_losses`): ``verify`` would report their runs ``span_missing``.
    """

    genai_spans: int = 0
    identified: int = 0
    undeclared: int = 0
    failed: int = 0
    manifests_emitted: int = 0
    manifest_failures: int = 0
    manifests_lost: int = 0
    declarations_unclaimed: int = 0
    spans_lost: int = 0

    @property
    def ratio(self) -> float:
        """Share of GenAI spans that carry an identity (1.0 when there were none)."""
        return self.identified / self.genai_spans if self.genai_spans else 1.0
