"""Splitting a refused OTLP export request, so that one bad record does not take the others down with it.

A destination that checks every record may refuse a whole request for one of them (``run-identity tlog
serve`` answers 400 and appends nothing). :class:`SplittingSender` then sends the two halves of the request
(its records split in order, each half keeping their resource and scope) on their own, down to single
records: the good ones are delivered, and only what is still refused alone is reported refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from run_identity.pipeline._spool_store import SendResult

__all__ = ["MAX_PART_SENDS", "SplittingSender", "halves"]

_logger = logging.getLogger("run_identity.relay")
_FIELDS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
}


def halves(signal: str, payload: bytes) -> tuple[bytes, bytes] | None:
    """The request ``payload`` (a ``traces`` or ``logs`` export request) as two requests holding the first and
    the second half of its records, in order, under their own resource and scope; None for a request of one
    record or fewer, or bytes that are not such a request."""
    cls = ExportTraceServiceRequest if signal == "traces" else ExportLogsServiceRequest
    try:
        request = cls.FromString(payload)
    except DecodeError:
        return None
    outer, inner, items = _FIELDS[signal]
    places = [
        (r, s, i)
        for r, resource in enumerate(getattr(request, outer))
        for s, scope in enumerate(getattr(resource, inner))
        for i in range(len(getattr(scope, items)))
    ]
    if len(places) < 2:
        return None
    cut = len(places) // 2
    parts = []
    for chosen in (set(places[:cut]), set(places[cut:])):
        part = cls()
        for r, resource in enumerate(getattr(request, outer)):
            kept_resource = None
            for s, scope in enumerate(getattr(resource, inner)):
                kept = [item for i, item in enumerate(getattr(scope, items)) if (r, s, i) in chosen]
                if not kept:
                    continue
                if kept_resource is None:
                    kept_resource = getattr(part, outer).add()
                    kept_resource.resource.CopyFrom(resource.resource)
                    kept_resource.schema_url = resource.schema_url
                kept_scope = getattr(kept_resource, inner).add()
                kept_scope.scope.CopyFrom(scope.scope)
                kept_scope.schema_url = scope.schema_url
                getattr(kept_scope, items).extend(kept)
        parts.append(part.SerializeToString())
    return parts[0], parts[1]


#: Sends at most spent on the parts of one refused request (bisection finds k bad records of n in about
#: 2k·log2(n) sends; a destination refusing everything, say a wrong URL's 404, is not asked n times).
MAX_PART_SENDS = 256


class SplittingSender:
    """Sends a request with ``send``; when the destination refuses it for good, sends its halves, and so on
    down to single records (:func:`halves`), at most :data:`MAX_PART_SENDS` part sends a request. The
    outcome: sent when every part was taken, retry when a part must be tried again (the whole request is
    then sent again later: parts already taken arrive twice, which the destinations count once), refused
    when some record is refused alone, or the budget ran out (the records taken were delivered)."""

    def __init__(self, signal: str, send: Callable[[bytes], SendResult]) -> None:
        self._signal = signal
        self._send = send

    def __call__(self, payload: bytes) -> SendResult:
        outcome = self._send(payload)
        if outcome is not SendResult.REJECTED:
            return outcome
        outcome = self._parts(payload, [MAX_PART_SENDS])
        if outcome is SendResult.REJECTED:
            _logger.warning(
                "relay: a %s request was refused; the records the destination took were delivered", self._signal
            )
        return outcome

    def _parts(self, payload: bytes, budget: list[int]) -> SendResult:
        """The outcome of sending the halves of a refused ``payload`` (budget: part sends left)."""
        parts = halves(self._signal, payload)
        if parts is None:
            return SendResult.REJECTED
        results = []
        for part in parts:
            if budget[0] <= 0:
                return SendResult.REJECTED
            budget[0] -= 1
            outcome = self._send(part)
            if outcome is SendResult.REJECTED:
                outcome = self._parts(part, budget)
            if outcome is SendResult.RETRY:
                return SendResult.RETRY
            results.append(outcome)
        return SendResult.REJECTED if SendResult.REJECTED in results else SendResult.SENT
