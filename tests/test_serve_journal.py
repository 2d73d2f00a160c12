"""serve --journal: one line per request when received and when durable, with the run span ids it carried."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import run_identity
from run_identity.core.keys import Ed25519Signer
from run_identity.pipeline.serve import start_server

COMPOSITION = {"model": {"provider": "openai", "name": "m"}, "operation": "chat", "messages": []}


def test_the_journal_names_each_request_and_its_runs_when_received_and_when_durable(
    signer: Ed25519Signer, tmp_path: Path
) -> None:
    journal = tmp_path / "serve.journal"
    with start_server(tmp_path / "out", journal=journal) as serve:
        identity = run_identity.setup(
            signer,
            span_exporters=[OTLPSpanExporter(endpoint=f"{serve.url}/v1/traces")],
            manifest_exporters=[OTLPLogExporter(endpoint=f"{serve.url}/v1/logs")],
            set_global=False,
        )
        span_ids = []
        for _ in range(3):
            with run_identity.start_genai_span(COMPOSITION, tracer_provider=identity.tracer_provider) as span:
                pass
            span_ids.append(f"{span.get_span_context().span_id:016x}")
        identity.shutdown()
    lines = [line.split("\t") for line in journal.read_text().splitlines()]
    assert all(len(parts) == 7 for parts in lines), lines
    for signal_name in ("traces", "logs"):
        stages = [parts[3] for parts in lines if parts[4] == signal_name]
        assert stages and stages.count("received") == stages.count("durable"), (signal_name, stages)
        seen = {sid for parts in lines if parts[4] == signal_name and parts[3] == "durable" for sid in parts[6].split(",")}
        assert seen == set(span_ids), signal_name
    # A request's durable line comes after its received line.
    order = {(parts[2], parts[3]): i for i, parts in enumerate(lines)}
    assert all(order[(ticket, "received")] < order[(ticket, "durable")] for ticket, stage in order if stage == "durable")
