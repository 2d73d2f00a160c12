"""Instructions and cycles per call, counted by ``perf stat`` on this process's main thread.

Times on a shared machine drift by tens of percent between runs; instruction counts repeat to about 1%,
so they are the figure to compare before and after a change to the hot path. Cycles show what the
instructions cost (a low IPC means memory stalls). Each figure is (count of N calls - count of none) / N,
the lower of two tries, for the same cases as bench_identity and bench_processor: the bare span
(baseline), ``sign_run`` with and without the signature, and what the processor adds to a declared GenAI
span on the application's thread (inline signing, and with background signing). Needs Linux ``perf`` and
permission to count user-space events of one's own threads; otherwise it says so and exits 0.

    python bench/bench_instructions.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import bare_span_call
from compositions import small, typical
from opentelemetry.sdk.trace import TracerProvider

from run_identity import (
    Composition,
    Ed25519Signer,
    IdentitySpanProcessor,
    compute_identity,
    declare,
    prepare,
    sign_run,
)
from run_identity.core.statement import run_statement

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
ATTRIBUTES = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-2024-08-06"}
EVENTS = "instructions:u,cycles:u"


def _count(run: Callable[[int], object], n: int) -> tuple[int, int] | None:
    """(instructions, cycles) of this thread while ``run(n)`` runs, or None when perf cannot count."""
    perf = subprocess.Popen(
        ["perf", "stat", "-t", str(os.getpid()), "-x,", "-e", EVENTS],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(0.3)  # perf attaches
    run(n)
    perf.send_signal(signal.SIGINT)
    err = perf.communicate()[1]
    found: dict[str, int] = {}
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].isdigit():
            found[fields[2].split(":")[0]] = int(fields[0])
    if "instructions" not in found or "cycles" not in found:
        return None
    return found["instructions"], found["cycles"]


def _per_call(run: Callable[[int], object], n: int) -> tuple[float, float] | None:
    run(2)
    tries = [(_count(run, 0), _count(run, n)) for _ in range(2)]
    if any(a is None or b is None for a, b in tries):
        return None
    instructions = min(b[0] - a[0] for a, b in tries if a and b) / n
    cycles = min(b[1] - a[1] for a, b in tries if a and b) / n
    return instructions, cycles


def _repeat(fn: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            fn()

    return run


def _span_calls(signer: Ed25519Signer, composition: Any, *, background: bool) -> Callable[[int], None]:
    """``n`` declared (or, with None, undeclared) GenAI spans; background ones in batches of 32 in flight."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(IdentitySpanProcessor(signer, emit_manifests=False, background_signing=background))
    tracer = provider.get_tracer("bench.instructions")

    def start() -> Any:
        if composition is None:
            return tracer.start_span("chat", attributes=ATTRIBUTES)
        with declare(composition):
            return tracer.start_span("chat", attributes=ATTRIBUTES)

    def run(n: int) -> None:
        for _ in range(0, n, 32):
            spans = [start() for _ in range(min(32, n))]
            provider.force_flush()
            for span in spans:
                span.end()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1600)
    n = parser.parse_args().calls
    if shutil.which("perf") is None:
        print("perf is not installed: no instruction counts (the timed benchmarks still run)")
        return 0
    signer = Ed25519Signer.generate()
    prepared = typical()
    prepared["instructions"] = prepare("instructions", prepared["instructions"])
    prepared["tools"] = prepare("tools", prepared["tools"])
    bare = _per_call(_repeat(bare_span_call()), n)
    if bare is None:
        print("perf cannot count this process's events here (perf_event_paranoid?): no instruction counts")
        return 0
    print("per call, this process's main thread, counted by perf; ratios to the bare span")
    print(f"{'case':<64}{'instructions':>14}{'/span':>8}{'cycles':>12}{'/span':>8}")

    def show(label: str, figures: tuple[float, float] | None) -> None:
        if figures is not None:
            i, c = figures
            print(f"{label:<64}{i / 1000:13.0f}k{i / bare[0]:7.2f}x{c / 1000:11.0f}k{c / bare[1]:7.2f}x")

    show("bare OTel span (start+end, 12 attributes)", bare)
    data = signer.sign(b"warm-up")
    show("Ed25519 signature (pyca)", _per_call(_repeat(lambda: signer.sign(data)), n))
    for name, doc in (("small", small()), ("typical", typical()), ("typical (prepared)", prepared)):

        def unsigned(doc: dict[str, Any] = doc) -> None:
            identity = compute_identity(Composition.from_dict(doc))
            run_statement(identity.id, trace_id=TRACE_ID, span_id=SPAN_ID, key_id=signer.key_id).signing_input()

        def signed(doc: dict[str, Any] = doc) -> None:
            sign_run(Composition.from_dict(doc), signer, trace_id=TRACE_ID, span_id=SPAN_ID)

        show(f"{name}: identity + signature (sign_run)", _per_call(_repeat(signed), n))
        show(f"{name}: identity without signature", _per_call(_repeat(unsigned), n))
    for background in (False, True):
        undeclared = _per_call(_span_calls(signer, None, background=background), n)
        mode = "background signing" if background else "inline signing"
        for name, doc in (("typical", typical()), ("typical (prepared)", prepared)):
            declared = _per_call(_span_calls(signer, doc, background=background), n)
            if declared is not None and undeclared is not None:
                added = (declared[0] - undeclared[0], declared[1] - undeclared[1])
                show(f"{name}: on_start + ({mode}, app thread)", added)
    _verify_rows(show)
    return 0


def _verify_rows(show: Callable[[str, tuple[float, float] | None], None]) -> None:
    """Issue 4's ratio, counted: one typical run verified (OTLP/JSON lines) against one raw Ed25519 verify."""
    import tempfile

    import bench_verify

    from run_identity.core.keys import Keyring
    from run_identity.verify import Policy, Verifier

    runs = 512
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as root:
        data = Path(root) / "typical"
        keyring = bench_verify.generate(data, "typical", runs)
        verifier = Verifier(Keyring.from_jwks(keyring), Policy())
        signer = bench_verify._signer()
        message = b"x" * 330
        signature, key = signer.sign(message), signer.public_key
        raw = _per_call(_repeat(lambda: key.verify(signature, message)), 1600)
        whole = _per_call(_repeat(lambda: verifier.verify([data]).counts), 2)
        if raw is None or whole is None:
            return
        per_run = (whole[0] / runs, whole[1] / runs)
        print()
        print(f"{'verification (issue 4)':<64}{'instructions':>14}{'/raw':>8}{'cycles':>12}{'/raw':>8}")
        for label, (i, c) in (
            ("raw Ed25519 verify (pyca)", raw),
            ("one typical run verified (OTLP/JSON lines)", per_run),
        ):
            print(f"{label:<64}{i / 1000:13.0f}k{i / raw[0]:7.2f}x{c / 1000:11.0f}k{c / raw[1]:7.2f}x")
        print(
            f"throughput as a share of raw Ed25519: {raw[0] / per_run[0]:.0%} by instructions, "
            f"{raw[1] / per_run[1]:.0%} by cycles (the goal: 50% of runs per second)"
        )


if __name__ == "__main__":
    sys.exit(main())
