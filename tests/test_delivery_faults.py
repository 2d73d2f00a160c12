"""The fault test of issue 15 through the real pipeline: application processes -> collector -> serve -> files.

Several application processes (tests/delivery_fault_app.py, ``setup()`` with spooling OTLP/HTTP exporters)
export through a real collector to a real ``run-identity serve`` process while, in turn:

1. serve is killed with SIGKILL while runs flow and started again at once on the same port and folder;
2. serve is stopped and nothing listens on its port for ``RUN_IDENTITY_FAULT_OUTAGE`` seconds (5): every
   connection the collector makes to it is refused, while the applications keep exporting; then serve is
   started again on the same port and folder;
3. the collector is stopped and started again on the same ports about 2 s later, while the applications
   keep exporting to it (refused: they spool, and send again when they shut down, after it is back).

Each fault starts while every application is at the same quarter of its runs (they wait at a gate) and
lasts while they make the next quarter. Sizes: ``RUN_IDENTITY_FAULT_APPS`` processes (4) of
``RUN_IDENTITY_FAULT_RUNS`` runs (500); the issue's 8 x 2,000 is
``RUN_IDENTITY_FAULT_APPS=8 RUN_IDENTITY_FAULT_RUNS=2000``. The figures (runs/s, what was retried, and where
serve's batch journal last saw each run that does not verify) are printed as one ``fault-test figures:``
JSON line (``pytest -s`` shows it).

Two collectors:

* **the relay** (``run-identity relay``, the collector path that keeps what it acknowledged): it answers a
  request only once it is fsynced in its spool, and forwards it until serve answers 2xx, whatever broke
  the previous attempt. It is also killed with SIGKILL during the outage, while it holds requests of both
  signals that serve refused (and started again at once), and fault 3 is a SIGKILL of the relay too.
  Every run the applications made must
  verify, ``verify`` must report 0 ``manifest_missing`` and 0 ``span_missing``: no xfail.
* **rotel 0.0.1a15** (the newest on PyPI), kept as a measurement of its known limitation. Fault 3 is a
  SIGTERM (rotel holds what it acknowledged in memory only; its exit status 0 is asserted). When serve is
  killed while rotel's request to it is in flight, rotel gets ``hyper::Error(IncompleteMessage)`` (HTTP)
  or ``BrokenPipe`` (gRPC), which its retry policy does not retry (it retries refused connections,
  timeouts, 408/429/5xx and gRPC UNAVAILABLE/INTERNAL/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED only; no setting
  changes that), and drops the batch it had already acknowledged to the application: ``Exporting failed,
  dropping data``. serve's journal shows those runs never reached serve (or never became durable there).
  That test is marked xfail, with the figures, when rotel logged such drops only at serve's kill and every
  missing piece is of a signal rotel dropped (``RUN_IDENTITY_FAULT_STRICT=1`` fails instead); any other
  loss fails. ``RUN_IDENTITY_FAULT_PROTOCOL=grpc`` makes rotel forward over OTLP/gRPC (same loss).

*Acknowledged end to end*: a run whose application made it and whose span and manifest its pipeline handed
over for good (the collector answered success, at once or when the spool sent it again), so it is not
counted lost anywhere in the application (coverage, both queues, the spools), and, for rotel, not in a
batch rotel logged dropping. serve acknowledges only what it has written and fsynced.

Robust on a loaded machine: every wait is bounded (the bounds are generous) and nothing asserts on wall
time. Retries are shortened (first after 250 ms, at most 2 s apart) so a short outage costs seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest
from delivery_fault_support import (
    CLI,
    RelayProcess,
    ServeProcess,
    journal_batches,
    manifest_records,
    refused,
    start_collector,
    wait_until,
    where_lost,
)

from run_identity import Keyring
from run_identity.core.keys import generate_key_files
from run_identity.pipeline.collector import CollectorUnavailable, RotelCollector, free_port, rotel_version
from run_identity.pipeline.serve import MANIFESTS_FILE
from run_identity.pipeline.spool import flush_spool_dir
from run_identity.verify import Policy, Verifier

APPS = int(os.environ.get("RUN_IDENTITY_FAULT_APPS", "4"))
RUNS = int(os.environ.get("RUN_IDENTITY_FAULT_RUNS", "500"))
OUTAGE = float(os.environ.get("RUN_IDENTITY_FAULT_OUTAGE", "5"))
COLLECTOR_DOWN = 2.0
#: How rotel forwards to serve: OTLP/HTTP as rotel.env ships it (default) or OTLP/gRPC.
PROTOCOL = os.environ.get("RUN_IDENTITY_FAULT_PROTOCOL", "http")
APP = Path(__file__).resolve().parent / "delivery_fault_app.py"
WAIT = 300.0  # the bound of every wait for the applications or the pipeline
SETTLE = 20.0  # nothing new at serve for this long: the pipeline holds nothing more
STRICT = os.environ.get("RUN_IDENTITY_FAULT_STRICT", "") not in ("", "0")
_DROP = re.compile(r'(?m)^(\S+) +ERROR Exporting failed, dropping data\..*exporter_type="(\w+)"')


class _Front:
    """The collector in front of serve: rotel or the relay, started, faulted (fault 3) and stopped."""

    def __init__(self, kind: str, serve: ServeProcess, tmp_path: Path) -> None:
        self.kind, self.serve, self.tmp_path = kind, serve, tmp_path
        self.grpc_port, self.http_port = free_port(), free_port()
        while self.http_port == self.grpc_port:
            self.http_port = free_port()
        self.rotel: RotelCollector | None = None
        self.relay = RelayProcess(tmp_path / "relay-spool", self.http_port, serve.url, tmp_path / "relay.log")
        self.exits: list[int | None] = []
        self.relay_summary: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return self.relay.url if self.kind == "relay" else f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        if self.kind == "relay":
            self.relay.start()
        else:
            self.rotel = start_collector(
                self.serve.forward_url(PROTOCOL), PROTOCOL, self.grpc_port, self.http_port, self.tmp_path / "rotel"
            )

    def fault(self) -> str:
        """Fault 3's first half: the relay is killed -9; rotel is stopped with SIGTERM (serve up)."""
        if self.kind == "relay":
            self.relay.kill()
            return "relay killed -9"
        assert self.rotel is not None
        self.exits.append(self.rotel.stop(timeout=60))
        return f"rotel stopped (exit {self.exits[-1]})"

    def finish(self) -> None:
        if self.kind == "relay":
            self.relay_summary = self.relay.summary()
            self.exits.append(self.relay.stop(60))
        elif self.rotel is not None:
            self.exits.append(self.rotel.stop(timeout=60))
            self.rotel = None

    def cleanup(self) -> None:
        self.relay.stop()
        if self.rotel is not None:
            self.rotel.stop()

    def drops(self, killed_at: float) -> tuple[Counter[str], int]:
        """Batches rotel logged dropping, by signal, and how many of them were not at serve's kill."""
        drops: Counter[str] = Counter()
        elsewhere = 0
        log = self.tmp_path / "rotel" / "rotel.log"
        if self.kind == "relay" or not log.exists():
            return drops, 0
        for stamp, kind in _DROP.findall(log.read_text(errors="replace")):
            drops[kind] += 1
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            elsewhere += not killed_at - 1 <= when <= killed_at + 5
        return drops, elsewhere


def run_faults(kind: str, tmp_path: Path) -> dict[str, Any]:
    """The scenario of the module docstring through ``kind`` ("relay" or "rotel"); returns what the test
    asserts on (figures, verify's summary, the runs made and those verified)."""
    key, jwks, _ = generate_key_files(tmp_path / "keys")
    out, control = tmp_path / "out", tmp_path / "control"
    control.mkdir()
    serve = ServeProcess(out, free_port(), free_port(), tmp_path / "serve.log")
    front = _Front(kind, serve, tmp_path)
    apps: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []
    events: list[str] = []
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
        front.start()
        note(f"serve and {kind} up")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
        for i in range(APPS):
            stdout = open(tmp_path / f"app{i}.out", "wb")  # noqa: SIM115 - closed in finally
            stderr = open(tmp_path / f"app{i}.err", "wb")  # noqa: SIM115 - closed in finally
            command = [
                sys.executable,
                str(APP),
                str(key),
                front.endpoint,
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
        if kind == "relay":
            # The relay holds what it acknowledged during the outage (serve refuses it): kill it -9 now and
            # start it again; what it held must still reach serve.
            wait_until(lambda: all(front.relay.summary()["pending"].values()), WAIT, "the relay holding both signals")
            front.relay.kill()
            note(f"relay killed -9 holding {front.relay.spooled()} requests serve refused")
            front.relay.start()
            note("relay started again")
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - outage_began)))
        serve.start()
        note(f"serve started again after {time.monotonic() - outage_began:.1f} s refused")

        # Fault 3: the collector stopped (relay: SIGKILL; rotel: SIGTERM) and started again.
        time.sleep(3.0)  # the collector's retries of the outage (at most 2 s apart) reach serve
        note(front.fault())
        release(3)
        time.sleep(COLLECTOR_DOWN)
        front.start()
        note(f"{kind} started again")
        wait_until(lambda: all_at(4), WAIT, "every application past its last run")
        release(4)  # they shut down, their spools sending what the collector refused while it was down

        for i, (process, _, _) in enumerate(apps):
            try:
                process.wait(max(1.0, WAIT - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"app{i} did not finish") from None
        assert app_failed() is None, app_failed()
        apps_done = time.monotonic()
        note("every application shut down")

        reports = [json.loads((tmp_path / f"app{i}.out").read_text().strip().splitlines()[-1]) for i in range(APPS)]
        # What a spool still holds (the collector was down when a process ended) is sent now, as
        # `run-identity spool flush` would.
        flushed = {}
        for i in range(APPS):
            result = flush_spool_dir(tmp_path / f"spool{i}", front.endpoint)
            flushed[f"spool{i}"] = {name: r._asdict() for name, r in result.items()}
            assert all(r.left == 0 and r.dead_lettered == 0 for r in result.values()), (i, result)
        note("spools flushed")

        made = {sid for i in range(APPS) for sid in (control / f"app{i}.runs").read_text().split()}
        assert len(made) == APPS * RUNS
        for report in reports:
            coverage, queue = report["coverage"], report["queue"]
            assert coverage["identified"] == coverage["manifests_emitted"] == RUNS, report
            assert coverage["manifest_failures"] == coverage["manifests_lost"] == coverage["spans_lost"] == 0, report
            assert queue["dropped"] == queue["lost"] == queue["spans_dropped"] == queue["spans_lost"] == 0, report
            for spool in ("spans_spool", "manifests_spool"):
                assert report[spool]["lost_records"] == report[spool]["dead_lettered"] == 0, report
        acknowledged = made  # no process counted a loss: every run it made was acknowledged by the collector

        keyring = Keyring.from_jwks(jwks)
        verified: set[str] = set()
        deadline = time.monotonic() + WAIT
        settled_since = time.monotonic()
        # Until every acknowledged run verifies, or nothing new arrived for SETTLE seconds (retries are at
        # most 2 s apart, so by then the collector holds nothing it will still deliver), within WAIT.
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
        front.finish()
        assert serve.stop() == 0
    finally:
        front.cleanup()
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
    drops, drops_elsewhere = front.drops(killed_at)
    figures: dict[str, Any] = {
        "collector": kind if kind == "relay" else f"rotel over {PROTOCOL}",
        "apps": APPS,
        "runs_per_app": RUNS,
        "runs": total,
        "verified": summary["counts"]["verified"],
        "manifest_missing": summary["counts"]["manifest_missing"],
        "span_missing": summary["counts"]["span_missing"],
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
        "queue_waits": {
            "manifests": sum(r["queue"]["waits"] for r in reports),
            "spans": sum(r["queue"]["spans_waits"] for r in reports),
        },
        "spool_batches_flushed_after_exit": sum(r["sent"] for spools in flushed.values() for r in spools.values()),
        "collector_exits": front.exits,
        "acknowledged_runs_not_verified": len(acknowledged - verified),
        # Where serve's journal last saw each run that does not verify (per signal).
        "not_verified_by_serve_stage": where_lost(acknowledged - verified, serve.journal),
        "serve_batches": journal_batches(serve.journal),
        "verify_counts": {k: v for k, v in summary["counts"].items() if v},
        # Records serve holds beyond one per run that has its manifest: copies a retry delivered twice.
        "manifest_copies_at_serve": manifest_records(out / MANIFESTS_FILE)
        - (summary["runs"] - summary["counts"]["manifest_missing"]),
        "events": events,
    }
    if kind == "relay":
        received = front.relay_summary.get("received", {})
        figures.update(
            relay_requests_spooled_at_its_restarts=front.relay.pending_at_starts(),
            relay_failed_attempts_retried=front.relay.failed_attempts(),
            relay_forwarded_since_restart=received.get("forwarded"),
            relay_dead_lettered_since_restart=received.get("dead_lettered"),
            relay_pending_at_end=front.relay_summary.get("pending"),
        )
    else:
        figures.update(
            rotel_batches_dropped={"logs": drops["otlp_logs"], "traces": drops["otlp_traces"]},
            rotel_batches_dropped_not_at_the_kill=drops_elsewhere,
        )
    with contextlib.suppress(OSError):
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
    print("fault-test figures:", json.dumps(figures))
    return {
        "figures": figures,
        "summary": summary,
        "done": done,
        "acknowledged": acknowledged,
        "verified": verified,
        "drops": drops,
        "drops_elsewhere": drops_elsewhere,
    }


@pytest.mark.slow
def test_faults_through_the_relay_lose_no_acknowledged_run(tmp_path: Path) -> None:
    """serve killed -9 and restarted, serve's port refusing for a while, the relay killed -9 and restarted,
    all while several application processes export through the relay: every run verifies, and verify
    reports neither manifest_missing nor span_missing."""
    result = run_faults("relay", tmp_path)
    figures, summary, counts = result["figures"], result["summary"], result["summary"]["counts"]
    assert not result["acknowledged"] - result["verified"], (len(result["acknowledged"] - result["verified"]), figures)
    assert counts["manifest_missing"] == 0 and counts["span_missing"] == 0, summary
    assert counts["verified"] == APPS * RUNS, summary
    assert figures["relay_pending_at_end"] == {"traces": 0, "logs": 0}, figures
    # The relay was killed -9 while it held acknowledged requests of both signals (serve refusing them).
    first_restart = figures["relay_requests_spooled_at_its_restarts"][0]
    assert first_restart["traces"] > 0 and first_restart["logs"] > 0, figures
    assert not any(figures["relay_dead_lettered_since_restart"].values()), figures
    assert figures["collector_exits"] == [0], figures
    assert result["done"].returncode == 0 and summary["passed"], (summary, result["done"].stderr[-800:])


@pytest.fixture(scope="module")
def rotel() -> str:
    try:
        return rotel_version()
    except CollectorUnavailable as exc:
        pytest.skip(f"rotel cannot run here: {exc}")


@pytest.mark.collector
@pytest.mark.slow
def test_faults_through_rotel_lose_no_acknowledged_run(rotel: str, tmp_path: Path) -> None:
    """The same faults through rotel (stopped with SIGTERM, not killed): a measurement of rotel 0.0.1a15,
    which drops a batch it had acknowledged when serve is killed with the request in flight (see the
    module docstring); any other loss fails."""
    result = run_faults("rotel", tmp_path)
    figures, summary, counts = result["figures"], result["summary"], result["summary"]["counts"]
    drops, missing = result["drops"], result["acknowledged"] - result["verified"]
    assert figures["collector_exits"] == [0, 0], figures  # rotel was never killed: it forwarded what it held
    # A run whose span or manifest rotel dropped (logged) was acknowledged by rotel, not end to end; rotel
    # says which signal it dropped, so each kind of loss must be one rotel owned up to, and only when serve
    # was killed (the outage and rotel's restart must lose nothing).
    unexplained = (
        result["drops_elsewhere"]
        or (counts["manifest_missing"] and not drops["otlp_logs"])
        or (counts["span_missing"] and not drops["otlp_traces"])
    )
    if missing and not unexplained and not STRICT:
        pytest.xfail(
            f"rotel {rotel} dropped {dict(drops)} batch(es) it had acknowledged when serve was killed during the "
            f"request ({len(missing)} runs incomplete: {figures['verify_counts']}; serve's journal: "
            f"{figures['not_verified_by_serve_stage']}); rotel does not retry a request whose connection breaks "
            "(hyper IncompleteMessage / BrokenPipe). The relay path does not lose them "
            "(test_faults_through_the_relay_lose_no_acknowledged_run). RUN_IDENTITY_FAULT_STRICT=1 fails instead."
        )
    assert not missing, (len(missing), figures)
    assert counts["manifest_missing"] == 0, summary
    assert counts["verified"] >= len(result["acknowledged"]), summary
    assert result["done"].returncode == 0 and summary["passed"], (summary, result["done"].stderr[-800:])
