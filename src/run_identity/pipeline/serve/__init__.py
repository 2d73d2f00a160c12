"""``run-identity serve``: the independent verifier's OTLP endpoint (OTLP/HTTP, and OTLP/gRPC with ``grpcio``).

An operator's collector exports a copy of its traces and logs here. The receiver takes ``POST /v1/traces``
and ``POST /v1/logs`` (any path ending so, e.g. ``/manifests/v1/logs``) in ``application/x-protobuf`` or
``application/json``, plain or ``Content-Encoding: gzip`` (every member) or ``deflate``, and appends what it
receives as OTLP-JSON lines, the shape of the ``otelcol-contrib`` file exporter (see
:mod:`run_identity.otel.export_file`):

* ``traces.jsonl``: every traces request, one ``ExportTraceServiceRequest`` per line;
* ``manifests.jsonl``: the ``run_identity.manifest`` and ``run_identity.receipt`` records of each logs request;
* ``logs.jsonl``: every other log record.

Delivery: a 200 means the request is on disk (fsynced, group commit; see :mod:`run_identity.pipeline.serve._sink`,
which also repairs a torn last line at start). Under load the receiver answers ``503``/``429`` with
``Retry-After`` (:class:`ServeLimits`: concurrent requests, bytes held, connections), which OTLP exporters
retry; a silent connection is closed after ``read_timeout``; after an error found before the body was read,
the connection is closed so the body is never parsed as the next request. Bad input (not OTLP, ids that
are not hex, JSON nested too deeply) gets a 400 with the reason.

OTLP/gRPC (:mod:`run_identity.pipeline.serve._grpc`) takes the same requests into the same files under the same
rule: a call returns once its request is durable.

``GET /summary`` returns counts and a verification of a snapshot of what is durable (computed with the
verifier library when a keyring is given), without holding up ingestion; ``GET /healthz`` answers ``ok``.

This module is verifier-side: it imports nothing from the span processor or manifest emission.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from run_identity.core.keys import Keyring
from run_identity.pipeline.serve._grpc import GrpcUnavailable, start_grpc
from run_identity.pipeline.serve._http import WORK_FACTOR, ServeLimits, Server
from run_identity.pipeline.serve._journal import BatchJournal
from run_identity.pipeline.serve._otlp import decode_request, otlp_json_line, split_manifests
from run_identity.pipeline.serve._sink import LOGS_FILE, MANIFESTS_FILE, TRACES_FILE, OtlpSink, SinkCounts, Summarizer

__all__ = [
    "LOGS_FILE",
    "MANIFESTS_FILE",
    "TRACES_FILE",
    "WORK_FACTOR",
    "GrpcUnavailable",
    "OtlpSink",
    "ServeHandle",
    "ServeLimits",
    "SinkCounts",
    "Summarizer",
    "decode_request",
    "otlp_json_line",
    "split_manifests",
    "start_server",
    "verification_summarizer",
]


def verification_summarizer(keyring: Keyring, *, allow: Iterable[str] = (), max_failures: int = 20) -> Summarizer:
    """A summarizer that verifies the written files with :class:`run_identity.verify.Verifier`, the API
    ``run-identity verify`` uses, over all of serve's files: the same checks, receipts included, and the
    same recognition of manifest records, by construction.

    ``allow`` are result codes the policy tolerates. The summary is the verifier's summary object plus up
    to ``max_failures`` failed runs. Raises ValueError for an unknown code.
    """
    from run_identity.verify import Policy, Verifier

    verifier = Verifier(keyring, Policy(allow=allow))

    def summarize(paths: list[Path]) -> dict[str, Any]:
        report = verifier.verify(paths)  # no file yet: no run, which is no pass (count_problem says so)
        out = report.summary_json()
        out["failures"] = [r.to_json() for r in itertools.islice(report.failures(), max_failures)]
        return out

    return summarize


class ServeHandle:
    """A receiver serving on a background thread; :meth:`stop` (or leaving ``with``) shuts it down."""

    def __init__(
        self, server: Server, thread: threading.Thread, grpc_server: Any = None, grpc_port: int | None = None
    ) -> None:
        self._server = server
        self._thread = thread
        self._grpc = grpc_server
        self.sink = server.sink
        #: The OTLP/gRPC port, when gRPC is served.
        self.grpc_port = grpc_port

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, the OTLP/HTTP endpoint to give exporters (they append ``/v1/traces``, ``/v1/logs``)."""
        return f"http://{self.host}:{self.port}"

    def summary(self) -> dict[str, Any]:
        return self.sink.summary()

    @property
    def grpc_endpoint(self) -> str | None:
        """The OTLP/gRPC endpoint to give exporters (``http://host:port``), when gRPC is served."""
        return None if self.grpc_port is None else f"http://{self.host}:{self.grpc_port}"

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait(10)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        self.sink.close()

    def __enter__(self) -> ServeHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    directory: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    summarize: Summarizer | None = None,
    verbose: bool = False,
    limits: ServeLimits | None = None,
    grpc_port: int | None = None,
    journal: str | os.PathLike[str] | None = None,
) -> ServeHandle:
    """Serve OTLP/HTTP on ``host:port`` (0 picks a port) in a background thread, writing into ``directory``;
    with ``grpc_port``, OTLP/gRPC on that port too (0 picks one), into the same files; with ``journal``, a
    line per request and stage is appended to that file (:mod:`run_identity.pipeline.serve._journal`).

    A torn last line left in ``directory`` by a crash is moved aside first (see :mod:`._sink`). Raises
    ``OSError`` when an address cannot be bound, :class:`GrpcUnavailable` for gRPC without grpcio.
    """
    limits = limits or ServeLimits()
    sink = OtlpSink(directory, summarize=summarize, journal=None if journal is None else BatchJournal(journal))
    try:
        server = Server((host, port), sink, verbose=verbose, limits=limits)
    except BaseException:
        sink.close()
        raise
    grpc_server, bound = None, None
    if grpc_port is not None:
        try:
            grpc_server, bound = start_grpc(sink, host, grpc_port, limits)
        except BaseException:
            server.server_close()
            sink.close()
            raise
    thread = threading.Thread(target=server.serve_forever, name="run-identity-serve", daemon=True)
    thread.start()
    return ServeHandle(server, thread, grpc_server, bound)
