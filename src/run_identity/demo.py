"""The main job: declare a dozen example runs, export them, verify them, print the verification table.

``run_demo(out)`` creates a signing key under ``out/keys`` when there is none, makes the runs of
:mod:`run_identity.demo_runs` through the real OpenTelemetry SDK with the identity processor, exports spans
and manifests with the embedded file export (``out/export``) or, with ``collector=True``, through a local
rotel collector into ``run-identity serve`` (``out/collected``), and verifies what was exported as an
independent verifier would: from the files and the JWKS of trusted keys only. With ``tlog=True`` it also
runs a transparency log of runs (``run-identity tlog serve`` in process, on 127.0.0.1) that the manifests are
sent to (by the app, or by rotel's log route), publishes it in ``out/tlog`` and checks every run against it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace.export import SpanExporter

from run_identity.core.digest import prepare
from run_identity.core.keys import Ed25519Signer, Keyring, generate_key_files
from run_identity.demo_runs import demo_compositions
from run_identity.otel.genai import start_genai_span
from run_identity.pipeline.wiring import setup
from run_identity.verify import LABELS_FILE, Policy, VerificationReport, VerificationResult, Verifier
from run_identity.verify.tlog import LogTrust, TransparencyLog

if TYPE_CHECKING:
    from run_identity.core.note import NoteSigner
    from run_identity.pipeline.tlog_serve import LogServer

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


def _log_cell(result: VerificationResult | None) -> str:
    if result is None or result.log is None:
        return "-"
    if result.log.index is not None and result.log.status == "included":
        return f"entry {result.log.index}"
    return result.log.status.replace("_", " ")


def _print_table(runs: list[DemoRun], report: VerificationReport, stream: TextIO) -> None:
    by_run = {(r.trace_id, r.span_id): r for r in report.results()}
    labels = {(r.trace_id, r.span_id): r.label for r in runs}
    logged = report.log is not None
    rows = [("RUN", "SPAN", "IDENTITY", *(("LOG",) if logged else ()), "RESULT")]
    for run in runs:
        result = by_run.get((run.trace_id, run.span_id))
        identity = (result.identity or "-") if result else "-"
        # A prefix `show` and `diff` take as it is printed (no ellipsis to trim), like the span id beside it.
        log = (_log_cell(result),) if logged else ()
        rows.append((run.label, run.span_id, identity[:23], *log, result.code if result else "not found"))
    for key, result in by_run.items():
        if key not in labels:
            log = (_log_cell(result),) if logged else ()
            rows.append(("(unexpected)", result.span_id or "-", (result.identity or "-")[:23], *log, result.code))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1]))
        stream.write(f"{cells}  {row[-1]}\n")


#: The demo log's name (its checkpoint origin and key name).
DEMO_LOG_ORIGIN = "demo.run-identity.invalid/runs"


def _start_log(out_dir: Path, jwks_path: Path, stream: TextIO) -> tuple[LogServer, NoteSigner]:
    """A fresh log in ``out/tlog`` (key ``out/keys/log.key``), served on a free loopback port."""
    from run_identity.core.note import NoteSigner, generate_signer
    from run_identity.pipeline.tlog_serve import start_log_server
    from run_identity.pipeline.tlog_store import LogStore

    key_path = out_dir / "keys" / "log.key"
    if key_path.exists():
        signer = NoteSigner.from_skey(key_path.read_text(encoding="ascii"))
    else:
        signer = generate_signer(DEMO_LOG_ORIGIN)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(signer.skey() + "\n")
        stream.write(f"created log key {key_path} (log {signer.name})\n")
    folder = out_dir / "tlog"
    if folder.exists():  # a fresh log for a fresh export: runs of earlier demos would be missing from it
        shutil.rmtree(folder)
    server = start_log_server(LogStore(folder, signer), Keyring.from_jwks(jwks_path), port=0, interval=0.2)
    return server, signer


def _log_route(stack: contextlib.ExitStack, log_url: str) -> LogRecordExporter:
    """A rotel instance forwarding manifests to the log (the log route), and an exporter to it."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    from run_identity.pipeline.tlog_route import start_tlog_route

    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="run-identity-tlog-route-"))
    route = stack.enter_context(start_tlog_route(log_url, workdir))
    return OTLPLogExporter(endpoint=f"{route.otlp_http_endpoint}/v1/logs", timeout=10)


def _stop_log(server: LogServer, runs: int, timeout: float = 30.0) -> None:
    """Wait until the log holds ``runs`` entries (rotel forwards them a little later), then stop it (it
    publishes a last checkpoint covering them)."""
    deadline = time.monotonic() + timeout
    while server.store.size < runs and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()


def run_demo(
    out: str | os.PathLike[str],
    *,
    collector: bool = False,
    tlog: bool = False,
    stream: TextIO,
    command: str = "run-identity",
) -> int:
    """Run the main job into ``out``; returns 0 when every run verified, 1 otherwise.

    ``command`` starts the follow-up command lines printed at the end (how the user runs ``run-identity``).
    ``tlog``: run a transparency log for the demo (``out/tlog``) and check every run against it.

    Raises KeyringError for unusable keys and run_identity.pipeline.collector.CollectorUnavailable when
    ``collector`` is asked for where rotel cannot run.
    """
    out_dir = Path(out)
    signer, jwks_path = _keys(out_dir, stream)
    export = out_dir / ("collected" if collector else "export")
    if export.exists():
        shutil.rmtree(export)
    export.mkdir(parents=True)
    log_server, log_signer = _start_log(out_dir, jwks_path, stream) if tlog else (None, None)
    runs: list[DemoRun] = []
    try:
        if collector:
            from run_identity.pipeline.collector import run_through_rotel

            with contextlib.ExitStack() as stack:
                to_log = _log_route(stack, log_server.url) if log_server is not None else None

                def through(span_exporter: SpanExporter, manifest_exporter: LogRecordExporter) -> int:
                    if to_log is not None:
                        from run_identity.pipeline.tlog_route import FanOutLogExporter

                        manifest_exporter = FanOutLogExporter([manifest_exporter, to_log])
                    made = _make_runs(signer, span_exporters=(span_exporter,), manifest_exporters=(manifest_exporter,))
                    runs.extend(made)
                    return len(runs)

                run_through_rotel(export, through)
            route = "app -> OTLP/HTTP -> rotel -> run-identity serve -> files"
            if log_server is not None:
                route += "; app -> rotel (log route) -> the log"
        else:
            extra: tuple[LogRecordExporter, ...] = ()
            if log_server is not None:
                from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

                extra = (OTLPLogExporter(endpoint=f"{log_server.url}/v1/logs", timeout=10),)
            runs = _make_runs(signer, directory=export, manifest_exporters=extra)
            route = "app -> embedded file export" + ("; app -> OTLP/HTTP -> the log" if extra else "")
    finally:
        if log_server is not None:
            _stop_log(log_server, len(runs))
    stream.write(f"made {len(runs)} runs ({route}); exported to {export}\n")
    _write_labels(export, runs)
    log = None
    if log_signer is not None:
        log = TransparencyLog(str(out_dir / "tlog"), LogTrust(log_signer.verifier))
        stream.write(f"transparency log {log.origin} in {out_dir / 'tlog'}: tree size {log.size}\n")
    stream.write(f"verifying with the trusted keys in {jwks_path} ...\n\n")
    report = Verifier(Keyring.from_jwks(jwks_path), Policy(), log=log).verify([export])
    _print_table(runs, report, stream)
    stream.write("\n")
    all_verified = report.passed and report.runs == len(runs) == report.counts["verified"]
    if all_verified:
        checked = " and logged" if log is not None else ""
        stream.write(f"PASS: all {len(runs)} runs verified{checked}.\n")
    else:
        stream.write(f"FAIL: {report.failed} of {report.runs} runs did not verify.\n")
    by_label = {r.label: r for r in runs}
    a, b = by_label.get("greeting"), by_label.get("greeting-hot")
    if a and b:
        where, keys = shlex.quote(str(export)), shlex.quote(str(jwks_path))
        tlog_args = ""
        if log is not None:
            folder = shlex.quote(str(out_dir / "tlog"))
            tlog_args = f" --tlog {folder} --tlog-key {shlex.quote(str(out_dir / 'tlog' / 'log.vkey'))}"
        stream.write(
            "\nNext: see why two runs differ, or look at one:\n"
            f"  {command} diff {a.trace_id}/{a.span_id} {b.trace_id}/{b.span_id} --in {where}\n"
            f"  {command} show {a.trace_id}/{a.span_id} --in {where} --keyring {keys}\n"
            f"  {command} verify {where} --keyring {keys}{tlog_args}\n"
        )
    return 0 if all_verified else 1
