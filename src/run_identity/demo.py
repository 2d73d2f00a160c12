"""The main job: declare a dozen example runs, export them, verify them, print the verification table.

``run_demo(out)`` creates a signing key under ``out/keys`` when there is none, makes the runs of
:mod:`run_identity.demo_runs` through the real OpenTelemetry SDK with the identity processor, exports spans
and manifests with the embedded file export (``out/export``) or, with ``collector=True``, through a local
rotel collector into ``run-identity serve`` (``out/collected``), and verifies what was exported as an
independent verifier would: from the files and the JWKS of trusted keys only.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace.export import SpanExporter

from run_identity.core.digest import prepare
from run_identity.core.keys import Ed25519Signer, Keyring, generate_key_files
from run_identity.demo_runs import demo_compositions
from run_identity.otel.genai import start_genai_span
from run_identity.pipeline.wiring import setup
from run_identity.verify import LABELS_FILE, Policy, VerificationReport, Verifier

__all__ = ["DemoRun", "run_demo"]


@dataclass(frozen=True)
class DemoRun:
    """One run the demo made: its label and the ids of its span."""

    label: str
    trace_id: str
    span_id: str


def _keys(out: Path, stream: TextIO) -> tuple[Ed25519Signer, Path]:
    keys = out / "keys"
    key_path, jwks_path = keys / "signing-key.pem", keys / "trusted-keys.jwks.json"
    if not key_path.exists() or not jwks_path.exists():
        key_path, jwks_path, key_id = generate_key_files(keys)
        stream.write(f"created signing key {key_path} (key id {key_id})\n")
    signer = Ed25519Signer.from_file(key_path)
    if signer.key_id not in Keyring.from_jwks(jwks_path):
        generate_key_files(keys)
        signer = Ed25519Signer.from_file(key_path)
    return signer, jwks_path


def _make_runs(
    signer: Ed25519Signer,
    *,
    directory: Path | None = None,
    span_exporters: tuple[SpanExporter, ...] = (),
    manifest_exporters: tuple[LogRecordExporter, ...] = (),
) -> list[DemoRun]:
    wiring = setup(
        signer,
        directory=directory,
        span_exporters=span_exporters,
        manifest_exporters=manifest_exporters,
        set_global=False,
    )
    runs: list[DemoRun] = []
    # Instructions change rarely: digest them once and reuse the digests in every run that has them.
    prepared: dict[str, object] = {}
    try:
        for label, composition in demo_compositions():
            if "instructions" in composition:
                key = repr(composition["instructions"])
                if key not in prepared:
                    prepared[key] = prepare("instructions", composition["instructions"])
                composition = {**composition, "instructions": prepared[key]}
            with start_genai_span(composition, tracer_provider=wiring.tracer_provider) as span:
                ctx = span.get_span_context()
                # A real application calls its model here; the identity was fixed when the span started.
                span.set_attribute("gen_ai.response.finish_reasons", ("stop",))
            runs.append(DemoRun(label, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"))
    finally:
        wiring.shutdown()
    return runs


def _write_labels(export: Path, runs: list[DemoRun]) -> None:
    """``LABELS_FILE`` in the export folder: each run's label and ids, so ``show`` and ``diff`` take the labels
    of the table. A dotfile: the verifier reads no dotfile, so it is not taken for exported data."""
    labels = {r.label: f"{r.trace_id}/{r.span_id}" for r in runs}
    fd = os.open(export / LABELS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(labels, f, indent=1)


def _print_table(runs: list[DemoRun], report: VerificationReport, stream: TextIO) -> None:
    by_run = {(r.trace_id, r.span_id): r for r in report.results()}
    labels = {(r.trace_id, r.span_id): r.label for r in runs}
    rows = [("RUN", "SPAN", "IDENTITY", "RESULT")]
    for run in runs:
        result = by_run.get((run.trace_id, run.span_id))
        identity = (result.identity or "-") if result else "-"
        # A prefix `show` and `diff` take as it is printed (no ellipsis to trim), like the span id beside it.
        rows.append((run.label, run.span_id, identity[:23], result.code if result else "not found"))
    for key, result in by_run.items():
        if key not in labels:
            rows.append(("(unexpected)", result.span_id or "-", (result.identity or "-")[:23], result.code))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        stream.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + f"  {row[3]}\n")


def run_demo(
    out: str | os.PathLike[str], *, collector: bool = False, stream: TextIO, command: str = "run-identity"
) -> int:
    """Run the main job into ``out``; returns 0 when every run verified, 1 otherwise.

    ``command`` starts the follow-up command lines printed at the end (how the user runs ``run-identity``).

    Raises KeyringError for unusable keys and run_identity.pipeline.collector.CollectorUnavailable when
    ``collector`` is asked for where rotel cannot run.
    """
    out_dir = Path(out)
    signer, jwks_path = _keys(out_dir, stream)
    export = out_dir / ("collected" if collector else "export")
    if export.exists():
        shutil.rmtree(export)
    export.mkdir(parents=True)
    if collector:
        from run_identity.pipeline.collector import run_through_rotel

        runs: list[DemoRun] = []

        def through(span_exporter: SpanExporter, manifest_exporter: LogRecordExporter) -> int:
            runs.extend(_make_runs(signer, span_exporters=(span_exporter,), manifest_exporters=(manifest_exporter,)))
            return len(runs)

        run_through_rotel(export, through)
        route = "app -> OTLP/HTTP -> rotel -> run-identity serve -> files"
    else:
        runs = _make_runs(signer, directory=export)
        route = "app -> embedded file export"
    stream.write(f"made {len(runs)} runs ({route}); exported to {export}\n")
    _write_labels(export, runs)
    stream.write(f"verifying with the trusted keys in {jwks_path} ...\n\n")
    report = Verifier(Keyring.from_jwks(jwks_path), Policy()).verify([export])
    _print_table(runs, report, stream)
    stream.write("\n")
    all_verified = report.passed and report.runs == len(runs) == report.counts["verified"]
    if all_verified:
        stream.write(f"PASS: all {len(runs)} runs verified.\n")
    else:
        stream.write(f"FAIL: {report.failed} of {report.runs} runs did not verify.\n")
    by_label = {r.label: r for r in runs}
    a, b = by_label.get("greeting"), by_label.get("greeting-hot")
    if a and b:
        where, keys = shlex.quote(str(export)), shlex.quote(str(jwks_path))
        stream.write(
            "\nNext: see why two runs differ, or look at one:\n"
            f"  {command} diff {a.trace_id}/{a.span_id} {b.trace_id}/{b.span_id} --in {where}\n"
            f"  {command} show {a.trace_id}/{a.span_id} --in {where} --keyring {keys}\n"
            f"  {command} verify {where} --keyring {keys}\n"
        )
    return 0 if all_verified else 1
