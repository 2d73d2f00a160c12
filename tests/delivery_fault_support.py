"""The processes of the delivery fault test (tests/test_delivery_faults.py): serve, the collectors, and the
reading of serve's batch journal; not a test module."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from run_identity.pipeline.collector import CollectorError, RotelCollector, start_rotel

CLI = [sys.executable, "-m", "run_identity"]
#: rotel's retries to serve: sooner than its defaults (5 s, then up to 30 s apart), as long in all (300 s).
#: rotel.env configures *named* exporters (traces, manifests), which read ROTEL_EXPORTER_<NAME>_*; the
#: global ROTEL_OTLP_EXPORTER_RETRY_* flags do not apply to them (measured: 5 s first retry regardless).
ROTEL_RETRY = {
    f"ROTEL_EXPORTER_{name}_{key}": value
    for name in ("TRACES", "MANIFESTS")
    for key, value in (
        ("RETRY_INITIAL_BACKOFF", "{secs=0,nanos=250000000}"),
        ("RETRY_MAX_BACKOFF", "{secs=2,nanos=0}"),
        ("RETRY_MAX_ELAPSED_TIME", "{secs=300,nanos=0}"),
    )
}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def refused(port: int) -> bool:
    """Whether a connection to 127.0.0.1:port is refused (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


class _Child:
    """A ``run-identity`` command as a child process that can be killed and started again on its ports."""

    name = "child"

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}: {self.log.read_text()[-600:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        wait_until(self._healthy, 60, f"{self.name} answering /healthz", interval=0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


class ServeProcess(_Child):
    """``run-identity serve`` with its batch journal (one line per request received, and once durable)."""

    name = "serve"

    def __init__(self, out: Path, port: int, grpc_port: int, log: Path) -> None:
        super().__init__(port, log)
        self.out, self.grpc_port = out, grpc_port
        self.journal = log.with_name("serve.journal")

    def forward_url(self, protocol: str) -> str:
        """Where a collector sends: serve's OTLP/HTTP or OTLP/gRPC port."""
        return f"http://127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.port}"

    def command(self) -> list[str]:
        return [
            *CLI,
            "serve",
            "--out",
            str(self.out),
            "--port",
            str(self.port),
            "--grpc-port",
            str(self.grpc_port),
            "--journal",
            str(self.journal),
        ]


class RelayProcess(_Child):
    """``run-identity relay`` in front of serve, spooling in ``spool``; it may be killed with SIGKILL."""

    name = "relay"

    def __init__(self, spool: Path, port: int, destination: str, log: Path) -> None:
        super().__init__(port, log)
        self.spool, self.destination = spool, destination

    @property
    def otlp_http_endpoint(self) -> str:
        return self.url

    def command(self) -> list[str]:
        return [
            *CLI,
            "relay",
            "--spool",
            str(self.spool),
            "--port",
            str(self.port),
            "--traces-endpoint",
            self.destination,
            "--backoff",
            "0.25",
            "--max-backoff",
            "2",
        ]

    def summary(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/summary", timeout=5) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def spooled(self) -> dict[str, int]:
        """Requests in the relay's spool folders now (read from disk: the relay may be dead)."""
        return {
            name: sum(1 for e in (self.spool / name).glob("*.binpb")) if (self.spool / name).is_dir() else 0
            for name in ("traces", "logs")
        }

    def failed_attempts(self) -> dict[str, int]:
        """Forwarding attempts that failed (and were retried), per signal, over all the relay's starts."""
        out = {"traces": 0, "logs": 0}
        for name, count in re.findall(r"(?m) (traces|logs): (\d+) attempt\(s\) failed", self.log.read_text()):
            out[name] += int(count)
        return out

    def pending_at_starts(self) -> list[dict[str, int]]:
        """What the spool held at each start after the first (the relay's start lines say it)."""
        marker = "forwarding what the spool held at start: "
        return [
            json.loads(line.split(marker, 1)[1].replace("'", '"'))
            for line in self.log.read_text().splitlines()
            if marker in line
        ]


def start_collector(forward_url: str, protocol: str, grpc_port: int, http_port: int, workdir: Path) -> RotelCollector:
    """rotel in front of serve on fixed ports (so the applications find it again after a restart)."""
    for attempt in range(3):
        try:
            return start_rotel(
                traces_endpoint=forward_url,
                manifests_endpoint=forward_url,
                grpc_port=grpc_port,
                http_port=http_port,
                workdir=workdir,
                extra_env={
                    **ROTEL_RETRY,
                    "ROTEL_EXPORTER_TRACES_PROTOCOL": protocol,
                    "ROTEL_EXPORTER_MANIFESTS_PROTOCOL": protocol,
                },
                ready_timeout=30,
            )
        except CollectorError:
            if attempt == 2:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def journal_stages(journal: Path) -> dict[str, dict[str, str]]:
    """For each signal, the furthest stage serve's journal reached for each run span id."""
    rank = {"received": 0, "failed": 1, "durable": 2}
    out: dict[str, dict[str, str]] = {"traces": {}, "logs": {}}
    if not journal.exists():
        return out
    for line in journal.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) != 7:
            continue
        _, _, _, stage, signal_name, _, ids = parts
        seen = out.setdefault(signal_name, {})
        for span_id in filter(None, ids.split(",")):
            if rank[stage] >= rank.get(seen.get(span_id, "received"), 0):
                seen[span_id] = stage
    return out


def where_lost(missing: set[str], journal: Path) -> dict[str, dict[str, int]]:
    """For the runs that do not verify, per signal: how many serve never received, received but never
    made durable (in flight when it was killed), or made durable (so not lost at serve)."""
    stages = journal_stages(journal)
    return {
        signal_name: dict(Counter(stages[signal_name].get(span_id, "never_received") for span_id in missing))
        for signal_name in ("traces", "logs")
    }


def journal_batches(journal: Path) -> dict[str, int]:
    """How many batches serve's journal saw at each stage."""
    if not journal.exists():
        return {}
    return dict(Counter(line.split("\t")[3] for line in journal.read_text().splitlines() if line.count("\t") == 6))


def manifest_records(path: Path) -> int:
    """Manifest records in serve's manifests file (copies included)."""
    if not path.exists():
        return 0
    return sum(
        len(scope["logRecords"])
        for line in path.read_bytes().splitlines()
        if line.strip()
        for resource in orjson.loads(line)["resourceLogs"]
        for scope in resource["scopeLogs"]
    )
