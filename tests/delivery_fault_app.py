"""One application process of the delivery fault test (tests/test_delivery_faults.py); not a test module.

    python delivery_fault_app.py KEY ENDPOINT SPOOL_DIR CONTROL_DIR NAME RUNS

Makes RUNS runs with ``run_identity.setup()``, spans and manifests exported over OTLP/HTTP to ENDPOINT (rotel)
through spooling exporters (a batch rotel does not take is spooled in SPOOL_DIR and sent again). At each
quarter of its runs it writes ``CONTROL_DIR/NAME.at<k>`` and waits (at most 300 s) for ``CONTROL_DIR/gate<k>``,
so the test can start a fault while every application is between the same two runs and let them go on
while it lasts; after its last run it waits for ``gate4`` before it shuts down. It writes the span id of every run it made to ``CONTROL_DIR/NAME.runs`` and prints its
counters as one JSON line when it has shut down.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import run_identity
from run_identity.pipeline.spool import spooling_otlp_exporters

GATE_TIMEOUT = 300.0


def wait_gate(control: Path, name: str, k: int) -> float:
    """Say we reached quarter ``k`` and wait for its gate; returns the seconds spent waiting."""
    (control / f"{name}.at{k}").touch()
    started = time.monotonic()
    gate = control / f"gate{k}"
    while not gate.exists() and time.monotonic() - started < GATE_TIMEOUT:
        time.sleep(0.02)
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    key, endpoint, spool_dir, control_dir, name, runs_arg = argv
    control, runs = Path(control_dir), int(runs_arg)
    spans, manifests = spooling_otlp_exporters(endpoint, spool_dir, timeout=2.0)
    identity = run_identity.setup(key, span_exporters=[spans], manifest_exporters=[manifests], set_global=False)
    cuts = {runs * k // 4: k for k in (1, 2, 3)}
    span_ids: list[str] = []
    waited = 0.0
    started = time.monotonic()
    for i in range(runs):
        if i in cuts:
            waited += wait_gate(control, name, cuts[i])
        composition = {
            "model": {"provider": "openai", "name": "m"},
            "operation": "chat",
            "messages": [{"role": "user", "parts": [{"type": "text", "content": f"{name} question {i}"}]}],
        }
        with run_identity.start_genai_span(composition, tracer_provider=identity.tracer_provider) as span:
            pass
        span_ids.append(f"{span.get_span_context().span_id:016x}")
    made = time.monotonic()
    # The test lets us shut down once rotel is up again, so the spools send what they hold themselves.
    waited_to_end = wait_gate(control, name, 4)
    ended_waiting = time.monotonic()
    identity.shutdown()
    ended = time.monotonic()
    (control / f"{name}.runs").write_text("\n".join(span_ids) + "\n", encoding="utf-8")
    report = {
        "name": name,
        "runs": len(span_ids),
        "seconds_making_runs": made - started - waited,
        "seconds_waiting_at_gates": waited,
        "seconds_waiting_to_end": waited_to_end,
        "seconds_shutting_down": ended - ended_waiting,
        "coverage": dataclasses.asdict(identity.processor.coverage),
        "queue": identity.queue_sizes,
        "spans_spool": dataclasses.asdict(spans.stats),
        "manifests_spool": dataclasses.asdict(manifests.stats),
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
