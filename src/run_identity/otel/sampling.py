"""A sampler wrapper that keeps declared GenAI spans recording, so their manifests are never lost.

The OpenTelemetry SDK calls span processors only for *recording* spans: a span the sampler drops never
reaches ``IdentitySpanProcessor.on_start``, so its declared composition would get no identity and no
manifest. :class:`IdentitySampler` wraps any sampler and turns its ``DROP`` into ``RECORD_ONLY`` for a GenAI
span that a pending declaration applies to. The span stays unsampled (its sampled flag is clear, span
exporters skip it, the trace is exactly as sampled as before), but it records, so the processor binds
the identity and emits the manifest, whose log record carries the span's ids and unsampled flags.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from run_identity.otel.declare import current_declaration

__all__ = ["IdentitySampler"]

_OPERATION = "gen_ai.operation.name"
_MODEL = "gen_ai.request.model"


class IdentitySampler(Sampler):
    """Delegates to ``sampler`` (default: the SDK default, parent-based always-on), except that a dropped
    GenAI span with a pending declaration is recorded (unsampled) instead of dropped."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        self._delegate: Sampler = sampler if sampler is not None else ParentBased(ALWAYS_ON)

    @property
    def delegate(self) -> Sampler:
        return self._delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP:
            return result
        declaration = current_declaration(parent_context)
        if declaration is None and parent_context is not None:
            declaration = current_declaration()
        if declaration is None or declaration.claimed:
            return result
        if not declaration.targeted:
            operation = attributes.get(_OPERATION) if attributes else None
            model = attributes.get(_MODEL) if attributes else None
            if operation is None:
                return result
            if not declaration.applies_to(operation, model):
                declaration.missed(None, operation, model)  # dropped: the processor will not see it
                return result
        return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)

    def get_description(self) -> str:
        return f"IdentitySampler{{{self._delegate.get_description()}}}"
