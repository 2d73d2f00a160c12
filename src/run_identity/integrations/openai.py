"""The OpenAI client integration: identity from the request itself, a receipt for the output.

    import run_identity.integrations.openai as ri_openai
    ri_openai.instrument()          # after other OpenAI instrumentations, if any
    reply = client.chat.completions.create(model=..., messages=[...])
    receipt = run_identity.receipt_of(reply)

    # a hand declaration of the same call, for a span started elsewhere (the capture's composition):
    with run_identity.declare(ri_openai.composition_of(request, client)):
        ...

Patched: ``chat.completions.create`` and ``responses.create``, sync and async, streamed or not, and
``responses.stream(...)`` (captured when its manager is entered). The
composition is built from the request body the client sends (the keyword arguments, with ``extra_body``
merged at the top as the client does; never headers, query, timeout or the API key) and declared before
the request goes out. When an OpenTelemetry instrumentation (e.g. genai-openai) wraps the method, its span
takes the declaration; otherwise this integration starts a GenAI span that follows the semantic
conventions. Mapping: docs/spec.md, Annex A (normative), and docs/integrations/openai.md.
"""

from __future__ import annotations

import copy
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from opentelemetry._logs import LoggerProvider
from opentelemetry.trace import TracerProvider

from run_identity.core.keys import Signer
from run_identity.integrations._capture import CaptureStats
from run_identity.integrations._openai_map import chat_composition, responses_composition
from run_identity.integrations._openai_output import (
    ChatAccumulator,
    ResponsesAccumulator,
    chat_output,
    responses_output,
)
from run_identity.integrations._patch import Integration, Target
from run_identity.integrations._receipts import Output
from run_identity.integrations._values import CaptureError, omitted, plain, reusable

__all__ = ["composition_of", "instrument", "is_instrumented", "request_body", "stats", "uninstrument"]

_CALL_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


def endpoint_of(client: Any, path: str) -> str | None:
    """The URL the request goes to: the client's base URL (no credentials, no query) and the API path."""
    base = getattr(client, "base_url", None)
    if base is None:
        return None
    parts = urlsplit(str(base))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, "", ""))


def provider_of(client: Any) -> str:
    """``azure.ai.openai`` for an Azure client, ``openai`` otherwise (``gen_ai.provider.name`` values)."""
    return "azure.ai.openai" if "Azure" in type(client).__name__ else "openai"


def request_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body a create call sends: its arguments, and ``extra_body`` merged over them."""
    body = {k: plain(v, k) for k, v in kwargs.items() if k not in _CALL_OPTIONS and not omitted(v)}
    extra = kwargs.get("extra_body")
    if extra:
        body.update(plain(extra, "extra_body"))
    return body


def composition_of(
    request: dict[str, Any],
    client: Any = None,
    *,
    api: Literal["chat.completions", "responses"] = "chat.completions",
) -> dict[str, Any]:
    """The composition of an OpenAI request, exactly as the integration captures it (docs/spec.md, Annex A).

    ``request`` holds the keyword arguments of ``client.chat.completions.create(...)`` (``api=
    "chat.completions"``, the default) or of ``client.responses.create(...)`` (``api="responses"``), as they
    will be sent: ``extra_body`` is merged at the top, and ``extra_headers``, ``extra_query`` and ``timeout``
    are left out, as the client and the capture do. ``client`` (an ``OpenAI``/``AsyncOpenAI`` or Azure client)
    gives ``model.endpoint`` (its base URL and the API path) and ``model.provider`` (``azure.ai.openai`` for
    an Azure client); without it the model has no endpoint and the provider is ``openai``. Declaring the
    result (``run_identity.declare(composition_of(request, client))``) gives the call the identity its
    capture gives it. Chat Completions system and developer messages stay in ``messages``, in their place;
    the Responses ``instructions`` field is the ``instructions`` component. For ``responses.stream(...)``,
    which sends ``"stream": true``, add ``stream=True`` to ``request``. ``request`` is changed only where
    it holds a one-shot iterator (``messages``, ``input`` or ``tools``): that is read into a list, as the
    capture does, so the call still sends it. Raises CaptureError for a value with no JSON form or a model that is
    not a string, ValueError for an unknown ``api``.
    """
    if api == "chat.completions":
        reusable(request, ("messages", "tools", "functions"))
        make, path = chat_composition, "/chat/completions"
    elif api == "responses":
        reusable(request, ("input", "tools"))
        make, path = responses_composition, "/responses"
    else:
        raise ValueError(f"api must be 'chat.completions' or 'responses', not {api!r}")
    body = request_body(request)
    provider = provider_of(client) if client is not None else "openai"
    endpoint = endpoint_of(client, path) if client is not None else None
    return copy.deepcopy(make(body, provider=provider, endpoint=endpoint))


class _Endpoint:
    operation = "chat"

    def __init__(self, responses: bool) -> None:
        self._responses = responses

    def composition(self, instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        reusable(kwargs, ("input", "tools") if self._responses else ("messages", "tools", "functions"))
        client = getattr(instance, "_client", None)
        make = responses_composition if self._responses else chat_composition
        path = "/responses" if self._responses else "/chat/completions"
        return make(request_body(kwargs), provider=provider_of(client), endpoint=endpoint_of(client, path))

    def output(self, response: Any) -> Output | None:
        return responses_output(response) if self._responses else chat_output(response)

    def accumulator(self) -> ChatAccumulator | ResponsesAccumulator:
        return ResponsesAccumulator() if self._responses else ChatAccumulator()

    def streams(self, kwargs: dict[str, Any]) -> bool:
        if kwargs.get("stream") is True:
            return True
        extra = kwargs.get("extra_body")
        return isinstance(extra, dict) and extra.get("stream") is True


class _ResponsesStreamEndpoint(_Endpoint):
    """``responses.stream(...)``: a manager whose ``__enter__`` sends ``responses.create(stream=True)``.

    Captured when entered (before an instrumentation wrapping ``stream`` starts its span). Resuming a
    response (``response_id``) sends no model request: not captured. ``text_format`` is turned into the
    request's ``text`` field by the client, which is not reproduced here: such a call is sent without an
    identity (a capture failure, logged once).
    """

    def applies(self, kwargs: dict[str, Any]) -> bool:
        return kwargs.get("response_id") is None or omitted(kwargs["response_id"])

    def composition(self, instance: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("text_format") is not None and not omitted(kwargs["text_format"]):
            raise CaptureError("responses.stream(text_format=...) is not captured")
        return super().composition(instance, {**kwargs, "stream": True})

    def streams(self, kwargs: dict[str, Any]) -> bool:
        return True


_CHAT = _Endpoint(responses=False)
_RESPONSES = _Endpoint(responses=True)
_RESPONSES_STREAM = _ResponsesStreamEndpoint(responses=True)
_RESPONSES_MODULE = "openai.resources.responses.responses"
TARGETS = (
    Target("openai.resources.chat.completions.completions", "Completions", "create", "sync", _CHAT),
    Target("openai.resources.chat.completions.completions", "AsyncCompletions", "create", "async", _CHAT),
    Target(_RESPONSES_MODULE, "Responses", "create", "sync", _RESPONSES),
    Target(_RESPONSES_MODULE, "AsyncResponses", "create", "async", _RESPONSES),
    Target(_RESPONSES_MODULE, "Responses", "stream", "manager", _RESPONSES_STREAM),
    Target(_RESPONSES_MODULE, "AsyncResponses", "stream", "async_manager", _RESPONSES_STREAM),
)
_INTEGRATION = Integration("openai", TARGETS)


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
    """Capture every OpenAI chat completion and response from now on; False when ``openai`` is missing.

    ``tracer_provider`` (default: the global one) holds the identity processor whose signer, salt and
    manifests' LoggerProvider the receipts use, unless ``signer``/``logger_provider``/``salt`` are given.
    ``own_span``: None starts a GenAI span only where no OpenTelemetry instrumentation wraps the method;
    True/False force it. ``strict`` raises capture failures (for tests); ``export_output=False`` leaves the
    output out of the exported receipt (its digest stays). Calling it again changes nothing.
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
