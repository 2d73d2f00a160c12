"""OTLP/gRPC for ``run-identity serve``: the trace and logs services of the OTLP specification, written into
the same sink as OTLP/HTTP, so the default exporter protocol of the OpenTelemetry SDKs works against it.

Each call returns only once its request is durable (as a 200 does over HTTP); a request that cannot be
made durable is answered ``UNAVAILABLE``, which OTLP exporters retry. The number of calls handled at once is
the HTTP receiver's ``max_concurrent``; more wait in gRPC's queue up to ``max_connections``, past which
they are refused with ``RESOURCE_EXHAUSTED`` (retried too). ``grpcio`` comes with the ``otlp`` extra.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from run_identity.pipeline.serve._otlp import MAX_BODY

if TYPE_CHECKING:
    from run_identity.pipeline.serve._http import ServeLimits
    from run_identity.pipeline.serve._sink import OtlpSink

__all__ = ["GrpcUnavailable", "start_grpc"]


class GrpcUnavailable(RuntimeError):
    """OTLP/gRPC cannot be served: ``grpcio`` is not installed (the ``otlp`` extra brings it)."""


def start_grpc(sink: OtlpSink, host: str, port: int, limits: ServeLimits) -> tuple[Any, int]:
    """Serve OTLP/gRPC on ``host:port`` (0 picks a port) into ``sink``; returns the server and its port.

    Raises GrpcUnavailable without grpcio, and OSError when the address cannot be bound.
    """
    try:
        import grpc  # type: ignore[import-untyped]
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    except ModuleNotFoundError as exc:
        raise GrpcUnavailable(
            f"OTLP/gRPC needs grpcio ({exc.name} is not installed): pip install 'ai-run-identity[otlp]'"
        ) from None

    def durably(accept: Any, request: Any, context: Any) -> None:
        try:
            accept(request)
        except OSError as exc:
            sink.reject()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the request could not be made durable ({exc.strerror})")

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
            durably(sink.accept_traces, request, context)
            return ExportTraceServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request: ExportLogsServiceRequest, context: Any) -> ExportLogsServiceResponse:
            durably(sink.accept_logs, request, context)
            return ExportLogsServiceResponse()

    server = grpc.server(
        ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="run-identity-grpc"),
        maximum_concurrent_rpcs=limits.max_connections,
        options=[("grpc.max_receive_message_length", MAX_BODY), ("grpc.so_reuseport", 0)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)  # type: ignore[no-untyped-call]
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)  # type: ignore[no-untyped-call]
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpcio reports a port it cannot bind this way
        raise OSError(f"cannot listen on {host}:{port} for OTLP/gRPC ({exc})") from None
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} for OTLP/gRPC")
    server.start()
    return server, bound
