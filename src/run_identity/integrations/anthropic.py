"""The Anthropic client integration: identity from the request itself, a receipt for the output.

    import run_identity.integrations.anthropic as ri_anthropic
    ri_anthropic.instrument()
    message = client.messages.create(model=..., max_tokens=..., messages=[...])
    receipt = run_identity.receipt_of(message)

    # a hand declaration of the same call, for a span started elsewhere (the capture's composition):
    with run_identity.declare(ri_anthropic.composition_of(request, client)):
        ...

Patched: ``messages.create`` (sync and async, ``stream=True`` or not) and ``messages.stream(...)`` (sync
and async; the request is captured when the stream manager is entered, and the receipt is made when the
stream has been read to its end, however the application reads it). Headers, query, timeout and the API
key are never captured. Mapping: docs/spec.md, Annex A (normative), and docs/integrations/anthropic.md.
"""

from __future__ import annotations

import copy
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import LoggerProvider
from opentelemetry.trace import TracerProvider

from run_identity.core.keys import Signer
from run_identity.integrations._anthropic_map import MessagesAccumulator, messages_composition, messages_output
from run_identity.integrations._capture import CaptureStats
from run_identity.integrations._patch import Integration, Target
from run_identity.integrations._receipts import Output
from run_identity.integrations._values import reusable
from run_identity.integrations.openai import endpoint_of, request_body
from run_identity.otel.installed import find_identity_processor

__all__ = ["composition_of", "instrument", "is_instrumented", "stats", "uninstrument"]


def composition_of(request: dict[str, Any], client: Any = None) -> dict[str, Any]:
    """The composition of an Anthropic Messages request, exactly as the integration captures it (docs/spec.md,
    Annex A).

    ``request`` holds the keyword arguments of ``client.messages.create(...)`` as they will be sent
    (``extra_body`` merged at the top; ``extra_headers``, ``extra_query`` and ``timeout`` left out). The
    ``system`` field is the ``instructions`` component; ``messages`` are the conversation. ``client`` (an
    ``Anthropic``/``AsyncAnthropic`` client) gives ``model.endpoint`` (its base URL and ``/v1/messages``);
    without it the model has no endpoint. For ``messages.stream(...)``, which sends ``"stream": true``, add
    ``stream=True`` to ``request``. Declaring the result gives the call the identity its capture gives it.
    A one-shot iterator among ``messages`` or ``tools`` is read into a list in ``request`` (so the call
    still sends it); nothing else in it changes. Raises CaptureError for a value with no JSON form or a
    model that is not a string.
    """
    reusable(request, ("messages", "tools"))
    endpoint = endpoint_of(client, "/v1/messages") if client is not None else None
    return copy.deepcopy(messages_composition(request_body(request), endpoint=endpoint))


class _Endpoint:
    operation = "chat"

    def composition(self, instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        reusable(kwargs, ("messages", "tools"))
        body = request_body(kwargs)
        return messages_composition(body, endpoint=endpoint_of(getattr(instance, "_client", None), "/v1/messages"))

    def output(self, response: Any) -> Output | None:
        return messages_output(response)

    def accumulator(self) -> MessagesAccumulator:
        return MessagesAccumulator()

    def streams(self, kwargs: dict[str, Any]) -> bool:
        return kwargs.get("stream") is True

    def client_spans(self, instance: Any, provider: object) -> bool:
        """anthropic 2.17+ traces its own calls (a ``chat`` GenAI span, unless ``ANTHROPIC_OPEN_TELEMETRY=false``
        or ``open_telemetry=False``): when that span goes to ``provider``, it takes the declaration."""
        options = getattr(getattr(instance, "_client", None), "open_telemetry", None)
        if not isinstance(options, dict) or not (options.get("traces") or {}).get("enabled"):
            return False
        client_provider = options.get("tracer_provider") or trace_api.get_tracer_provider()
        return client_provider is provider and find_identity_processor(provider) is not None


class _StreamEndpoint(_Endpoint):
    """``messages.stream(...)`` sends ``"stream": true`` beside its arguments."""

    def composition(self, instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return super().composition(instance, {**kwargs, "stream": True})

    def streams(self, kwargs: dict[str, Any]) -> bool:
        return True


_MESSAGES = _Endpoint()
_STREAM = _StreamEndpoint()
_MODULE = "anthropic.resources.messages.messages"
TARGETS = (
    Target(_MODULE, "Messages", "create", "sync", _MESSAGES),
    Target(_MODULE, "AsyncMessages", "create", "async", _MESSAGES),
    Target(_MODULE, "Messages", "stream", "manager", _STREAM),
    Target(_MODULE, "AsyncMessages", "stream", "async_manager", _STREAM),
)
_INTEGRATION = Integration("anthropic", TARGETS)


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    signer: Signer | None = None,
    logger_provider: LoggerProvider | None = None,
    salt: bytes | None = None,
    own_span: bool | None = None,
    strict: bool = False,
    export_output: bool = True,
) -> bool:
    """Capture every Anthropic Messages call from now on; False when ``anthropic`` is missing.

    Options as for :func:`run_identity.integrations.openai.instrument`.
    """
    return _INTEGRATION.instrument(
        tracer_provider=tracer_provider,
        signer=signer,
        logger_provider=logger_provider,
        salt=salt,
        own_span=own_span,
        strict=strict,
        export_output=export_output,
    )


def uninstrument() -> None:
    """Stop capturing and restore the methods."""
    _INTEGRATION.uninstrument()


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _INTEGRATION.is_instrumented()


def stats() -> CaptureStats:
    """The counters of the current instrumentation (zeros when not instrumented)."""
    return _INTEGRATION.stats()
