"""Senders of serialized OTLP export requests: what the spool replays through, and the relay forwards with.

A sender takes the bytes of one request and says how it went (:class:`SendResult`: sent, retry later, or
refused for good), one attempt per call.
"""

from __future__ import annotations

import gzip
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from run_identity.pipeline._spool_store import Send, SendResult, classify_status

__all__ = ["OtlpHttpSender", "exporter_sender"]

_logger = logging.getLogger("run_identity.spool")


class OtlpHttpSender:
    """Posts serialized OTLP export requests to one OTLP/HTTP signal URL (``spool flush``, tests).

    ``headers`` go with every request; ``compression="gzip"`` compresses the body. An exporter's own
    settings are kept by :func:`exporter_sender` instead.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        compression: str | None = None,
    ) -> None:
        if compression not in (None, "none", "gzip"):
            raise ValueError(f"unsupported compression {compression!r} (use gzip or none)")
        self.url = url
        self.timeout = timeout
        self.gzip = compression == "gzip"
        self.headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"

    def __call__(self, payload: bytes) -> SendResult:
        body = gzip.compress(payload) if self.gzip else payload
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return classify_status(int(response.status))
        except urllib.error.HTTPError as exc:
            _logger.debug("replay to %s: HTTP %s", self.url, exc.code)
            return classify_status(int(exc.code))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _logger.debug("replay to %s failed: %s", self.url, exc)
            return SendResult.RETRY


def exporter_sender(exporter: object) -> Send | None:
    """A sender that posts through ``exporter``'s own OTLP/HTTP client (endpoint, headers, compression,
    timeout, TLS and session kept), one attempt per call; None for an exporter that has no such client."""
    client: Any = getattr(exporter, "_client", None)
    submit, compress = getattr(client, "_submit", None), getattr(client, "_compress", None)
    timeout = getattr(client, "_timeout", None)
    if not (callable(submit) and callable(compress) and isinstance(timeout, (int, float))):
        return None

    def send(payload: bytes) -> SendResult:
        result = submit(compress(payload), float(timeout))
        status = getattr(result, "status_code", None)
        if status is None:
            _logger.debug("replay failed: %s", getattr(result, "error", None))
            return SendResult.RETRY
        return classify_status(int(status))

    return send
