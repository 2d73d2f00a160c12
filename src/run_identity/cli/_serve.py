"""Commands of the collector pipeline: ``serve``, ``collector`` and ``spool flush``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from run_identity.cli._args import check_port, check_positive, check_url
from run_identity.core.errors import RunIdentityError

__all__ = ["register"]


class _CommandError(RunIdentityError):
    """A user error of these commands, reported as one line."""


@contextmanager
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT (Ctrl-C); the previous handlers come back afterwards."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _summarizer(keyring_path: str | None, allow: list[str]) -> Any:
    if keyring_path is None:
        return None
    from run_identity.core.keys import Keyring
    from run_identity.pipeline.serve import verification_summarizer

    try:
        return verification_summarizer(Keyring.from_jwks(keyring_path), allow=allow)
    except ValueError as exc:
        raise _CommandError(str(exc)) from None


def _print_summary(summary: dict[str, Any], out: Any) -> None:
    got = summary["received"]
    out.write(
        f"received: {got['requests']} requests, {got['spans']} spans ({got['run_spans']} runs), "
        f"{got['manifests']} manifests, {got['other_logs']} other log records, "
        f"{got['rejected_requests']} rejected\n"
    )
    verification = summary.get("verification")
    if verification is None:
        out.write("verification: off (no --keyring)\n")
    elif "error" in verification:
        out.write(f"verification: error: {verification['error']}\n")
    else:
        counts = ", ".join(f"{code} {n}" for code, n in verification.get("counts", {}).items() if n)
        verdict = "passed" if verification.get("passed") else "FAILED"
        out.write(f"verification: {verdict}: {verification.get('runs', 0)} runs ({counts or 'none'})\n")
        if verification.get("count_problem"):
            out.write(f"  {verification['count_problem']}\n")
        for failure in verification.get("failures", []):
            out.write(f"  {failure['code']}  {failure['trace_id']}/{failure['span_id']}\n")
    out.flush()


#: The OTLP/gRPC port: beside the HTTP port 4319, clear of a local collector's 4317 and 4318.
DEFAULT_GRPC_PORT = 4321


def _serve(args: argparse.Namespace) -> int:
    from run_identity.pipeline.serve import GrpcUnavailable, ServeLimits, start_server

    check_port(args.port, "--port")
    if args.grpc_port is not None:
        check_port(args.grpc_port, "--grpc-port")
    summarize = _summarizer(args.keyring, args.allow)
    try:
        limits = ServeLimits(
            read_timeout=args.read_timeout,
            max_concurrent=args.max_concurrent,
            max_bytes=int(args.max_memory_mb * 1024 * 1024),
        )
    except ValueError as exc:
        raise _CommandError(str(exc)) from None
    grpc_port = None if args.no_grpc else (args.grpc_port if args.grpc_port is not None else DEFAULT_GRPC_PORT)
    if args.journal is not None and not Path(args.journal).parent.is_dir():
        raise _CommandError(f"--journal {args.journal}: no such folder {Path(args.journal).parent}")
    note = ""

    def start(grpc: int | None) -> Any:
        return start_server(
            args.out,
            host=args.host,
            port=args.port,
            summarize=summarize,
            verbose=args.verbose,
            limits=limits,
            grpc_port=grpc,
            journal=args.journal,
        )

    try:
        try:
            handle = start(grpc_port)
        except (GrpcUnavailable, OSError) as exc:
            if args.grpc_port is not None or (isinstance(exc, OSError) and "gRPC" not in str(exc)):
                raise
            note = f"OTLP/gRPC off ({exc}); give --grpc-port to insist"
            handle = start(None)
    except GrpcUnavailable as exc:
        raise _CommandError(str(exc)) from None
    except OSError as exc:
        raise _CommandError(f"cannot listen on {args.host}: {exc.strerror or exc}") from None
    with _until_stopped() as stop, handle:
        print(f"run-identity serve: listening on {handle.url}, writing to {Path(args.out)}", flush=True)
        if handle.grpc_endpoint:
            print(f"run-identity serve: OTLP/gRPC on {handle.grpc_endpoint}", flush=True)
        if note:
            print(f"run-identity serve: {note}", flush=True)
        for repair in handle.sink.repairs:
            print(
                f"run-identity serve: {repair['file']} ended with a torn line of {repair['bytes']} bytes "
                f"(a crash mid-write): moved to {repair['moved_to']}",
                flush=True,
            )
        while not stop.wait(0.5):
            pass
    summary = handle.summary()
    _print_summary(summary, sys.stdout)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    verification = summary.get("verification") or {}
    return 1 if verification.get("passed") is False else 0


def _collector(args: argparse.Namespace) -> int:
    from run_identity.pipeline.collector import CollectorError, default_config_dir, start_rotel
    from run_identity.pipeline.serve import start_server

    if args.print_config_dir:
        print(default_config_dir())
        return 0
    check_port(args.grpc_port, "--grpc-port")
    check_port(args.http_port, "--http-port")
    endpoints = {"--traces-endpoint": args.traces_endpoint, "--manifests-endpoint": args.manifests_endpoint}
    for option, value in endpoints.items():
        if value is not None:
            check_url(value, option)
    with _until_stopped() as stop:
        serve = None
        if args.traces_endpoint and args.manifests_endpoint:
            traces, manifests = args.traces_endpoint, args.manifests_endpoint
        elif args.traces_endpoint or args.manifests_endpoint:
            raise _CommandError("give both --traces-endpoint and --manifests-endpoint, or neither")
        else:
            serve = start_server(args.out, port=0, summarize=_summarizer(args.keyring, []))
            traces = manifests = serve.url
        try:
            rotel = start_rotel(
                traces_endpoint=traces,
                manifests_endpoint=manifests,
                grpc_port=args.grpc_port,
                http_port=args.http_port,
                workdir=args.workdir,
            )
        except CollectorError:
            if serve is not None:
                serve.stop()
            raise
        print(
            f"rotel: OTLP gRPC {rotel.otlp_grpc_endpoint}, OTLP/HTTP {rotel.otlp_http_endpoint}\n"
            f"rotel: traces -> {traces}, manifests -> {manifests}; log in {rotel.log_path}",
            flush=True,
        )
        if serve is not None:
            print(f"serve: {serve.url}, writing to {Path(args.out)}", flush=True)
        try:
            while not stop.wait(0.5):
                if not rotel.running:
                    raise _CommandError(f"rotel exited with {rotel.process.returncode}; see {rotel.log_path}")
        finally:
            rotel.stop()
            if serve is not None:
                serve.stop()
                _print_summary(serve.summary(), sys.stdout)
    return 0


def _spool_flush(args: argparse.Namespace) -> int:
    from run_identity.pipeline.spool import flush_spool_dir

    check_url(args.endpoint, "--endpoint")
    check_positive(args.timeout, "--timeout")
    directory = Path(args.dir)
    if not directory.is_dir():
        raise _CommandError(f"{directory}: no such spool folder")
    headers = {}
    for item in args.header:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _CommandError(f"--header {item!r}: expected NAME=VALUE")
        headers[key.strip()] = value
    results = flush_spool_dir(directory, args.endpoint, timeout=args.timeout, headers=headers)
    if not results:
        print(f"{directory}: nothing spooled")
        return 0
    left_total = 0
    for name, (sent, left, dead, _) in results.items():
        left_total += left
        dead_note = f", dead-lettered {dead} (see {directory / name / 'dead'})" if dead else ""
        print(f"{directory / name}: sent {sent}, left {left}{dead_note}")
    return 1 if left_total or any(r.dead_lettered for r in results.values()) else 0


def register(sub: Any) -> None:
    """Add the serve, collector and spool commands."""
    p = sub.add_parser(
        "serve", help="OTLP receiver (HTTP and gRPC) writing OTLP-JSON lines, with a running verification"
    )
    p.add_argument(
        "--out", default="out/serve", metavar="DIR", help="folder for traces/manifests/logs .jsonl"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4319, help="OTLP/HTTP port (default 4319; 0 picks a free one)")
    p.add_argument(
        "--grpc-port",
        type=int,
        metavar="PORT",
        help=f"OTLP/gRPC port (default {DEFAULT_GRPC_PORT} when grpcio is installed and the port is free; 0 picks one)",
    )
    p.add_argument("--no-grpc", action="store_true", help="serve OTLP/HTTP only")
    p.add_argument("--keyring", metavar="JWKS", help="trusted keys; enables the verification summary")
    p.add_argument(
        "--allow", action="append", default=[], metavar="CODE", help="result code the summary tolerates"
    )
    p.add_argument("--summary-json", metavar="FILE", help="also write the final summary as JSON")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument(
        "--journal",
        metavar="FILE",
        help="append a line per request when received and when durable, with its run span ids (for investigations)",
    )
    p.add_argument(
        "--read-timeout", type=float, default=30.0, metavar="S", help="close a silent connection after S s (30)"
    )
    p.add_argument(
        "--max-concurrent", type=int, default=16, metavar="N", help="requests decoded at once; more get 503 (16)"
    )
    p.add_argument(
        "--max-memory-mb", type=float, default=256.0, metavar="MB", help="request bytes held; more get 429 (256)"
    )
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "collector", help="run rotel on 127.0.0.1 with traces and manifests on separate routes"
    )
    p.add_argument("--grpc-port", type=int, default=4317, help="OTLP gRPC port (default 4317; 0 = free)")
    p.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port (default 4318; 0 = free)")
    p.add_argument("--traces-endpoint", metavar="URL", help="OTLP/HTTP destination of traces")
    p.add_argument("--manifests-endpoint", metavar="URL", help="OTLP/HTTP destination of manifests")
    p.add_argument("--out", default="out/collector", metavar="DIR", help="without endpoints: serve's folder")
    p.add_argument("--keyring", metavar="JWKS", help="without endpoints: verify in serve")
    p.add_argument("--workdir", default="out/rotel", metavar="DIR", help="rotel's log and pid file")
    p.add_argument(
        "--print-config-dir",
        action="store_true",
        help="print the folder of the shipped configuration (rotel.env, otelcol-contrib.yaml) and exit",
    )
    p.set_defaults(func=_collector)

    p = sub.add_parser("spool", help="undelivered batches spooled by the spooling exporters")
    spool = p.add_subparsers(dest="spool_command", metavar="ACTION")
    spool.required = True
    f = spool.add_parser("flush", help="send a spool folder's batches to an OTLP/HTTP endpoint")
    f.add_argument("--dir", required=True, help="the spool folder")
    f.add_argument(
        "--endpoint", required=True, metavar="URL", help="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318"
    )
    f.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    f.add_argument(
        "--header", action="append", default=[], metavar="NAME=VALUE", help="HTTP header for every request"
    )
    f.set_defaults(func=_spool_flush)
