"""Real exported data for the verifier's tests, and the tools to tamper with it and re-encode it.

Runs go through the real OpenTelemetry SDK, the identity span processor and the project's file export
(:func:`run_identity.pipeline.wiring.setup` with a directory), exactly as an application produces them:
``traces.jsonl`` and ``manifests.jsonl`` in OTLP/JSON lines. The re-encoders turn those lines into the
other encodings a collector writes (protobuf requests, the file exporter's length-prefixed ``proto`` format).
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from run_identity.core.canonical import canonicalize
from run_identity.core.keys import Ed25519Signer, Keyring
from run_identity.core.receipt import sign_receipt
from run_identity.otel.genai import start_genai_span
from run_identity.pipeline.wiring import setup
from run_identity.verify import Policy, VerificationReport, Verifier

SIGNER_SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
NFC_TEXT = "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, s'il vous pla\u00eet."


def signer(seed: bytes = SIGNER_SEED) -> Ed25519Signer:
    """A deterministic signer (never a secret: the seed is in this file)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(seed))


def _text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


_MODEL = {"provider": "openai", "name": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"}
_TOOL = {
    "type": "function",
    "name": "search_orders",
    "description": "Find a customer's orders.",
    "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
}
_TOOL_2 = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": None,
}


def compositions() -> list[tuple[str, dict[str, Any]]]:
    """(label, composition) pairs covering every component, as an application declares them."""
    instructions = [{"type": "text", "content": "You are the support assistant. Answer briefly."}]
    return [
        (
            "chat",
            {
                "model": _MODEL,
                "operation": "chat",
                "instructions": instructions,
                "messages": [_text("user", "Hi! Do you sell cargo bikes?")],
                "parameters": {"temperature": 0.3, "max_tokens": 200},
            },
        ),
        (
            "multi-turn",
            {
                "model": _MODEL,
                "operation": "chat",
                "instructions": instructions,
                "messages": [
                    _text("user", "My brakes squeak."),
                    _text("assistant", "Are they rim or disc brakes?"),
                    _text("user", "Disc, hydraulic."),
                ],
                "parameters": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 300, "seed": 7},
            },
        ),
        (
            "tools",
            {
                "model": _MODEL,
                "operation": "chat",
                "messages": [_text("user", "Where is my order TB-204518?")],
                "tools": [_TOOL, _TOOL_2],
                "parameters": {"temperature": 1.0, "stop_sequences": ["\n\n", "END"]},
            },
        ),
        (
            "rag",
            {
                "model": {"provider": "anthropic", "name": "claude-sonnet-4-5"},
                "operation": "chat",
                "instructions": instructions,
                "messages": [_text("user", "What is the warranty on frames?")],
                "context": [
                    {"id": "kb-101", "uri": "https://kb.example/warranty", "content": "Frames: 10 years."},
                    {"id": "kb-207", "content": "Parts: 2 years.", "score": 0.5},
                ],
                "parameters": {"max_tokens": 150},
                "extensions": {"anthropic_version": "2023-06-01", "metadata": {"user_id": "u-17"}},
            },
        ),
        (
            "nfc",
            {
                "model": _MODEL,
                "operation": "chat",
                "messages": [_text("user", NFC_TEXT)],
                "parameters": {"temperature": 0.5, "frequency_penalty": 0.25},
            },
        ),
    ]


@dataclass
class Run:
    """One exported run: its label, ids and identity."""

    label: str
    trace_id: str
    span_id: str
    identity: str


@dataclass
class Export:
    """What :func:`export_runs` wrote: the folder, its two files, the keyring file, and the runs."""

    directory: Path
    keyring_path: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def traces(self) -> Path:
        return self.directory / "traces.jsonl"

    @property
    def manifests(self) -> Path:
        return self.directory / "manifests.jsonl"

    def run(self, label: str) -> Run:
        (found,) = [r for r in self.runs if r.label == label]
        return found


def write_keyring(path: Path, *signers: Ed25519Signer) -> Path:
    """A JWKS file trusting the given signers' public keys."""
    path.write_text(json.dumps(Keyring(s.public_key for s in signers).to_jwks()), encoding="utf-8")
    return path


def export_runs(
    directory: Path,
    runs: Sequence[tuple[str, dict[str, Any]]] | None = None,
    *,
    signer_: Ed25519Signer | None = None,
    undeclared: int = 0,
    failing: int = 0,
    salt: bytes = b"",
) -> Export:
    """Run ``runs`` (default: :func:`compositions`) through the real SDK pipeline into ``directory``.

    ``undeclared`` GenAI spans are started without a declaration; ``failing`` ones declare a composition
    that cannot be identified (the processor marks them with ``run_identity.error``). ``salt`` is the
    deployment's blinding salt.
    """
    key = signer_ or signer()
    directory.mkdir(parents=True, exist_ok=True)
    out = Export(directory, write_keyring(directory.parent / f"{directory.name}.jwks.json", key))
    pipeline = setup(key, directory=directory, set_global=False, salt=salt)
    try:
        for label, composition in runs if runs is not None else compositions():
            with start_genai_span(composition, tracer_provider=pipeline.tracer_provider) as span:
                ctx = span.get_span_context()
                identity = str(span.attributes["run_identity.id"])  # type: ignore[index]
            out.runs.append(Run(label, f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", identity))
        tracer = pipeline.tracer_provider.get_tracer("verify-fixtures")
        for i in range(undeclared):
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": f"undeclared-{i}"}
            with tracer.start_as_current_span("chat undeclared", attributes=attrs):
                pass
        for _ in range(failing):
            bad = {
                "model": {"provider": "openai", "name": "gpt-4o"},
                "operation": "chat",
                "parameters": {"bogus": 1},
            }
            with start_genai_span(bad, tracer_provider=pipeline.tracer_provider):
                pass
    finally:
        pipeline.shutdown()
    return out


# --- reading and rewriting OTLP/JSON lines ---------------------------------------------------------------


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The export requests of an OTLP/JSON lines file."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_lines(path: Path, docs: Sequence[dict[str, Any]]) -> Path:
    """Write export requests as OTLP/JSON lines."""
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def spans_of(docs: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every span object of the trace requests, in order (mutable in place)."""
    for doc in docs:
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                yield from ss.get("spans", [])


def logs_of(docs: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every log record object of the logs requests, in order (mutable in place)."""
    for doc in docs:
        for rl in doc.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                yield from sl.get("logRecords", [])


def manifest_bodies(path: Path) -> list[str]:
    """The manifest JSON of every ``run_identity.manifest`` record of an OTLP/JSON lines logs file, in order
    (receipts and other records skipped)."""
    return [
        record["body"]["stringValue"]
        for record in logs_of(read_lines(path))
        if record.get("eventName") == "run_identity.manifest"
    ]


def attribute(obj: dict[str, Any], key: str) -> Any:
    """The plain value of an attribute of a span or log record (None when absent)."""
    for kv in obj.get("attributes", []):
        if kv["key"] == key:
            (value,) = kv["value"].values()
            return value
    return None


def set_attribute(obj: dict[str, Any], key: str, value: Any) -> None:
    """Set (or with ``value=None`` remove) a string, int, double, bool or string-list attribute."""
    items = [kv for kv in obj.get("attributes", []) if kv["key"] != key]
    if value is not None:
        if type(value) is bool:
            wrapped: dict[str, Any] = {"boolValue": value}
        elif type(value) is int:
            wrapped = {"intValue": str(value)}
        elif type(value) is float:
            wrapped = {"doubleValue": value}
        elif type(value) is list:
            wrapped = {"arrayValue": {"values": [{"stringValue": v} for v in value]}}
        else:
            wrapped = {"stringValue": value}
        items.append({"key": key, "value": wrapped})
    obj["attributes"] = items


def find(objs: Iterator[dict[str, Any]], span_id: str) -> dict[str, Any]:
    """The span or log record with this span id."""
    (found,) = [o for o in objs if o.get("spanId") == span_id]
    return found


def edit_manifest(record: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> None:
    """Parse a manifest record's body, let ``change`` mutate it, write it back (compact JSON)."""
    doc = orjson.loads(record["body"]["stringValue"])
    change(doc)
    record["body"]["stringValue"] = orjson.dumps(doc).decode()


# --- re-encoding -----------------------------------------------------------------------------------------

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_to_b64(node: Any) -> Any:
    if type(node) is dict:
        return {
            k: (base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_KEYS and type(v) is str else _hex_to_b64(v))
            for k, v in node.items()
        }
    if type(node) is list:
        return [_hex_to_b64(v) for v in node]
    return node


def to_proto(doc: dict[str, Any]) -> bytes:
    """One OTLP/JSON request as a serialized protobuf export request."""
    cls = ExportTraceServiceRequest if "resourceSpans" in doc else ExportLogsServiceRequest
    return json_format.ParseDict(_hex_to_b64(doc), cls()).SerializeToString()


def write_framed(path: Path, docs: Sequence[dict[str, Any]]) -> Path:
    """The otelcol file exporter's ``proto`` format: each request after its 4-byte big-endian length."""
    out = bytearray()
    for doc in docs:
        data = to_proto(doc)
        out += len(data).to_bytes(4, "big") + data
    path.write_bytes(bytes(out))
    return path


def rebatch(docs: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The same records regrouped into requests of ``size`` records each, as a collector's batcher does."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        signal, scope_key, items_key = (
            ("resourceSpans", "scopeSpans", "spans")
            if "resourceSpans" in doc
            else ("resourceLogs", "scopeLogs", "logRecords")
        )
        for resource in doc[signal]:
            for scope in resource.get(scope_key, []):
                for item in scope.get(items_key, []):
                    if not out or signal not in out[-1] or len(_items(out[-1])) >= size:
                        out.append(
                            {
                                signal: [
                                    {
                                        "resource": resource.get("resource", {}),
                                        scope_key: [{"scope": scope.get("scope", {}), items_key: []}],
                                    }
                                ]
                            }
                        )
                    out[-1][signal][0][scope_key][0][items_key].append(item)
    return out


def _items(doc: dict[str, Any]) -> list[Any]:
    for signal, scope_key, items_key in (
        ("resourceSpans", "scopeSpans", "spans"),
        ("resourceLogs", "scopeLogs", "logRecords"),
    ):
        if signal in doc:
            return list(doc[signal][0][scope_key][0][items_key])
    return []


# --- tampering -------------------------------------------------------------------------------------------


@dataclass
class Tamper:
    """A private copy of the export, loaded for editing; ``save`` writes it back."""

    directory: Path
    export: Export
    traces: list[dict[str, Any]]
    manifests: list[dict[str, Any]]
    other: Ed25519Signer = field(default_factory=lambda: signer(OTHER_SEED))
    keyring_signers: list[Ed25519Signer] = field(default_factory=lambda: [signer()])
    text_edits: list[tuple[str, str, str]] = field(default_factory=list)

    def edit_text(self, file: str, old: str, new: str) -> None:
        """Replace ``old`` by ``new`` in ``file``'s text once saved (for spellings no JSON writer makes)."""
        self.text_edits.append((file, old, new))

    def span(self, label: str) -> dict[str, Any]:
        return find(spans_of(self.traces), self.export.run(label).span_id)

    def record(self, label: str) -> dict[str, Any]:
        return find(logs_of(self.manifests), self.export.run(label).span_id)

    def manifest(self, label: str) -> dict[str, Any]:
        return dict(orjson.loads(self.record(label)["body"]["stringValue"]))

    def set_manifest(self, label: str, doc: dict[str, Any]) -> None:
        self.record(label)["body"]["stringValue"] = canonicalize(doc).decode()

    def body(self, label: str, change: Callable[[str], str]) -> None:
        record = self.record(label)
        before = record["body"]["stringValue"]
        record["body"]["stringValue"] = change(before)
        assert record["body"]["stringValue"] != before

    def add_receipt(self, label: str, **fields: Any) -> dict[str, Any]:
        """Append a receipt record for run ``label``, signed by the export's key (``fields`` override)."""
        run = self.export.run(label)
        key = fields.pop("signer", None) or signer()
        args: dict[str, Any] = {
            "identity": run.identity,
            "trace_id": run.trace_id,
            "span_id": run.span_id,
            "output": [{"role": "assistant", "parts": [{"type": "text", "content": "Hello."}]}],
            "finish_reasons": ["stop"],
            "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18",
            "completed_at": "2026-11-22T12:00:00.000000Z",
            **fields,
        }
        receipt = sign_receipt(key, **args)
        record = {
            "eventName": "run_identity.receipt",
            "traceId": run.trace_id,
            "spanId": run.span_id,
            "body": {"stringValue": receipt.to_json_bytes().decode()},
        }
        self.manifests.append({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
        return record

    def save(self) -> None:
        write_lines(self.directory / "traces.jsonl", self.traces)
        write_lines(self.directory / "manifests.jsonl", self.manifests)
        for file, old, new in self.text_edits:
            path = self.directory / file
            text = path.read_text(encoding="utf-8")
            assert old in text, old
            path.write_text(text.replace(old, new, 1), encoding="utf-8")


def tamper_copy(export: Export, target: Path) -> Tamper:
    """A copy of ``export`` in ``target``, loaded for editing."""
    shutil.copytree(export.directory, target)
    return Tamper(target, export, read_lines(target / "traces.jsonl"), read_lines(target / "manifests.jsonl"))


def verify_with(paths: list[Path], signers: list[Ed25519Signer], **options: Any) -> VerificationReport:
    """Verify ``paths`` trusting the given signers' keys, tolerating nothing."""
    keyring = Keyring(s.public_key for s in signers)
    return Verifier(keyring, Policy()).verify(paths, **options)


def codes_by_label(report: VerificationReport, export: Export) -> dict[str, str]:
    """Result code per run label; runs at ids that are not an exported run's are keyed ``+<n>``."""
    labels = {(r.trace_id, r.span_id): r.label for r in export.runs}
    out: dict[str, str] = {}
    for i, result in enumerate(report.results()):
        out[labels.get((result.trace_id, result.span_id), f"+{i}")] = result.code
    return out
