"""``run-identity relay``: an OTLP hop that acknowledges only what it has on disk and forwards it until taken."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._args import check_port, check_positive, check_url
from run_identity.cli._serve import _CommandError, _until_stopped

__all__ = ["register"]


def _relay(args: argparse.Namespace) -> int:
    from run_identity.pipeline.relay import start_relay
    from run_identity.pipeline.serve import GrpcUnavailable

    check_port(args.port, "--port")
    if args.grpc_port is not None:
        check_port(args.grpc_port, "--grpc-port")
    check_url(args.traces_endpoint, "--traces-endpoint")
    if args.logs_endpoint is not None:
        check_url(args.logs_endpoint, "--logs-endpoint")
    check_positive(args.backoff, "--backoff")
    check_positive(args.max_backoff, "--max-backoff")
    if args.max_backoff < args.backoff:
        raise CliError(f"--max-backoff {args.max_backoff} is below --backoff {args.backoff}", exit_code=2)
    if not args.max_spool_mb > 0:
        raise CliError(f"--max-spool-mb {args.max_spool_mb}: give a size above 0", exit_code=2)
    try:
        handle = start_relay(
            args.spool,
            traces_endpoint=args.traces_endpoint,
            logs_endpoint=args.logs_endpoint,
            host=args.host,
            port=args.port,
            grpc_port=args.grpc_port,
            backoff=args.backoff,
            max_backoff=args.max_backoff,
            max_bytes=int(args.max_spool_mb * 1024 * 1024),
            verbose=args.verbose,
        )
    except GrpcUnavailable as exc:
        raise _CommandError(str(exc)) from None
    except OSError as exc:
        raise _CommandError(f"cannot listen on {args.host}: {exc.strerror or exc}") from None
    # The relay says on stdout when a destination did not take a request (it keeps it and retries).
    relay_log = logging.getLogger("run_identity.relay")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("run-identity relay: %(asctime)s %(message)s"))
    relay_log.addHandler(handler)
    relay_log.setLevel(logging.INFO)
    with _until_stopped() as stop, handle:
        print(f"run-identity relay: listening on {handle.url}, spooling in {Path(args.spool)}", flush=True)
        if handle.grpc_endpoint:
            print(f"run-identity relay: OTLP/gRPC on {handle.grpc_endpoint}", flush=True)
        waiting = {name: n for name, n in handle.relay.pending_at_start.items() if n}
        if waiting:
            print(f"run-identity relay: forwarding what the spool held at start: {waiting}", flush=True)
        while not stop.wait(0.5):
            pass
    summary = handle.sink.summary()
    received, pending = summary["received"], summary["pending"]
    print(
        f"run-identity relay: received {received['spans']} spans and {received['log_records']} log records; "
        f"forwarded {received['forwarded']}; still spooled {pending} (sent at the next start)",
        flush=True,
    )
    return 0


def register(sub: Any) -> None:
    """Add the relay command."""
    p = sub.add_parser(
        "relay",
        help="OTLP hop that answers only once a request is fsynced in its spool and forwards it until taken",
    )
    p.add_argument("--spool", required=True, metavar="DIR", help="the relay's spool folder (traces/, logs/)")
    p.add_argument(
        "--traces-endpoint", required=True, metavar="URL", help="OTLP/HTTP destination of traces (/v1/traces appended)"
    )
    p.add_argument(
        "--logs-endpoint", metavar="URL", help="OTLP/HTTP destination of logs and manifests (default: the traces one)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4318, help="OTLP/HTTP port (default 4318; 0 picks a free one)")
    p.add_argument("--grpc-port", type=int, metavar="PORT", help="also take OTLP/gRPC on PORT (0 picks one)")
    p.add_argument("--backoff", type=float, default=0.25, metavar="S", help="first retry after S s (0.25)")
    p.add_argument("--max-backoff", type=float, default=5.0, metavar="S", help="retries at most S s apart (5)")
    p.add_argument(
        "--max-spool-mb", type=float, default=1024.0, metavar="MB", help="spool size cap; past it: 503 (1024)"
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=_relay)
