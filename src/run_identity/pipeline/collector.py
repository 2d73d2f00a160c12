"""The rotel collector on 127.0.0.1, started with the configuration the package ships.

rotel (PyPI ``rotel``, the ``collector`` extra) bundles the ``rotel-agent`` binary: OTLP gRPC and HTTP
receivers, per-signal exporters and Python processors. :func:`start_rotel` runs it as a child process with
``run_identity/collector_config/rotel.env`` (package data, see :func:`default_config_dir`): traces go to one
OTLP/HTTP destination and, through ``rotel_manifest_router.py``, manifests and run receipts (and nothing
else) to another. The process is stopped by
:meth:`RotelCollector.stop` (or leaving its ``with`` block), never left behind.

The whole local pipeline, app -> rotel -> ``run-identity serve`` (:mod:`run_identity.pipeline.serve`) -> files, is
:func:`rotel_pipeline` (a context manager) and :func:`run_through_rotel` (one call, for ``demo --collector``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace.export import SpanExporter

from run_identity.pipeline._rotel_files import (
    CONFIG_DIR_ENV,
    ENV_FILE,
    PACKAGE_CONFIG_DIR,
    CollectorError,
    CollectorUnavailable,
    default_config_dir,
    load_env_file,
    rotel_agent_path,
    rotel_version,
)
from run_identity.pipeline.serve import ServeHandle, Summarizer, start_server

__all__ = [
    "CONFIG_DIR_ENV",
    "PACKAGE_CONFIG_DIR",
    "CollectorError",
    "CollectorUnavailable",
    "LocalPipeline",
    "RotelCollector",
    "default_config_dir",
    "free_port",
    "load_env_file",
    "rotel_agent_path",
    "rotel_pipeline",
    "rotel_version",
    "run_through_rotel",
    "start_rotel",
]

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class RotelCollector:
    """A running ``rotel-agent`` child process; stop it with :meth:`stop` or a ``with`` block."""

    def __init__(self, process: subprocess.Popen[bytes], *, grpc_port: int, http_port: int, log_path: Path):
        self.process = process
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.log_path = log_path

    @property
    def otlp_http_endpoint(self) -> str:
        """Base URL of the OTLP/HTTP receiver (append ``/v1/traces`` or ``/v1/logs``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``host:port`` of the OTLP gRPC receiver."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """What rotel wrote to its stdout and stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """Ask rotel to flush and exit (SIGTERM); kill it after ``timeout`` seconds. Returns its exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def __enter__(self) -> RotelCollector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _resolve(value: str, base: Path) -> str:
    """Comma-separated paths, each relative to ``base`` unless absolute."""
    return ",".join(str((base / part.strip()).resolve()) for part in value.split(",") if part.strip())


def start_rotel(
    *,
    traces_endpoint: str,
    manifests_endpoint: str,
    grpc_port: int = 0,
    http_port: int = 0,
    workdir: str | os.PathLike[str],
    config_dir: str | os.PathLike[str] | None = None,
    logs_processors: Sequence[str | os.PathLike[str]] = (),
    traces_processors: Sequence[str | os.PathLike[str]] = (),
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> RotelCollector:
    """Start rotel on 127.0.0.1 with ``rotel.env``, traces and manifests going to their own endpoints.

    Endpoints are OTLP/HTTP base URLs (rotel appends ``/v1/traces`` and ``/v1/logs``). A port of 0 picks a
    free one. ``logs_processors`` run after the manifest router, ``traces_processors`` on spans (rotel Python
    processor files). rotel's output goes to ``<workdir>/rotel.log``. Returns once the receivers accept
    connections. Raises :class:`CollectorUnavailable` when rotel cannot run here and :class:`CollectorError`
    when it does not come up within ``ready_timeout`` seconds.
    """
    agent = rotel_agent_path()
    config = Path(config_dir) if config_dir is not None else default_config_dir()
    env_file = config / ENV_FILE
    if not env_file.is_file():
        raise CollectorError(f"no {ENV_FILE} in {config}")
    settings = load_env_file(env_file)
    grpc_port = grpc_port or free_port()
    http_port = http_port or free_port()
    while http_port == grpc_port:
        http_port = free_port()
    settings.update(
        ROTEL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{grpc_port}",
        ROTEL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{http_port}",
        ROTEL_EXPORTER_TRACES_ENDPOINT=traces_endpoint.rstrip("/"),
        ROTEL_EXPORTER_MANIFESTS_ENDPOINT=manifests_endpoint.rstrip("/"),
    )
    logs = (
        [settings["ROTEL_OTLP_WITH_LOGS_PROCESSOR"]] if settings.get("ROTEL_OTLP_WITH_LOGS_PROCESSOR") else []
    )
    logs += [str(p) for p in logs_processors]
    if logs:
        settings["ROTEL_OTLP_WITH_LOGS_PROCESSOR"] = _resolve(",".join(logs), config)
    traces = (
        [settings["ROTEL_OTLP_WITH_TRACE_PROCESSOR"]]
        if settings.get("ROTEL_OTLP_WITH_TRACE_PROCESSOR")
        else []
    )
    traces += [str(p) for p in traces_processors]
    if traces:
        settings["ROTEL_OTLP_WITH_TRACE_PROCESSOR"] = _resolve(",".join(traces), config)
    if extra_env:
        settings.update(extra_env)

    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "rotel.log"
    settings.setdefault("ROTEL_PID_FILE", str(work / "rotel.pid"))
    # The caller's own ROTEL_* settings must not reroute the pipeline, and its PYTHONHOME/PYTHONPATH (a venv
    # of another Python) must not break the interpreter rotel embeds for the processors.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ROTEL_") and k not in ("PYTHONHOME", "PYTHONPATH")
    }
    env.update(settings)
    env["NO_COLOR"] = "1"
    with open(log_path, "ab") as log:
        try:
            process = subprocess.Popen(
                [str(agent), "start"],
                env=env,
                # The configuration folder, not the caller's: rotel's embedded Python must find no stray module.
                cwd=config,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise CollectorUnavailable(f"{agent} cannot run here: {exc}") from None
    collector = RotelCollector(process, grpc_port=grpc_port, http_port=http_port, log_path=log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = collector.log_text().strip().splitlines()[-3:]
            raise CollectorError(f"rotel exited with {process.returncode} at start: {' | '.join(tail)}")
        if _port_open("127.0.0.1", http_port) and _port_open("127.0.0.1", grpc_port):
            # rotel binds its receivers before it has checked the exporters' settings: give it a moment to
            # refuse a bad configuration before calling it up.
            time.sleep(0.3)
            if process.poll() is None:
                return collector
            continue
        time.sleep(0.05)
    collector.stop()
    raise CollectorError(f"rotel did not open ports {grpc_port}/{http_port} within {ready_timeout:.0f} s")


@dataclass
class LocalPipeline:
    """rotel on 127.0.0.1 exporting traces and manifests to a ``run-identity serve`` receiver."""

    serve: ServeHandle
    rotel: RotelCollector

    def exporters(
        self,
        *,
        protocol: Literal["http", "grpc"] = "http",
        spool_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[SpanExporter, LogRecordExporter]:
        """OTLP span and manifest exporters pointed at rotel (with ``spool_dir``: spooling, HTTP only)."""
        if spool_dir is not None:
            if protocol != "http":
                raise ValueError("spooling exporters speak OTLP/HTTP")
            from run_identity.pipeline.spool import spooling_otlp_exporters

            return spooling_otlp_exporters(self.rotel.otlp_http_endpoint, spool_dir, timeout=timeout)
        if protocol == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
            except ModuleNotFoundError as exc:
                raise ModuleNotFoundError(
                    f"{exc} (OTLP gRPC export needs the 'otlp' extra: pip install 'ai-run-identity[otlp]')",
                    name=exc.name,
                ) from exc

            target = self.rotel.otlp_grpc_endpoint
            return GrpcSpans(target, insecure=True, timeout=timeout), GrpcLogs(
                target, insecure=True, timeout=timeout
            )
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = self.rotel.otlp_http_endpoint
        return (
            OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout),
            OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=timeout),
        )

    def wait_delivered(self, runs: int, *, timeout: float = 30.0) -> bool:
        """Block until serve holds ``runs`` run spans and ``runs`` manifests; False after ``timeout`` s."""
        return self.serve.sink.wait_for(spans=runs, manifests=runs, timeout=timeout)


@contextmanager
def rotel_pipeline(
    out_dir: str | os.PathLike[str],
    *,
    summarize: Summarizer | None = None,
    serve_port: int = 0,
    workdir: str | os.PathLike[str] | None = None,
    logs_processors: Sequence[str | os.PathLike[str]] = (),
    traces_processors: Sequence[str | os.PathLike[str]] = (),
) -> Iterator[LocalPipeline]:
    """Start serve (writing into ``out_dir``) and rotel in front of it, on free ports; stop both on exit.

    rotel is stopped first (it flushes what it holds), then serve. ``workdir`` keeps rotel's log (a
    temporary folder by default). Raises :class:`CollectorUnavailable` or :class:`CollectorError`.
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="run-identity-rotel-"))
        serve = stack.enter_context(start_server(out_dir, port=serve_port, summarize=summarize))
        rotel = stack.enter_context(
            start_rotel(
                traces_endpoint=serve.url,
                manifests_endpoint=serve.url,
                workdir=workdir,
                logs_processors=logs_processors,
                traces_processors=traces_processors,
            )
        )
        yield LocalPipeline(serve, rotel)


def run_through_rotel(
    out_dir: str | os.PathLike[str],
    runs: Callable[[SpanExporter, LogRecordExporter], int],
    *,
    summarize: Summarizer | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Run ``runs`` with OTLP exporters pointed at a local rotel -> serve pipeline; return serve's summary.

    ``runs(span_exporter, manifest_exporter)`` sets up its providers with the two exporters, makes its runs,
    shuts the providers down (flushing them) and returns how many runs it made; this waits until serve holds
    that many run spans and manifests in ``out_dir`` (``traces.jsonl``, ``manifests.jsonl``), then stops
    rotel and serve. Raises :class:`CollectorUnavailable` where rotel cannot run, :class:`CollectorError`
    when the runs do not all arrive within ``timeout`` seconds.
    """
    with rotel_pipeline(out_dir, summarize=summarize) as pipeline:
        span_exporter, manifest_exporter = pipeline.exporters()
        count = runs(span_exporter, manifest_exporter)
        if not pipeline.wait_delivered(count, timeout=timeout):
            got = pipeline.serve.sink.counts
            raise CollectorError(
                f"after {timeout:.0f} s serve holds {got.run_spans} run spans and {got.manifests} manifests "
                f"of {count} runs; rotel log: {pipeline.rotel.log_text()[-400:]!r}"
            )
    return pipeline.serve.summary()
