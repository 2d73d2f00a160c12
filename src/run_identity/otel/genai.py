"""Starting the GenAI span ourselves, for applications without GenAI instrumentation.

:func:`start_genai_span` declares the composition and starts the span it applies to, named and attributed
as the OpenTelemetry GenAI semantic conventions say for a model call: name
``{gen_ai.operation.name} {gen_ai.request.model}``, kind CLIENT, attributes ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, the request parameters (``gen_ai.request.temperature``,
``gen_ai.request.max_tokens``... per ``PARAMETER_ATTRIBUTES``) and ``server.address``/``server.port`` from
the model endpoint. The attributes are written *from* the composition; nothing is read back from them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, SpanKind, TracerProvider
from opentelemetry.util.types import AttributeValue

from run_identity.core.composition import PARAMETER_ATTRIBUTES, Composition
from run_identity.core.version import __version__
from run_identity.otel.declare import Declaration, component_value, context_with

__all__ = ["genai_span_attributes", "start_genai_span"]

_SCOPE = "run_identity"


def _parameters(composition: Composition | Mapping[str, Any]) -> Mapping[str, Any]:
    value = component_value(composition, "parameters")
    return value if type(value) is dict else {}


def _attribute_value(value: object) -> AttributeValue | None:
    if type(value) in (str, bool, int, float):
        return value  # type: ignore[return-value]
    if type(value) is list and value and all(type(v) is str for v in value):
        return tuple(value)
    return None


def genai_span_attributes(declaration: Declaration) -> tuple[str, dict[str, AttributeValue]]:
    """The semantic-convention span name and attributes for the declared composition."""
    attributes: dict[str, AttributeValue] = {}
    if declaration.operation:
        attributes["gen_ai.operation.name"] = declaration.operation
    if declaration.provider is not None:
        attributes["gen_ai.provider.name"] = declaration.provider
    if declaration.model is not None:
        attributes["gen_ai.request.model"] = declaration.model
    for key, value in _parameters(declaration.composition).items():
        name = PARAMETER_ATTRIBUTES.get(key)
        converted = _attribute_value(value) if name is not None else None
        if name is not None and converted is not None:
            attributes[name] = converted
    try:
        model = component_value(declaration.composition, "model")
        endpoint = model.get("endpoint") if type(model) is dict else None
        if type(endpoint) is str:
            parts = urlsplit(endpoint)
            if parts.hostname:
                attributes["server.address"] = parts.hostname
            if parts.port is not None:
                attributes["server.port"] = parts.port
    except (ValueError, AttributeError):  # a malformed endpoint is reported by the processor, not here
        pass
    # An invalid composition (no operation or model) still gets a span; the processor marks its error.
    name = " ".join(part for part in (declaration.operation, declaration.model) if part) or "gen_ai"
    return name, attributes


@contextmanager
def start_genai_span(
    composition: Composition | Mapping[str, Any],
    *,
    tracer_provider: TracerProvider | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.CLIENT,
    record_exception: bool = True,
    set_status_on_exception: bool = True,
) -> Iterator[Span]:
    """Declare ``composition`` and start (as current) the GenAI span it applies to; yields the span.

    ``attributes`` are added to the semantic-convention ones. The span ends when the block exits; an
    exception is recorded on it and re-raised. Without a tracer provider, the global one is used.
    """
    declaration = Declaration(composition, targeted=True)
    name, span_attributes = genai_span_attributes(declaration)
    if attributes:
        span_attributes.update(attributes)
    tracer = trace_api.get_tracer(_SCOPE, __version__, tracer_provider)
    with tracer.start_as_current_span(
        name,
        context=context_with(declaration),
        kind=kind,
        attributes=span_attributes,
        record_exception=record_exception,
        set_status_on_exception=set_status_on_exception,
    ) as span:
        yield span
