"""The fault test of issue 15 through the real pipeline: application processes -> rotel -> serve -> files.

Several application processes (tests/delivery_fault_app.py, ``setup()`` with spooling OTLP/HTTP exporters)
export through a real rotel to a real ``run-identity serve`` process while, in turn:

1. serve is killed with SIGKILL while runs flow and started again at once on the same port and folder;
2. serve is stopped and nothing listens on its port for ``RUN_IDENTITY_FAULT_OUTAGE`` seconds (5): every
   connection rotel makes to it is refused, while the applications keep exporting to rotel; then serve is
   started again on the same port and folder;
3. rotel is stopped (SIGTERM: it forwards what it holds, serve being up) and started again on the same ports
   about 2 s later, while the applications keep exporting to it (refused: they spool, and send again when
   they shut down, after rotel is back).

Each fault starts while every application is at the same quarter of its runs (they wait at a gate) and
lasts while they make the next quarter. Sizes: ``RUN_IDENTITY_FAULT_APPS`` processes (4) of
``RUN_IDENTITY_FAULT_RUNS`` runs (500); the issue's 8 x 2,000 is
``RUN_IDENTITY_FAULT_APPS=8 RUN_IDENTITY_FAULT_RUNS=2000``. The figures (runs/s, what was retried) are
printed as one ``fault-test figures:`` JSON line (``pytest -s`` shows it).

*Acknowledged end to end*, precisely: a run whose application process made it (its span id is in the
process's list) and whose span and manifest that process's pipeline handed over for good: each batch
carrying them was answered with success by rotel, either at once or when the spool sent it again (here or
by ``flush_spool_dir`` after the process ended), so it is neither counted lost (``coverage.manifest_failures``,
``coverage.manifests_lost``, the queue's ``dropped``/``lost``, a spool's ``lost_records``) nor dead-lettered
nor still pending in a spool; and rotel, which keeps what it acknowledged in memory only (it has no disk
queue), was never killed, only stopped with SIGTERM while serve was up (so it forwards what it holds;
its exit status 0 is asserted); and rotel did not give up on the batch carrying it (rotel logs each batch
it drops, ``Exporting failed, dropping data``, with its signal). serve acknowledges only what it has
written and fsynced. The test asserts that no application counted any loss (so every run made was
acknowledged by rotel), that every one of them verifies, and that ``run-identity verify`` over serve's
folder reports 0 ``manifest_missing``.

Known limitation (rotel 0.0.1a15): when serve is killed while rotel's request to it is in flight, rotel
does not retry that request (``hyper::Error(IncompleteMessage)`` over HTTP, ``BrokenPipe`` over gRPC) and
drops the batch it had already acknowledged to the application. Those runs were not acknowledged end to
end, but nothing tells them apart from a loss of ours, so when rotel logged such drops only at the kill
(within 5 s of it) and every missing piece is of a signal rotel dropped, the test is marked xfail with
the figures (``RUN_IDENTITY_FAULT_STRICT=1`` fails instead); any other loss fails.
``RUN_IDENTITY_FAULT_PROTOCOL=grpc`` makes rotel forward to serve's OTLP/gRPC port instead (same loss).

Robust on a loaded machine: every wait is bounded (the bounds are generous) and nothing asserts on wall
time. rotel's retry back-off is shortened (first retry after 250 ms, at most 2 s apart; still for up to
300 s) so a short outage costs seconds, not minutes. Each application's span queue (the SDK's
BatchSpanProcessor, which drops silently when full) is sized to its runs, so a dropped span cannot pass for
a delivery fault; manifests go through ManifestExportQueue, which never drops silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from run_identity import Keyring
from run_identity.core.keys import generate_key_files
from run_identity.pipeline.collector import (
    CollectorError,
    CollectorUnavailable,
    RotelCollector,
    free_port,
    rotel_version,
    start_rotel,
)
from run_identity.pipeline.serve import MANIFESTS_FILE
from run_identity.pipeline.spool import flush_spool_dir
from run_identity.verify import Policy, Verifier

APPS = int(os.environ.get("RUN_IDENTITY_FAULT_APPS", "4"))
RUNS = int(os.environ.get("RUN_IDENTITY_FAULT_RUNS", "500"))
OUTAGE = float(os.environ.get("RUN_IDENTITY_FAULT_OUTAGE", "5"))
ROTEL_DOWN = 2.0
#: How rotel forwards to serve: OTLP/HTTP as rotel.env ships it (default) or OTLP/gRPC.
PROTOCOL = os.environ.get("RUN_IDENTITY_FAULT_PROTOCOL", "http")
APP = Path(__file__).resolve().parent / "delivery_fault_app.py"
CLI = [sys.executable, "-m", "run_identity"]
#: rotel's retries to serve: sooner than its defaults (5 s, then up to 30 s apart), as long in all (300 s).
ROTEL_RETRY = {
    "ROTEL_OTLP_EXPORTER_RETRY_INITIAL_BACKOFF": "250ms",
    "ROTEL_OTLP_EXPORTER_RETRY_MAX_BACKOFF": "2s",
    "ROTEL_OTLP_EXPORTER_RETRY_MAX_ELAPSED_TIME": "300s",
}
WAIT = 300.0  # the bound of every wait for the applications or the pipeline
SETTLE = 20.0  # nothing new at serve for this long: the pipeline holds nothing more
STRICT = os.environ.get("RUN_IDENTITY_FAULT_STRICT", "") not in ("", "0")


@pytest.fixture(scope="module")
def rotel() -> str:
    try:
        return rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")


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


class ServeProcess:
    """``run-identity serve`` as a child process that can be killed and started again on the same port."""

    def __init__(self, out: Path, port: int, grpc_port: int, log: Path) -> None:
        self.out, self.port, self.grpc_port, self.log = out, port, grpc_port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def forward_url(self) -> str:
        """Where rotel sends: serve's OTLP/HTTP or OTLP/gRPC port, as PROTOCOL says."""
        return f"http://127.0.0.1:{self.grpc_port if PROTOCOL == 'grpc' else self.port}"

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}: {self.log.read_text()[-600:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*CLI, "serve", "--out", str(self.out), "--port", str(self.port), "--grpc-port", str(self.grpc_port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        wait_until(self._healthy, 60, "serve answering /healthz", interval=0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def start_collector(serve: ServeProcess, grpc_port: int, http_port: int, workdir: Path) -> RotelCollector:
    """rotel in front of serve on fixed ports (so the applications find it again after a restart)."""
    for attempt in range(3):
        try:
            return start_rotel(
                traces_endpoint=serve.forward_url,
                manifests_endpoint=serve.forward_url,
                grpc_port=grpc_port,
                http_port=http_port,
                workdir=workdir,
                extra_env={
                    **ROTEL_RETRY,
                    "ROTEL_EXPORTER_TRACES_PROTOCOL": PROTOCOL,
                    "ROTEL_EXPORTER_MANIFESTS_PROTOCOL": PROTOCOL,
                },
                ready_timeout=30,
            )
        except CollectorError:
            if attempt == 2:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


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


@pytest.mark.collector
@pytest.mark.slow
def test_faults_through_rotel_lose_no_acknowledged_run(rotel: str, tmp_path: Path) -> None:
    """serve killed -9 and restarted, serve's port refusing for a while, rotel restarted, all while several
    application processes export through rotel: every run acknowledged end to end verifies (see the module
    docstring for the definition), and verify reports no manifest_missing."""
    key, jwks, _ = generate_key_files(tmp_path / "keys")
    out, control = tmp_path / "out", tmp_path / "control"
    control.mkdir()
    serve = ServeProcess(out, free_port(), free_port(), tmp_path / "serve.log")
    grpc_port, http_port = free_port(), free_port()
    while http_port == grpc_port:
        http_port = free_port()
    apps: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []
    events: list[str] = []
    collector: RotelCollector | None = None
    rotel_exits: list[int | None] = []
    started = time.monotonic()

    def note(text: str) -> None:
        events.append(f"{time.monotonic() - started:7.2f} s {text}")

    def app_failed() -> str | None:
        for i, (process, _, err) in enumerate(apps):
            if process.poll() not in (None, 0):
                err.flush()
                return f"app{i} exited with {process.returncode}: {Path(err.name).read_text()[-800:]}"
        return None

    def all_at(k: int) -> bool:
        if (problem := app_failed()) is not None:
            raise AssertionError(problem)
        return all((control / f"app{i}.at{k}").exists() for i in range(APPS))

    def release(k: int) -> None:
        (control / f"gate{k}").touch()

    try:
        serve.start()
        collector = start_collector(serve, grpc_port, http_port, tmp_path / "rotel")
        note("serve and rotel up")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OTEL_BSP_MAX_QUEUE_SIZE=str(max(RUNS, 2048)), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        for i in range(APPS):
            stdout = open(tmp_path / f"app{i}.out", "wb")  # noqa: SIM115 - closed in finally
            stderr = open(tmp_path / f"app{i}.err", "wb")  # noqa: SIM115 - closed in finally
            command = [
                sys.executable,
                str(APP),
                str(key),
                collector.otlp_http_endpoint,
                str(tmp_path / f"spool{i}"),
                str(control),
                f"app{i}",
                str(RUNS),
            ]
            apps.append((subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env), stdout, stderr))

        # Fault 1: serve killed -9 while runs flow, started again at once on the same port and folder.
        wait_until(lambda: all_at(1), WAIT, "every application at its first quarter")
        release(1)
        time.sleep(0.3)
        killed_at = time.time()
        serve.kill()
        note("serve killed -9")
        serve.start()
        note("serve started again")

        # Fault 2: nothing listens on serve's port for OUTAGE seconds (connection refused).
        wait_until(lambda: all_at(2), WAIT, "every application at its half")
        serve.stop()
        assert refused(serve.port) and refused(serve.grpc_port)
        outage_began = time.monotonic()
        note("serve stopped: its port refuses connections")
        release(2)
        wait_until(lambda: all_at(3), WAIT, "every application at its third quarter")
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - outage_began)))
        serve.start()
        note(f"serve started again after {time.monotonic() - outage_began:.1f} s refused")

        # Fault 3: rotel stopped (SIGTERM, serve up: it forwards what it holds) and started again.
        time.sleep(3.0)  # rotel's retries of the outage (at most 2 s apart) reach serve
        rotel_exits.append(collector.stop(timeout=60))
        note(f"rotel stopped (exit {rotel_exits[-1]})")
        release(3)
        time.sleep(ROTEL_DOWN)
        collector = start_collector(serve, grpc_port, http_port, tmp_path / "rotel")
        note("rotel started again")
        wait_until(lambda: all_at(4), WAIT, "every application past its last run")
        release(4)  # they shut down, their spools sending what rotel refused while it was down

        for i, (process, _, _) in enumerate(apps):
            try:
                process.wait(max(1.0, WAIT - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"app{i} did not finish") from None
        assert app_failed() is None, app_failed()
        apps_done = time.monotonic()
        note("every application shut down")

        reports = [json.loads((tmp_path / f"app{i}.out").read_text().strip().splitlines()[-1]) for i in range(APPS)]
        # What a spool still holds (rotel was down when a process ended) is sent now, as
        # `run-identity spool flush` would.
        flushed = {}
        for i in range(APPS):
            result = flush_spool_dir(tmp_path / f"spool{i}", collector.otlp_http_endpoint)
            flushed[f"spool{i}"] = {name: r._asdict() for name, r in result.items()}
            assert all(r.left == 0 and r.dead_lettered == 0 for r in result.values()), (i, result)
        note("spools flushed")

        made = {sid for i in range(APPS) for sid in (control / f"app{i}.runs").read_text().split()}
        assert len(made) == APPS * RUNS
        for report in reports:
            coverage, queue = report["coverage"], report["queue"]
            assert coverage["identified"] == coverage["manifests_emitted"] == RUNS, report
            assert coverage["manifest_failures"] == coverage["manifests_lost"] == 0, report
            assert queue["dropped"] == queue["lost"] == 0, report
            for spool in ("spans_spool", "manifests_spool"):
                assert report[spool]["lost_records"] == report[spool]["dead_lettered"] == 0, report
        acknowledged = made  # no process counted a loss: every run it made was acknowledged end to end

        keyring = Keyring.from_jwks(jwks)
        verified: set[str] = set()
        deadline = time.monotonic() + WAIT
        settled_since = time.monotonic()
        # Until every acknowledged run verifies, or nothing new arrived for SETTLE seconds (rotel retries at
        # most 2 s apart, so by then it holds nothing it will still deliver), within WAIT.
        while time.monotonic() < deadline and time.monotonic() - settled_since < SETTLE:
            report = Verifier(keyring, Policy()).verify([out])
            now_verified = {r.span_id for r in report.results() if r.code == "verified" and r.span_id}
            if now_verified != verified:
                verified, settled_since = now_verified, time.monotonic()
            if acknowledged <= verified:
                break
            time.sleep(2.0)
        delivered = time.monotonic()
        note(f"{len(acknowledged & verified)} of {len(acknowledged)} acknowledged runs verify")
        rotel_exits.append(collector.stop(timeout=60))
        collector = None
        assert serve.stop() == 0
    finally:
        if collector is not None:
            collector.stop()
        serve.stop()
        for process, stdout, stderr in apps:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            stdout.close()
            stderr.close()

    done = subprocess.run(
        [*CLI, "verify", str(out), "--keyring", str(jwks), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["type"] == "summary", done.stdout[-500:]
    total = APPS * RUNS
    rotel_log = (tmp_path / "rotel" / "rotel.log").read_text(errors="replace")
    # rotel logs every batch it gives up on, with the signal: those runs were never acknowledged by serve.
    drops: Counter[str] = Counter()
    drops_elsewhere = 0  # drops rotel logged other than within 5 s of serve's kill
    for stamp, kind in re.findall(
        r'(?m)^(\S+) +ERROR Exporting failed, dropping data\..*exporter_type="(\w+)"', rotel_log
    ):
        drops[kind] += 1
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        drops_elsewhere += not killed_at - 1 <= when <= killed_at + 5
    figures: dict[str, Any] = {
        "apps": APPS,
        "runs_per_app": RUNS,
        "runs": total,
        "verified": summary["counts"]["verified"],
        "manifest_missing": summary["counts"]["manifest_missing"],
        "runs_per_s_until_apps_done": round(total / (apps_done - started), 1),
        "runs_per_s_until_all_verified": round(total / (delivered - started), 1),
        "runs_per_s_making_runs": round(total / max(r["seconds_making_runs"] for r in reports), 1),
        "seconds_apps_waited_at_gates_max": round(max(r["seconds_waiting_at_gates"] for r in reports), 1),
        "serve_starts": serve.starts,
        "app_retries": {
            signal_name: {
                counter: sum(r[f"{signal_name}_spool"][counter] for r in reports)
                for counter in ("exports", "export_failures", "spooled_batches", "replayed_batches")
            }
            for signal_name in ("spans", "manifests")
        },
        "manifest_queue_waits": sum(r["queue"]["waits"] for r in reports),
        "spool_batches_flushed_after_exit": sum(r["sent"] for spools in flushed.values() for r in spools.values()),
        "rotel_batches_dropped": {"logs": drops["otlp_logs"], "traces": drops["otlp_traces"]},
        "rotel_batches_dropped_not_at_the_kill": drops_elsewhere,
        "rotel_exits": rotel_exits,
        "acknowledged_runs_not_verified": len(acknowledged - verified),
        "verify_counts": {k: v for k, v in summary["counts"].items() if v},
        # Records serve holds beyond one per run that has its manifest: copies a retry delivered twice.
        "manifest_copies_at_serve": manifest_records(out / MANIFESTS_FILE)
        - (summary["runs"] - summary["counts"]["manifest_missing"]),
        "events": events,
    }
    with contextlib.suppress(OSError):
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
    print("fault-test figures:", json.dumps(figures))

    assert rotel_exits == [0, 0], (rotel_exits, events)  # rotel was never killed: it forwarded what it held
    counts = summary["counts"]
    # A run whose span or manifest rotel dropped (logged above) was acknowledged by rotel, not end to end;
    # rotel says which signal it dropped, so each kind of loss must be one rotel owned up to.
    # and only when serve was killed (the outage and rotel's restart must lose nothing).
    unexplained = (
        drops_elsewhere
        or (counts["manifest_missing"] and not drops["otlp_logs"])
        or (counts["span_missing"] and not drops["otlp_traces"])
    )
    if acknowledged - verified and not unexplained and not STRICT:
        pytest.xfail(
            f"rotel dropped {dict(drops)} batch(es) it had acknowledged when serve was killed during the "
            f"request ({len(acknowledged - verified)} runs incomplete: {dict((k, v) for k, v in counts.items() if v)}"
            "); rotel 0.0.1a15 does not retry a request whose connection breaks (hyper IncompleteMessage / "
            "BrokenPipe). RUN_IDENTITY_FAULT_STRICT=1 fails instead."
        )
    assert not acknowledged - verified, (len(acknowledged - verified), figures)
    assert counts["manifest_missing"] == 0, summary
    assert counts["verified"] >= len(acknowledged), summary
    assert done.returncode == 0 and summary["passed"], (summary, done.stderr[-800:])
