"""Reproducing a run from its manifest: rebuild the exact request, send it, compare identity and output.

The request is rebuilt from the composition by the inverse of the client integration's mapping (the API is
named by the path of ``model.endpoint``: ``/chat/completions``, ``/responses`` or ``/v1/messages``). The
rebuilt request is mapped forward again: its identity must equal the manifest's, which proves that what is
sent is what was declared. The reply (JSON or server-sent events) becomes the run's output (spec §10.4),
compared with the original receipt's output digest and, when the receipt carries its output, as a diff.

The request carries the user's API key, so where it goes is never the manifest's choice: it goes to the base
URL the user names, else to the official endpoint of the manifest's provider (:data:`OFFICIAL_BASE_URLS`).
The manifest's own ``model.endpoint`` is used only when the caller asks for it (``use_manifest_endpoint``),
which the CLI allows only for a run that verified against trusted keys. Whatever the target, it must be
https (plain http only to a loopback address), and redirects are never followed.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from run_identity.core.composition import Composition
from run_identity.core.digest import compute_identity
from run_identity.core.errors import RunIdentityError
from run_identity.core.manifest import Manifest
from run_identity.core.receipt import Receipt, output_digest
from run_identity.integrations._anthropic_map import (
    MessagesAccumulator,
    messages_body,
    messages_composition,
    messages_output,
)
from run_identity.integrations._mapping import Unmapped
from run_identity.integrations._openai_map import chat_body, chat_composition, responses_body, responses_composition
from run_identity.integrations._openai_output import (
    ChatAccumulator,
    ResponsesAccumulator,
    chat_output,
    responses_output,
)
from run_identity.integrations._receipts import Output

__all__ = [
    "OFFICIAL_BASE_URLS",
    "ReplayError",
    "ReplayOutcome",
    "ReplayRequest",
    "check_endpoint",
    "output_text",
    "rebuild",
    "send",
]

ANTHROPIC_VERSION = "2023-06-01"

OFFICIAL_BASE_URLS: Final[dict[str, str]] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
"""The provider's own API, by ``gen_ai.provider.name``, as a base URL given to its client library. A run of
another provider (``azure.ai.openai`` has one endpoint per resource) is replayed only to a base URL named."""


class ReplayError(RunIdentityError):
    """A run cannot be replayed (content withheld, an API this tool does not know, a failed request)."""


@dataclass(frozen=True)
class _Api:
    name: str
    path: str
    to_body: Any
    to_composition: Any
    output: Any
    accumulator: Any
    key_env: str


_APIS = (
    _Api("chat", "/chat/completions", chat_body, chat_composition, chat_output, ChatAccumulator, "OPENAI_API_KEY"),
    _Api(
        "responses",
        "/responses",
        responses_body,
        responses_composition,
        responses_output,
        ResponsesAccumulator,
        "OPENAI_API_KEY",
    ),
    _Api(
        "messages",
        "/v1/messages",
        messages_body,
        lambda body, provider, endpoint: messages_composition(body, endpoint=endpoint),
        messages_output,
        MessagesAccumulator,
        "ANTHROPIC_API_KEY",
    ),
)


@dataclass(frozen=True)
class ReplayRequest:
    """The rebuilt request: which API, the URL, the JSON body, and the identity the body recomputes to."""

    api: str
    provider: str
    url: str
    body: dict[str, Any]
    identity: str
    original_identity: str
    key_env: str
    target: str = "named"
    """Where ``url`` comes from: ``named`` (the caller's base URL), ``official`` (the provider's endpoint,
    :data:`OFFICIAL_BASE_URLS`) or ``manifest`` (the manifest's ``model.endpoint``)."""

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def same_identity(self) -> bool:
        """The rebuilt request has the original identity (when sent to the original endpoint)."""
        return self.identity == self.original_identity


@dataclass(frozen=True)
class ReplayOutcome:
    """The replayed run's output and how it compares with the original's."""

    output: Output
    digest: str
    original_digest: str | None
    diff: str | None

    @property
    def same_output(self) -> bool | None:
        """Whether the output digest equals the original receipt's (None without a receipt)."""
        return None if self.original_digest is None else self.digest == self.original_digest


def _api_of(provider: str, endpoint: str) -> _Api:
    path = urlsplit(endpoint).path
    for api in _APIS:
        if path.endswith(api.path) and (api.name == "messages") == (provider == "anthropic"):
            return api
    raise ReplayError(f"model.endpoint {endpoint!r} names no API replay knows (chat completions, responses, messages)")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str) -> None:
    """Raise ReplayError unless ``url`` may carry an API key: https, or plain http to a loopback address.

    Loopback is 127.0.0.0/8, ::1 and ``localhost``; every other host needs https, so that the key is
    encrypted to the host named.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - a malformed port raises here, not at sending
    except ValueError as exc:
        raise ReplayError(f"{url!r} is not a usable URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ReplayError(f"{url!r} is not an http(s) URL with a host")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ReplayError(
            f"{url}: refusing to send the API key over plain http to {host}; use https "
            "(http is allowed only to a loopback address: 127.0.0.0/8, ::1, localhost)"
        )


def rebuild(manifest: Manifest, base_url: str | None = None, *, use_manifest_endpoint: bool = False) -> ReplayRequest:
    """The exact request of a captured run, addressed to where it may be sent with the user's key.

    The URL is ``base_url`` (as given to the client library) when given; else, with
    ``use_manifest_endpoint``, the manifest's own ``model.endpoint`` (only for a manifest the caller has
    verified against trusted keys: the manifest's author chooses it); else the official endpoint of the
    manifest's provider. Raises ReplayError when content is withheld, the composition was not captured by an
    integration, no official endpoint is known for the provider, or the URL is not https (nor loopback).
    """
    if manifest.withholds_content:
        withheld = [
            name
            for name, c in manifest.components.items()
            if c.withheld or (c.elements is not None and any(e.withheld for e in c.elements))
        ]
        raise ReplayError(
            f"the manifest withholds content ({', '.join(sorted(withheld))}): the request cannot be rebuilt"
        )
    composition = manifest.composition_json()
    model = composition.get("model") or {}
    provider, endpoint = model.get("provider"), model.get("endpoint")
    if type(provider) is not str or type(endpoint) is not str:
        raise ReplayError("the composition names no provider and endpoint: it was not captured from a client")
    api = _api_of(provider, endpoint)
    try:
        body = api.to_body(composition)
        again = api.to_composition(body, provider=provider, endpoint=endpoint)
    except (Unmapped, KeyError, TypeError, ValueError, RunIdentityError) as exc:
        raise ReplayError(f"the composition is not one the {api.name} mapping rebuilds ({exc!r})") from None
    identity = compute_identity(Composition.from_dict(again)).id
    suffix = api.path if api.name != "messages" else "/v1/messages"
    if base_url is not None:
        url, target = base_url.rstrip("/") + suffix, "named"
    elif use_manifest_endpoint:
        url, target = endpoint, "manifest"
    elif provider in OFFICIAL_BASE_URLS:
        url, target = OFFICIAL_BASE_URLS[provider].rstrip("/") + suffix, "official"
    else:
        raise ReplayError(
            f"no official endpoint is known for provider {provider[:80]!r}: name the base URL to send to "
            "(--base-url); the manifest's own endpoint is not trusted with the API key"
        )
    check_endpoint(url)
    return ReplayRequest(api.name, provider, url, body, identity, manifest.identity, api.key_env, target)


def _headers(request: ReplayRequest, api_key: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if request.stream else "application/json",
    }
    if request.api == "messages":
        headers.update({"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION})
    else:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _events(lines: Iterator[bytes]) -> Iterator[Any]:
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would resend the API key header to whatever host the Location names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(url: str) -> urllib.request.OpenerDirector:
    # Plain http goes only to loopback (check_endpoint): never through a proxy, which would see the key.
    proxies = urllib.request.ProxyHandler({} if urlsplit(url).scheme == "http" else None)
    return urllib.request.build_opener(proxies, _NoRedirect())


def send(request: ReplayRequest, api_key: str, *, timeout: float = 600.0) -> Output:
    """Send the rebuilt request and read its output. Raises ReplayError.

    The URL is checked again (:func:`check_endpoint`), and a redirect is an error, never followed.
    """
    check_endpoint(request.url)
    api = next(a for a in _APIS if a.name == request.api)
    data = json.dumps(request.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    http = urllib.request.Request(request.url, data=data, headers=_headers(request, api_key), method="POST")
    try:
        with _opener(request.url).open(http, timeout=timeout) as response:
            if request.stream:
                accumulator = api.accumulator()
                for event in _events(iter(response.readline, b"")):
                    accumulator.add(event)
                output: Output | None = accumulator.output()
                if output is None:
                    raise ReplayError("the stream ended before the output was complete")
                return output
            return api.output(json.loads(response.read()))  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            location = exc.headers.get("Location", "elsewhere") if exc.headers is not None else "elsewhere"
            raise ReplayError(
                f"{request.url}: HTTP {exc.code} redirects to {location[:200]}; not followed "
                "(the request carries the API key): give the final URL with --base-url"
            ) from None
        raise ReplayError(f"{request.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ReplayError(f"{request.url}: cannot send the request ({exc})") from None
    except (ValueError, KeyError) as exc:
        raise ReplayError(f"{request.url}: unreadable reply ({exc})") from None


def output_text(messages: Any) -> str:
    """The text of output messages: text parts one per line; other parts as their JSON."""
    lines: list[str] = []
    for message in messages if type(messages) is list else []:
        for part in message.get("parts", []) if type(message) is dict else []:
            if type(part) is dict and part.get("type") == "text" and type(part.get("content")) is str:
                lines.extend(part["content"].splitlines() or [""])
            else:
                lines.append(json.dumps(part, sort_keys=True, ensure_ascii=False))
    return "\n".join(lines)


def compare(output: Output, receipt: Receipt | None, *, salt: bytes = b"") -> ReplayOutcome:
    """The replayed output against the original receipt (its digest, and its output when carried)."""
    digest = output_digest(output.messages, salt)
    if receipt is None:
        return ReplayOutcome(output, digest, None, None)
    diff = None
    if receipt.output is not None:
        old, new = output_text(receipt.output).splitlines(), output_text(output.messages).splitlines()
        diff = "\n".join(difflib.unified_diff(old, new, "original", "replayed", lineterm=""))
    return ReplayOutcome(output, digest, receipt.statement.output_digest, diff)
