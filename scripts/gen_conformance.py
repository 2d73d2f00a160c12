#!/usr/bin/env python3
"""Write the verification conformance cases of docs/spec.md §11.1 into conformance/verify/ (``--check``: exit 1
when the checked-in cases differ from what this script writes).

Every case starts from one deterministic export: the five runs of ``tests/verify_fixtures.compositions()``,
signed with ``sign_run`` under fixed trace ids, span ids and declaration times, and written as OTLP/JSON
lines in the shape the project's file export gives them (one traces line, one logs line). The cases are:

* ``tamper-*``: each tampering registered in ``tests/test_tamper.py`` (``CASES``), applied to that export;
* ``encoding-*``: benign re-encodings that must verify (``tests/test_verify_encodings.py``);
* ``verdict-*``: the edge cases of ``tests/test_verdicts.py`` (salts, policies, empty input, counts, broken
  files).

``expected.json`` is what the reference verifier (``run_identity.verify``) reports; the generator refuses to
write a case whose codes disagree with the hand-written expectation next to it (the tamper suite's expected
codes, or the ``want`` of the cases below), so a change of verdict shows up here as an error, not as a new
expected file. Ed25519 signatures are deterministic and every id and time is fixed, so the output is the
same on every run and every machine.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "conformance" / "verify"
sys.path.insert(0, str(ROOT / "tests"))

import test_tamper as tt  # noqa: E402
import verify_fixtures as vf  # noqa: E402
from conformance_content import captured_content  # noqa: E402
from gen_conformance_tlog import log_cases  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

import run_identity.core.statement as _statement  # noqa: E402
from run_identity.core.canonical import canonicalize  # noqa: E402
from run_identity.core.composition import LIST_COMPONENTS, Composition  # noqa: E402
from run_identity.core.digest import component_digest, element_digest, identity_digest, list_digest  # noqa: E402
from run_identity.core.keys import Ed25519Signer, Keyring  # noqa: E402
from run_identity.core.manifest import Manifest  # noqa: E402
from run_identity.core.signing import sign_run  # noqa: E402
from run_identity.otel.declare import Declaration  # noqa: E402
from run_identity.otel.genai import genai_span_attributes  # noqa: E402
from run_identity.verify import Policy, Verifier  # noqa: E402
from run_identity.verify.tlog import LogError, LogTrust, TransparencyLog  # noqa: E402

#: The instant every generated time is counted from (2026-11-22T12:00:00Z), in nanoseconds.
T0 = 1_795_348_800 * 10**9
SALT = bytes(range(32))
OTHER_SALT = bytes(range(1, 33))

_format_timestamp = _statement.format_timestamp


def _fixed_now(unix_ns: int | None = None) -> str:
    """A tampering that signs without a declaration time (sign_run's default is "now") gets a fixed one."""
    return _format_timestamp(T0 + 999_000_000 if unix_ns is None else unix_ns)


_statement.format_timestamp = _fixed_now


def _hex(label: str, kind: str, digits: int) -> str:
    return hashlib.sha256(f"conformance/{kind}/{label}".encode()).hexdigest()[:digits]


def _timestamp(ns: int) -> str:
    return _format_timestamp(ns)


# --- the deterministic export ---------------------------------------------------------------------------------

_RESOURCE = {"attributes": [{"key": "service.name", "value": {"stringValue": "conformance"}}]}
_SCOPE = {"name": "run_identity", "version": "conformance"}


def _span(trace_id: str, span_id: str, name: str, start: int, attributes: dict[str, Any]) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 750_000_000),
        "attributes": [],
        "status": {},
        "flags": 256,
    }
    for key, value in attributes.items():
        vf.set_attribute(span, key, list(value) if type(value) is tuple else value)
    return span


def _manifest_record(trace_id: str, span_id: str, start: int, body: str) -> dict[str, Any]:
    doc = orjson.loads(body)
    record: dict[str, Any] = {
        "timeUnixNano": str(start + 1_000_000),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": body},
        "attributes": [],
        "flags": 1,
        "traceId": trace_id,
        "spanId": span_id,
        "observedTimeUnixNano": str(start + 1_000_000),
        "eventName": "run_identity.manifest",
    }
    vf.set_attribute(record, "run_identity.id", doc["identity"])
    vf.set_attribute(record, "run_identity.key_id", doc["statement"]["key_id"])
    model = doc["components"].get("model", {}).get("value", {})
    if "name" in model:
        vf.set_attribute(record, "gen_ai.request.model", model["name"])
    if "provider" in model:
        vf.set_attribute(record, "gen_ai.provider.name", model["provider"])
    return record


def export(
    directory: Path,
    runs: list[tuple[str, dict[str, Any]]] | None = None,
    *,
    salt: bytes = b"",
    signers: dict[str, Ed25519Signer] | None = None,
    undeclared: int = 0,
    failing: int = 0,
) -> vf.Export:
    """Like ``vf.export_runs`` (same runs, same file layout, same attributes), with fixed ids and times.

    ``signers`` maps a run label to the key that signs it (default: ``vf.signer()``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    out = vf.Export(directory, directory.parent / f"{directory.name}.jwks.json")
    spans: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for i, (label, composition) in enumerate(runs if runs is not None else vf.compositions()):
        trace_id, span_id = _hex(label, "trace", 32), _hex(label, "span", 16)
        start = T0 + i * 10**9
        key = (signers or {}).get(label) or vf.signer()
        signed = sign_run(
            Composition.from_dict(composition),
            key,
            trace_id=trace_id,
            span_id=span_id,
            salt=salt,
            declared_at=_timestamp(start),
        )
        name, attributes = genai_span_attributes(Declaration(composition, targeted=True))
        spans.append(_span(trace_id, span_id, name, start, {**attributes, **signed.span_attributes()}))
        records.append(_manifest_record(trace_id, span_id, start, signed.manifest_json().decode()))
        out.runs.append(vf.Run(label, trace_id, span_id, signed.identity.id))
    for i in range(undeclared):
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": f"undeclared-{i}"}
        spans.append(_span(_hex(f"u{i}", "trace", 32), _hex(f"u{i}", "span", 16), "chat undeclared", T0, attrs))
    for i in range(failing):
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "run_identity.error": "CompositionError: parameters.bogus: unknown request parameter",
        }
        spans.append(_span(_hex(f"f{i}", "trace", 32), _hex(f"f{i}", "span", 16), "chat gpt-4o", T0, attrs))
    vf.write_lines(
        out.traces, [{"resourceSpans": [{"resource": _RESOURCE, "scopeSpans": [{"scope": _SCOPE, "spans": spans}]}]}]
    )
    vf.write_lines(
        out.manifests,
        [{"resourceLogs": [{"resource": _RESOURCE, "scopeLogs": [{"scope": _SCOPE, "logRecords": records}]}]}],
    )
    return out


# --- cases ----------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One verification case being written: its folder, the runs it names, its keys, salts and policy."""

    name: str
    description: str
    directory: Path
    export: vf.Export
    signers: list[Ed25519Signer] = field(default_factory=lambda: [vf.signer()])
    salts: list[bytes] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    #: run label -> expected code; "extra" for the runs at ids no exported run has; unnamed runs: verified
    want: dict[str, str] = field(default_factory=dict)
    #: code -> number of results without ids (unreadable records); None: counted among the "extra" runs
    want_unreadable: dict[str, int] | None = field(default_factory=dict)
    want_exit: int | None = None
    #: With a log (``tlog-*`` cases, scripts/gen_conformance_tlog.py): the trust the verifier is given.
    log_trust: LogTrust | None = None
    log_refused: bool = False

    @property
    def input(self) -> Path:
        return self.directory / "input"


def _policy(spec: dict[str, Any]) -> Policy:
    return Policy(
        allow=spec.get("allow", ()),
        require_content=spec.get("require_content", ()),
        allow_empty=spec.get("allow_empty", False),
        expect=spec.get("expect"),
        expect_min=spec.get("expect_min"),
        require_identity=spec.get("require_identity", False),
    )


def finish(case: Case) -> None:
    """Verify the case's input with the reference verifier, check the verdict against the case's ``want``,
    and write keyring, salts, policy and expected.json."""
    keyring = Keyring(s.public_key for s in case.signers)
    log = None
    if case.log_trust is not None:
        try:
            log = TransparencyLog(str(case.directory / "tlog"), case.log_trust)
        except LogError:
            case.log_refused = True  # spec §12 step 9: no run is judged
    report = Verifier(keyring, _policy(case.policy), salts=case.salts, log=log).verify([case.input])
    labels = {(r.trace_id, r.span_id): r.label for r in case.export.runs}
    runs: dict[str, dict[str, Any]] = {}
    unreadable: Counter[str] = Counter()
    got_by_label: dict[str, str] = {}
    extra: list[str] = []
    for result in [] if case.log_refused else report.results():
        if result.trace_id is None or result.span_id is None:
            unreadable[result.code] += 1
            continue
        key = f"{result.trace_id}/{result.span_id}"
        assert key not in runs, (case.name, key)
        runs[key] = {
            "code": result.code,
            "findings": sorted({f.code for f in result.findings}),
            "passed": result.passed,
        }
        label = labels.get((result.trace_id, result.span_id))
        if label is None:
            extra.append(result.code)
        else:
            got_by_label[label] = result.code
    want_labels = {
        r.label: case.want.get(r.label, "verified")
        for r in case.export.runs
        if r.label in got_by_label or r.label in case.want
    }
    problems = []
    if {k: got_by_label.get(k) for k in want_labels} != want_labels:
        problems.append(f"codes {got_by_label} != {want_labels}")
    if case.want_unreadable is None:  # the tamper suite counts unreadable records among its "extra" runs
        extra += unreadable.elements()
    elif dict(unreadable) != case.want_unreadable:
        problems.append(f"unreadable {dict(unreadable)} != {case.want_unreadable}")
    if sorted(extra) != sorted(case.want.get("extra", "").split()):
        problems.append(f"extra runs {extra} != {case.want.get('extra')}")
    exit_status = 0 if report.passed and not case.log_refused else 1
    if case.want_exit is not None and exit_status != case.want_exit:
        problems.append(f"exit {exit_status} != {case.want_exit}")
    if problems:
        raise SystemExit(f"{case.name}: the reference verifier disagrees with the case: {'; '.join(problems)}")

    case.directory.joinpath("keyring.jwks.json").write_text(
        json.dumps(keyring.to_jwks(), indent=2) + "\n", encoding="utf-8"
    )
    for i, salt in enumerate(case.salts):
        case.directory.joinpath("salt.hex" if i == 0 else f"salt-{i + 1}.hex").write_text(salt.hex() + "\n")
    if case.policy:
        case.directory.joinpath("policy.json").write_text(json.dumps(case.policy, indent=2) + "\n")
    expected = {
        "description": case.description,
        "runs": runs,
        "unreadable": dict(sorted(unreadable.items())),
        "finding_codes": sorted({c for r in runs.values() for c in r["findings"]} | set(unreadable)),
        "exit_status": exit_status,
        **({"log_refused": True} if case.log_refused else {}),
    }
    case.directory.joinpath("expected.json").write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")


#: Tamperings repeated in a protobuf encoding (``framed``: length-prefixed, ``raw``: a file per request).
PROTOBUF_TAMPERINGS = {
    "one byte of one message": "framed",
    "a temperature changed on the span": "raw",
    "manifests of two runs swapped": "framed",
    "the span signed by another key": "raw",
    "the trace id edited on the manifest record": "framed",
    "a span dropped": "raw",
    "an element withheld under a wrong digest": "framed",
    "an unknown member added to the manifest": "raw",
    "a manifest member repeated with another value (readers disagree on which holds)": "framed",
    "the span's identity attribute repeated with another value": "framed",
    "a receipt reporting another model than the declared one": "raw",
    "two receipts of one run naming different outputs": "framed",
    "a span delivered twice, one copy with temperature=true (the manifest says 1.0)": "raw",
    "a log record whose event_name and event.name attribute differ": "framed",
}
PROTOBUF_NAMES = {"framed": "length-prefixed proto", "raw": "raw protobuf requests"}


def _write_protobuf(directory: Path, t: vf.Tamper, encoding: str) -> None:
    """The tampered export's requests in a protobuf encoding."""
    directory.mkdir(parents=True)
    for name, docs in (("traces", t.traces), ("manifests", t.manifests)):
        if encoding == "framed":
            vf.write_framed(directory / f"{name}.bin", docs)
        else:
            for i, doc in enumerate(docs):
                (directory / f"{name}-{i}.pb").write_bytes(vf.to_proto(doc))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].rstrip("-")


Builder = Callable[[Case], None]


class Suite:
    """The cases, written into ``out`` from one pristine export (and a salted one)."""

    def __init__(self, out: Path, scratch: Path) -> None:
        self.out = out
        self.scratch = scratch
        self.pristine = export(scratch / "pristine")
        self.salted = export(scratch / "salted", vf.compositions()[:2], salt=SALT)
        self.names: set[str] = set()

    def case(self, name: str, description: str, source: vf.Export | None = None, **options: Any) -> Case:
        assert name not in self.names, name
        self.names.add(name)
        directory = self.out / name
        directory.mkdir(parents=True)
        return Case(name, description, directory, source or self.pristine, **options)

    def copy(self, case: Case) -> vf.Tamper:
        """The case's export copied into its input folder, loaded for editing."""
        return vf.tamper_copy(case.export, case.input)

    def tamperings(self) -> None:
        for number, (name, tamper, expected) in enumerate(tt.CASES, 1):
            case = self.case(
                f"tamper-{number:02d}-{_slug(name)}",
                f"tests/test_tamper.py: {name}",
                want=dict(expected),
                want_unreadable=None,
                want_exit=1,
            )
            t = self.copy(case)
            tamper(t)
            t.save()
            case.signers = list(t.keyring_signers)
            finish(case)
            encoding = PROTOBUF_TAMPERINGS.get(name)
            if encoding is not None:
                assert not t.text_edits, name  # a tampering of the JSON text has no protobuf form
                again = self.case(
                    f"tamper-proto-{number:02d}-{_slug(name)}",
                    f"tests/test_tamper.py: {name} ({PROTOBUF_NAMES[encoding]})",
                    want=dict(expected),
                    want_unreadable=None,
                    want_exit=1,
                    signers=list(t.keyring_signers),
                )
                _write_protobuf(again.input, t, encoding)
                finish(again)


# --- benign re-encodings: every run verifies ---------------------------------------------------------------


def _walk(node: Any, change: Callable[[str, Any], Any]) -> Any:
    """A copy of a JSON value with ``change(key, value)`` applied to every member value (bottom-up)."""
    if type(node) is dict:
        return {k: change(k, _walk(v, change)) for k, v in node.items()}
    if type(node) is list:
        return [_walk(v, change) for v in node]
    return node


def _reencode_manifest(body: str) -> str:
    """The same manifest value in another JSON spelling: keys reversed, indented, ASCII escapes, 1 as 1.0."""

    def reverse(node: Any) -> Any:
        if type(node) is dict:
            return {k: reverse(node[k]) for k in sorted(node, reverse=True)}
        if type(node) is list:
            return [reverse(v) for v in node]
        if type(node) is int:
            return float(node)
        return node

    return json.dumps(reverse(orjson.loads(body)), indent=2, ensure_ascii=True)


def _write_text_lines(path: Path, docs: list[dict[str, Any]], dump: Callable[[dict[str, Any]], str]) -> None:
    path.write_text("".join(dump(d) + "\n" for d in docs), encoding="utf-8")


def encodings(suite: Suite) -> None:
    def benign(name: str, description: str, build: Callable[[Case, vf.Tamper], None], **options: Any) -> None:
        case = suite.case(f"encoding-{name}", description, want_exit=0, **options)
        t = suite.copy(case)
        build(case, t)
        finish(case)

    def as_exported(case: Case, t: vf.Tamper) -> None:
        pass

    benign("otlp-json-as-exported", "the export as written: one OTLP/JSON line of spans, one of logs", as_exported)

    def protobuf(case: Case, t: vf.Tamper) -> None:
        for name in ("traces", "manifests"):
            (t.directory / f"{name}.jsonl").unlink()
            for i, doc in enumerate(vf.rebatch(getattr(t, name), 2)):
                (t.directory / f"{name}-{i}.pb").write_bytes(vf.to_proto(doc))

    benign("protobuf-requests", "every request a raw protobuf file (two records each)", protobuf)

    def framed(case: Case, t: vf.Tamper) -> None:
        (t.directory / "traces.jsonl").unlink()
        (t.directory / "manifests.jsonl").unlink()
        vf.write_framed(t.directory / "traces.bin", vf.rebatch(t.traces, 3))
        vf.write_framed(t.directory / "manifests.bin", vf.rebatch(t.manifests, 1))

    benign("proto-length-prefixed", "the file exporter's proto format: 4-byte big-endian length per request", framed)

    def mixed(case: Case, t: vf.Tamper) -> None:
        (t.directory / "traces.jsonl").unlink()
        (t.directory / "manifests.jsonl").unlink()
        vf.write_framed(t.directory / "spans.bin", t.traces)
        (t.directory / "logs.pb").write_bytes(vf.to_proto(t.manifests[0]))

    benign("mixed-encodings", "spans length-prefixed, manifests a raw protobuf request", mixed)

    for size in (1, 1000):

        def rebatched(case: Case, t: vf.Tamper, size: int = size) -> None:
            merged = vf.rebatch(t.traces + t.manifests, size)
            half = len(merged) // 2
            (t.directory / "traces.jsonl").unlink()
            (t.directory / "manifests.jsonl").unlink()
            vf.write_lines(t.directory / "part-1.jsonl", merged[:half])
            vf.write_lines(t.directory / "part-2.jsonl", merged[half:])

        what = "one record per request" if size == 1 else "one request per signal"
        benign(f"rebatched-{size}", f"records regrouped ({what}) across two files", rebatched)

    def duplicates(case: Case, t: vf.Tamper) -> None:
        vf.write_lines(t.directory / "retry.jsonl", t.manifests + t.traces)
        vf.write_framed(t.directory / "retry.bin", t.manifests)

    benign("duplicate-deliveries", "every span and manifest delivered two or three times, in two encodings", duplicates)

    def respelled(case: Case, t: vf.Tamper) -> None:
        for run in t.export.runs:
            t.body(run.label, _reencode_manifest)
        t.save()

    benign(
        "manifest-json-respelled",
        "manifest bodies with keys reversed, indentation, \\u escapes and integers written as 1.0",
        respelled,
    )

    def respelled_and_canonical(case: Case, t: vf.Tamper) -> None:
        shutil.copy(t.directory / "manifests.jsonl", t.directory / "original-manifests.jsonl")
        respelled(case, t)

    benign(
        "manifest-respelled-and-canonical-copies",
        "each manifest delivered canonical and respelled: one manifest, not a conflict",
        respelled_and_canonical,
    )

    def withheld(case: Case, t: vf.Tamper) -> None:
        for label, component, index in (
            ("multi-turn", "messages", 1),
            ("rag", "context", 0),
            ("chat", "parameters", None),
        ):
            manifest = Manifest.from_json(t.record(label)["body"]["stringValue"]).withhold(component, index)
            t.record(label)["body"]["stringValue"] = manifest.to_json_bytes().decode()
        t.save()

    benign("withheld-elements", "a message, a document and a whole parameters component withheld", withheld)

    def full_and_withheld(case: Case, t: vf.Tamper) -> None:
        shutil.copy(t.directory / "manifests.jsonl", t.directory / "full-manifests.jsonl")
        withheld(case, t)

    benign(
        "withheld-and-full-copies",
        "each manifest delivered in full and with parts withheld: one manifest, the fuller one checked",
        full_and_withheld,
    )

    def protobuf_mapping(case: Case, t: vf.Tamper) -> None:
        lines = []
        for docs, cls in ((t.traces, ExportTraceServiceRequest), (t.manifests, ExportLogsServiceRequest)):
            for doc in docs:
                message = cls.FromString(vf.to_proto(doc))
                lines.append(json_format.MessageToDict(message, preserving_proto_field_name=True))
        (t.directory / "traces.jsonl").unlink()
        (t.directory / "manifests.jsonl").unlink()
        vf.write_lines(t.directory / "mapped.jsonl", lines)

    benign(
        "protobuf-json-mapping",
        "OTLP/JSON written by protobuf's JSON mapping: base64 ids, snake_case field names, int64 as strings",
        protobuf_mapping,
    )

    def base64_ids(case: Case, t: vf.Tamper) -> None:
        t.traces = [vf._hex_to_b64(d) for d in t.traces]
        t.manifests = [vf._hex_to_b64(d) for d in t.manifests]
        t.save()

    benign("base64-ids", "trace and span ids in base64 (protobuf's JSON mapping of bytes), camelCase names", base64_ids)

    def uppercase_ids(case: Case, t: vf.Tamper) -> None:
        def upper(key: str, value: Any) -> Any:
            return value.upper() if key in ("traceId", "spanId") and type(value) is str else value

        t.traces = [_walk(d, upper) for d in t.traces]
        t.manifests = [_walk(d, upper) for d in t.manifests]
        t.save()

    benign("uppercase-hex-ids", "trace and span ids of the OTLP records in uppercase hex", uppercase_ids)

    def escapes(case: Case, t: vf.Tamper) -> None:
        def dump(doc: dict[str, Any]) -> str:
            return json.dumps(doc, ensure_ascii=True, separators=(" , ", " : ")).replace("/", "\\/") + " \t"

        for name in ("traces", "manifests"):
            _write_text_lines(t.directory / f"{name}.jsonl", getattr(t, name), dump)

    benign(
        "otlp-json-escapes-and-whitespace",
        "OTLP/JSON lines with \\u escapes for every non-ASCII character, \\/ for /, spaces around , and :",
        escapes,
    )

    def numbers(case: Case, t: vf.Tamper) -> None:
        def spell(key: str, value: Any) -> Any:
            if key == "intValue" and type(value) is str:
                return int(value)
            if key == "doubleValue" and type(value) is float and value.is_integer():
                return int(value)
            if key.endswith("UnixNano") and type(value) is str:
                return int(value)
            return value

        t.traces = [_walk(d, spell) for d in t.traces]
        t.manifests = [_walk(d, spell) for d in t.manifests]
        t.save()

    benign(
        "otlp-json-number-spelling",
        "int64 values as JSON numbers instead of strings, a double 1.0 written as 1",
        numbers,
    )

    def crlf(case: Case, t: vf.Tamper) -> None:
        for name in ("traces.jsonl", "manifests.jsonl"):
            path = t.directory / name
            path.write_bytes(b"\r\n" + path.read_bytes().replace(b"\n", b"\r\n\r\n"))

    benign("blank-lines-and-crlf", "CRLF line ends and blank lines between the OTLP/JSON lines", crlf)

    def receipt(case: Case, t: vf.Tamper) -> None:
        t.add_receipt("chat")
        t.add_receipt("tools", response_model="gpt-4o-mini")
        t.save()

    benign(
        "receipts",
        "valid receipts: one naming a dated snapshot of the requested model (a note), one the same model",
        receipt,
    )

    def numbers_by_value(case: Case, t: vf.Tamper) -> None:
        vf.set_attribute(t.span("chat"), "gen_ai.request.max_tokens", 200.0)
        vf.set_attribute(t.span("tools"), "gen_ai.request.temperature", 1)
        t.save()

    benign(
        "span-parameters-compared-by-value",
        "span parameters as another number type: max_tokens a double 200.0, temperature an int 1 (the manifest "
        "says 200 and 1.0)",
        numbers_by_value,
    )

    def event_name_attribute(case: Case, t: vf.Tamper) -> None:
        record = t.record("chat")
        del record["eventName"]
        record["attributes"].append({"key": "event.name", "value": {"stringValue": "run_identity.manifest"}})
        t.record("rag")["attributes"].append({"key": "event.name", "value": {"stringValue": "run_identity.manifest"}})
        t.save()

    benign(
        "event-name-attribute",
        "a manifest record named only by the event.name attribute (older SDKs), another by both, equal",
        event_name_attribute,
    )

    rotation = suite.case(
        "encoding-key-rotation",
        "runs signed by two keys, both in the keyring",
        export(suite.scratch / "rotation", signers={"rag": vf.signer(vf.OTHER_SEED), "nfc": vf.signer(vf.OTHER_SEED)}),
        signers=[vf.signer(), vf.signer(vf.OTHER_SEED)],
        want_exit=0,
    )
    suite.copy(rotation)
    finish(rotation)


# --- edge cases of the verdict: salts, policies, empty input, counts, broken files -----------------------------


def verdicts(suite: Suite) -> None:
    def verdict(
        name: str, description: str, build: Callable[[Case, vf.Tamper], None] | None = None, **options: Any
    ) -> None:
        case = suite.case(f"verdict-{name}", description, **options)
        t = suite.copy(case)
        if build is not None:
            build(case, t)
        finish(case)

    salted = suite.salted
    verdict(
        "salted-with-salt", "a salted export, the verifier given the salt", source=salted, salts=[SALT], want_exit=0
    )
    verdict(
        "salted-without-salt",
        "a salted export, the verifier not given the salt: content_unchecked, never verified",
        source=salted,
        want={"chat": "content_unchecked", "multi-turn": "content_unchecked"},
        want_exit=1,
    )
    verdict(
        "salted-without-salt-allowed",
        "content_unchecked tolerated by the policy: the runs pass, still not verified",
        source=salted,
        policy={"allow": ["content_unchecked"]},
        want={"chat": "content_unchecked", "multi-turn": "content_unchecked"},
        want_exit=0,
    )

    def swap_salt_id(case: Case, t: vf.Tamper) -> None:
        doc = t.manifest("chat")
        doc["salt_id"] = "sha256:" + hashlib.sha256(b"run-identity/v1/salt-id\x00" + OTHER_SALT).hexdigest()
        t.set_manifest("chat", doc)
        t.save()

    verdict(
        "salted-salt-id-swapped",
        "the manifest names another salt the verifier holds (not the signed one): identity_mismatch",
        swap_salt_id,
        source=salted,
        salts=[SALT, OTHER_SALT],
        want={"chat": "identity_mismatch"},
        want_exit=1,
    )
    verdict(
        "unsalted-given-a-salt",
        "an unsalted export, the verifier given a salt it does not need",
        salts=[SALT],
        want_exit=0,
    )

    def empty(case: Case, t: vf.Tamper) -> None:
        shutil.rmtree(t.directory)
        t.directory.mkdir()
        (t.directory / "empty.jsonl").write_bytes(b"")

    verdict("empty-input", "no run at all: a failure", empty, want_exit=1)
    verdict(
        "empty-input-allowed",
        "no run at all, the policy allows an empty input",
        empty,
        policy={"allow_empty": True},
        want_exit=0,
    )
    verdict("expect-exactly-5", "five runs, five expected", policy={"expect": 5}, want_exit=0)
    verdict(
        "expect-exactly-6",
        "five runs, six expected: every run verified, the verification fails",
        policy={"expect": 6},
        want_exit=1,
    )
    verdict("expect-at-least-3", "five runs, at least three expected", policy={"expect_min": 3}, want_exit=0)
    verdict("expect-at-least-9", "five runs, at least nine expected", policy={"expect_min": 9}, want_exit=1)

    def withhold_model_and_parameters(case: Case, t: vf.Tamper) -> None:
        doc = t.manifest("chat")
        for name in ("model", "parameters"):
            doc["components"][name] = {"digest": doc["components"][name]["digest"], "withheld": True}
        t.set_manifest("chat", doc)
        vf.set_attribute(t.span("chat"), "gen_ai.request.model", "gpt-5")
        vf.set_attribute(t.span("chat"), "gen_ai.request.temperature", 1.5)
        vf.set_attribute(t.record("chat"), "gen_ai.request.model", "gpt-5")
        t.save()

    verdict(
        "withheld-model-and-parameters",
        "model and parameters withheld, the span claiming others: the checks are not made, the run verifies",
        withhold_model_and_parameters,
        want_exit=0,
    )
    verdict(
        "withheld-model-and-parameters-required",
        "the same, the policy requiring model and parameters: content_withheld",
        withhold_model_and_parameters,
        policy={"require_content": ["model", "parameters"]},
        want={"chat": "content_withheld"},
        want_exit=1,
    )
    verdict(
        "require-content-revealed",
        "the policy requires every component the runs reveal",
        policy={"require_content": ["model", "operation", "messages", "parameters"]},
        want_exit=0,
    )

    def withheld_model_receipt(case: Case, t: vf.Tamper) -> None:
        doc = t.manifest("chat")
        doc["components"]["model"] = {"digest": doc["components"]["model"]["digest"], "withheld": True}
        t.set_manifest("chat", doc)
        vf.set_attribute(t.span("chat"), "gen_ai.request.model", "gpt-3.5-turbo")
        t.add_receipt("chat", request_model=None, response_model="gpt-3.5-turbo")
        t.save()

    verdict(
        "withheld-model-receipt-without-request-model",
        "model withheld, the span naming the served model, a receipt naming no requested model: the span's "
        "model is never taken as the requested one (the substitution check is not made)",
        withheld_model_receipt,
        want_exit=0,
    )
    verdict(
        "withheld-model-receipt-required",
        "the same, the policy requiring the model: content_withheld",
        withheld_model_receipt,
        policy={"require_content": ["model"]},
        want={"chat": "content_withheld"},
        want_exit=1,
    )

    def drop_span(case: Case, t: vf.Tamper) -> None:
        tt._span_dropped(t)
        t.save()

    verdict(
        "span-missing-allowed",
        "a span sampled out, the policy tolerating span_missing",
        drop_span,
        policy={"allow": ["span_missing"]},
        want={"tools": "span_missing"},
        want_exit=0,
    )

    def substituted(case: Case, t: vf.Tamper) -> None:
        t.add_receipt("chat", response_model="gpt-3.5-turbo")
        t.save()

    verdict(
        "model-substituted-allowed",
        "a receipt reporting another model, the policy tolerating model_substituted",
        substituted,
        policy={"allow": ["model_substituted"]},
        want={"chat": "model_substituted"},
        want_exit=0,
    )
    verdict(
        "undeclared-spans",
        "two chat spans without any run_identity attribute: never declared, so no run (§12 step 7); the five "
        "runs verify",
        source=export(suite.scratch / "undeclared", undeclared=2),
        want_exit=0,
    )
    verdict(
        "undeclared-spans-identity-required",
        "the same, the policy requiring an identity on every model call: each is unidentified",
        source=export(suite.scratch / "undeclared-required", undeclared=2),
        policy={"require_identity": True},
        want={"extra": "unidentified unidentified"},
        want_exit=1,
    )
    verdict(
        "undeclared-spans-allowed",
        "the same, the policy also tolerating unidentified",
        source=export(suite.scratch / "undeclared-allowed", undeclared=2),
        policy={"require_identity": True, "allow": ["unidentified"]},
        want={"extra": "unidentified unidentified"},
        want_exit=0,
    )
    verdict(
        "failed-declaration",
        "a GenAI span whose composition could not be identified (run_identity.error): unidentified",
        source=export(suite.scratch / "failing", failing=1),
        want={"extra": "unidentified"},
        want_exit=1,
    )

    def truncated(case: Case, t: vf.Tamper) -> None:
        t.manifests = vf.rebatch(t.manifests, 1)
        t.save()
        path = t.directory / "manifests.jsonl"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 300])

    verdict(
        "truncated-json-lines",
        "a manifests file cut inside its last line: that line is an unreadable record, the rest verifies",
        truncated,
        want={"nfc": "manifest_missing"},
        want_unreadable={"malformed": 1},
        want_exit=1,
    )

    def truncated_frame(case: Case, t: vf.Tamper) -> None:
        (t.directory / "manifests.jsonl").unlink()
        framed = vf.write_framed(t.directory / "manifests.bin", vf.rebatch(t.manifests, 2))
        framed.write_bytes(framed.read_bytes()[:-10])

    verdict(
        "truncated-proto-frame",
        "length-prefixed proto cut inside its last frame",
        truncated_frame,
        want={"nfc": "manifest_missing"},
        want_unreadable={"malformed": 1},
        want_exit=1,
    )

    def corrupt_protobuf(case: Case, t: vf.Tamper) -> None:
        (t.directory / "manifests.jsonl").unlink()
        raw = bytearray(vf.to_proto(t.manifests[0]))
        raw[1] ^= 0x7F
        (t.directory / "manifests.pb").write_bytes(bytes(raw))

    verdict(
        "corrupt-protobuf",
        "a raw protobuf request that does not parse: unreadable; every span lacks its manifest",
        corrupt_protobuf,
        want={r.label: "manifest_missing" for r in suite.pristine.runs},
        want_unreadable={"malformed": 1},
        want_exit=1,
    )

    def garbage(case: Case, t: vf.Tamper) -> None:
        (t.directory / "garbage.jsonl").write_bytes(b"{\n" * 3 + b'{"resourceSpans":\n' + b"[1,2]\n")

    verdict(
        "garbage-lines",
        "a file of five unreadable lines next to the export: five unreadable records, the runs verify",
        garbage,
        want_unreadable={"malformed": 5},
        want_exit=1,
    )

    def seed_as_string(case: Case, t: vf.Tamper) -> None:
        vf.set_attribute(t.span("multi-turn"), "gen_ai.request.seed", "7")
        t.save()

    verdict(
        "span-parameter-as-string",
        "the span's seed attribute the string '7' (the manifest says 7): numbers compare only with numbers",
        seed_as_string,
        want={"multi-turn": "telemetry_mismatch"},
        want_exit=1,
    )

    def int_value_not_integer(case: Case, t: vf.Tamper) -> None:
        for kv in t.span("chat")["attributes"]:
            if kv["key"] == "gen_ai.request.max_tokens":
                kv["value"] = {"intValue": "200.0"}
        t.save()

    verdict(
        "span-int-value-not-an-integer",
        "an OTLP/JSON intValue '200.0' on the span: the record cannot be decoded",
        int_value_not_integer,
        want={"chat": "malformed"},
        want_exit=1,
    )

    def statement_ids_uppercase(case: Case, t: vf.Tamper) -> None:
        doc = t.manifest("chat")
        doc["statement"]["trace_id"] = doc["statement"]["trace_id"].upper()
        t.set_manifest("chat", doc)
        t.save()

    verdict(
        "statement-trace-id-uppercase",
        "the manifest statement's trace id in uppercase hex: the statement is malformed (§8: lowercase), though "
        "OTLP record ids may be given in either case",
        statement_ids_uppercase,
        want={"chat": "malformed"},
        want_exit=1,
    )


# --- the decisions of spec 1.1: one case each ----------------------------------------------------------------


def _resign(t: vf.Tamper, label: str, composition: dict[str, Any], *, spelled: dict[str, str] | None = None) -> None:
    """Replace run ``label``'s manifest by one of ``composition``, digested and signed as §4-§8 say but never
    validated (a producer would refuse some of these), and put the new statement on its span and record."""
    run = t.export.run(label)
    old = t.manifest(label)
    key = vf.signer()
    components: dict[str, Any] = {}
    digests: dict[str, str] = {}
    for name, value in composition.items():
        if name in LIST_COMPONENTS:
            elements = [element_digest(name, canonicalize(v)) for v in value]
            digests[name] = list_digest(name, elements)
            components[name] = {
                "digest": digests[name],
                "elements": [{"digest": d, "value": v} for d, v in zip(elements, value, strict=True)],
            }
        else:
            digests[name] = component_digest(name, canonicalize(value))
            components[name] = {"digest": digests[name], "value": value}
    identity = identity_digest(digests)
    statement = _statement.run_statement(
        identity,
        trace_id=run.trace_id,
        span_id=run.span_id,
        key_id=key.key_id,
        declared_at=old["statement"]["declared_at"],
    )
    signature = key.sign(statement.signing_input())
    doc = {
        "spec_version": "1",
        "identity": identity,
        "components": components,
        "statement": statement.to_json(),
        "signature": _statement.encode_signature(signature),
    }
    t.set_manifest(label, doc)
    vf.set_attribute(t.record(label), "run_identity.id", identity)
    for attr, value in statement.span_attributes(signature).items():
        vf.set_attribute(t.span(label), attr, value)


def _chat(**changes: Any) -> dict[str, Any]:
    """The "chat" run's composition with ``changes`` (a member set to None is removed)."""
    composition = dict(vf.compositions()[0][1])
    for name, value in changes.items():
        if value is None:
            composition.pop(name, None)
        else:
            composition[name] = value
    return composition


def decisions(suite: Suite) -> None:
    """One case per decision of spec 1.1 (docs/spec.md "Changes"), named ``decision-*``."""

    def decision(name: str, description: str, build: Callable[[vf.Tamper], None], **options: Any) -> None:
        options.setdefault("want_exit", 1 if options.get("want") else 0)
        encoding = options.pop("encoding", None)
        case = suite.case(f"decision-{name}", description, **options)
        t = suite.copy(case)
        build(t)
        t.save()
        if encoding is not None:  # the same export in a protobuf encoding
            shutil.rmtree(case.input)
            _write_protobuf(case.input, t, encoding)
        finish(case)

    # Signature encoding: the same code on either carrier (§12 steps 2 and 3).
    def manifest_signature(value: Any) -> Callable[[vf.Tamper], None]:
        def build(t: vf.Tamper) -> None:
            doc = t.manifest("chat")
            if value is None:
                del doc["signature"]
            else:
                doc["signature"] = value(doc["signature"]) if callable(value) else value
            t.set_manifest("chat", doc)

        return build

    decision(
        "manifest-signature-missing",
        "the manifest has no signature member: bad_signature (as a span without one), not malformed",
        manifest_signature(None),
        want={"chat": "bad_signature"},
    )
    decision(
        "manifest-signature-unpadded",
        "the manifest's signature without its '==' padding (not the canonical base64 of 64 bytes): bad_signature",
        manifest_signature(lambda sig: sig.rstrip("=")),
        want={"chat": "bad_signature"},
    )
    decision(
        "manifest-signature-not-a-string",
        "the manifest's signature is a number: bad_signature",
        manifest_signature(64),
        want={"chat": "bad_signature"},
    )

    def span_signature_unpadded(t: vf.Tamper) -> None:
        span = t.span("chat")
        vf.set_attribute(span, "run_identity.signature", vf.attribute(span, "run_identity.signature").rstrip("="))

    decision(
        "span-signature-unpadded",
        "the span's signature without its padding: bad_signature, the code the manifest gets for the same",
        span_signature_unpadded,
        want={"chat": "bad_signature"},
    )

    # A span without run_identity.id whose ids a manifest names (§12 step 5, step 7).
    def stripped(error: str | None) -> Callable[[vf.Tamper], None]:
        def build(t: vf.Tamper) -> None:
            span = t.span("chat")
            for kv in list(span["attributes"]):
                if kv["key"].startswith("run_identity."):
                    vf.set_attribute(span, kv["key"], None)
            if error is not None:
                vf.set_attribute(span, "run_identity.error", error)

        return build

    decision(
        "span-without-identity-named-by-a-manifest",
        "the chat span carries no run_identity attribute, its manifest names it: binding_mismatch only (it was "
        "not declared as far as the span says, so it is not unidentified)",
        stripped(None),
        want={"chat": "binding_mismatch"},
    )
    decision(
        "span-lost-identity-named-by-a-manifest",
        "the chat span carries run_identity.error instead of its identity, its manifest names it: "
        "binding_mismatch (step 5), with unidentified (step 7) among its findings",
        stripped("SigningError: the signer timed out"),
        want={"chat": "binding_mismatch"},
    )

    # The manifest record's own attributes (§9.2, §12 steps 5 and 6).
    def record_attribute(attr: str, value: Any) -> Callable[[vf.Tamper], None]:
        def build(t: vf.Tamper) -> None:
            record = t.record("chat")
            if type(value) is int:
                vf.set_attribute(record, attr, None)
                record["attributes"].append({"key": attr, "value": {"intValue": str(value)}})
            else:
                vf.set_attribute(record, attr, value)

        return build

    decision(
        "record-key-id-not-a-string",
        "the manifest record's run_identity.key_id attribute is an integer: binding_mismatch",
        record_attribute("run_identity.key_id", 7),
        want={"chat": "binding_mismatch"},
    )
    decision(
        "record-provider-differs",
        "the manifest record's gen_ai.provider.name differs from model.provider: telemetry_mismatch",
        record_attribute("gen_ai.provider.name", "anthropic"),
        want={"chat": "telemetry_mismatch"},
    )
    decision(
        "record-attributes-absent",
        "the manifest record carries none of its four attributes: they are optional, the run verifies",
        lambda t: [
            vf.set_attribute(t.record("chat"), a, None)
            for a in ("run_identity.id", "run_identity.key_id", "gen_ai.request.model", "gen_ai.provider.name")
        ],
    )

    # Composition rules at verification time (§12 step 1 on revealed content).
    chat_messages = _chat()["messages"]
    for name, description, composition, want in [
        ("without-operation", "a signed manifest without the required operation", _chat(operation=None), "malformed"),
        ("without-model", "a signed manifest without the required model", _chat(model=None), "malformed"),
        (
            "credential-in-extensions",
            "a signed manifest whose extensions hold api_key",
            _chat(extensions={"api_key": "sk-not-a-key"}),
            "malformed",
        ),
        (
            "credential-prefixed-x-goog",
            "a signed manifest whose extensions hold x_goog_api_key (prefixes x- then goog-, - or _)",
            _chat(extensions={"request": {"X_Goog_Api_Key": "k"}}),
            "malformed",
        ),
        (
            "credential-prefixes-reversed",
            "a signed manifest whose extensions hold goog-x-api-key: not a credential name (prefix order is "
            "x- then goog-), the run verifies",
            _chat(extensions={"goog-x-api-key": "v"}),
            "verified",
        ),
        (
            "parameter-of-wrong-type",
            "a signed manifest whose temperature is a string",
            _chat(parameters={"temperature": "0.3", "max_tokens": 200}),
            "malformed",
        ),
        (
            "integer-with-a-fraction",
            "a signed manifest whose max_tokens is 200.5: not an integer",
            _chat(parameters={"temperature": 0.3, "max_tokens": 200.5}),
            "malformed",
        ),
        (
            "unknown-parameter",
            "a signed manifest with a parameter outside §2.4",
            _chat(parameters={"temperature": 0.3, "max_tokens": 200, "logit_bias": {}}),
            "malformed",
        ),
        (
            "blob-not-canonical-base64",
            "a signed manifest whose blob part's content lacks its padding",
            _chat(
                messages=[{"role": "user", "parts": [{"type": "blob", "modality": "image", "content": "iVBORw0KGgo"}]}]
            ),
            "malformed",
        ),
        (
            "endpoint-with-user-info",
            "a signed manifest whose model.endpoint carries user information",
            _chat(model={**vf.compositions()[0][1]["model"], "endpoint": "https://u:p@api.openai.com/v1"}),
            "malformed",
        ),
        (
            "endpoint-not-a-url",
            "a signed manifest whose model.endpoint is no URL at all: it need not parse, the run verifies",
            _chat(model={**vf.compositions()[0][1]["model"], "endpoint": "http://[::1 gateway"}),
            "verified",
        ),
        (
            "unknown-part-type-free-members",
            "a part of an unknown type whose id and mime_type are numbers: only 'type' is required of it, the "
            "run verifies",
            _chat(messages=[{"role": "user", "parts": [{"type": "audio_ref", "id": 5, "mime_type": 1}]}]),
            "verified",
        ),
        (
            "known-part-type-id-not-a-string",
            "a text part whose id is a number: malformed",
            _chat(messages=[{"role": "user", "parts": [{"type": "text", "content": "hi", "id": 5}]}]),
            "malformed",
        ),
    ]:

        def build(t: vf.Tamper, composition: dict[str, Any] = composition) -> None:
            _resign(t, "chat", composition)

        decision(
            f"composition-{name}",
            f"{description}: {want} (§12 step 1 applies §2 to revealed content)",
            build,
            want={} if want == "verified" else {"chat": want},
        )
    assert chat_messages  # the loop's compositions do not share the fixture's lists

    def withheld_credential(t: vf.Tamper) -> None:
        _resign(t, "chat", _chat(extensions={"api_key": "sk-not-a-key"}))
        doc = t.manifest("chat")
        doc["components"]["extensions"] = {"digest": doc["components"]["extensions"]["digest"], "withheld": True}
        t.set_manifest("chat", doc)

    decision(
        "composition-withheld-part-not-checked",
        "the same credential, its component withheld: withheld parts are digests, not checked; the run verifies",
        withheld_credential,
    )

    def integer_spelled_with_a_fraction(t: vf.Tamper) -> None:
        t.edit_text("manifests.jsonl", '\\"max_tokens\\":200', '\\"max_tokens\\":200.0')

    decision(
        "integer-spelled-with-a-fraction",
        "the manifest spells max_tokens 200 as 200.0: an integer by value (§2.4), the run verifies",
        integer_spelled_with_a_fraction,
    )

    # Copies (§12 step 5): what makes two copies the same, and every distinct copy is checked.
    def span_copy_other_attributes(t: vf.Tamper) -> None:
        copy = orjson.loads(orjson.dumps(t.span("chat")))
        copy["endTimeUnixNano"] = str(int(copy["endTimeUnixNano"]) + 1)
        vf.set_attribute(copy, "http.route", "/v1/chat/completions")
        t.traces[0]["resourceSpans"][0]["scopeSpans"][0]["spans"].append(copy)

    decision(
        "span-copy-differing-in-other-attributes",
        "a second copy of the chat span with another end time and an attribute outside run_identity.* and the "
        "checked gen_ai.*: the same span, the run verifies",
        span_copy_other_attributes,
    )

    def manifest_copy(change: Callable[[dict[str, Any]], None]) -> Callable[[vf.Tamper], None]:
        def build(t: vf.Tamper) -> None:
            copy = orjson.loads(orjson.dumps(t.record("chat")))
            change(copy)
            t.manifests[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append(copy)

        return build

    def without_telemetry_attributes(record: dict[str, Any]) -> None:
        vf.set_attribute(record, "gen_ai.request.model", None)
        vf.set_attribute(record, "gen_ai.provider.name", None)

    def garbled_signature(record: dict[str, Any]) -> None:
        doc = orjson.loads(record["body"]["stringValue"])
        doc["signature"] = doc["signature"].rstrip("=")
        record["body"]["stringValue"] = canonicalize(doc).decode()

    decision(
        "manifest-copy-without-record-attributes",
        "a second copy of the chat manifest whose record lacks its gen_ai attributes: one signed claim, the run "
        "verifies",
        manifest_copy(without_telemetry_attributes),
    )
    decision(
        "manifest-copy-with-a-bad-signature",
        "a second copy of the chat manifest whose signature lost its padding: every distinct copy is checked, "
        "bad_signature",
        manifest_copy(garbled_signature),
        want={"chat": "bad_signature"},
    )

    # Which ids join (§12 step 5).
    def record_without_ids(t: vf.Tamper) -> None:
        record = t.record("chat")
        del record["traceId"], record["spanId"]

    decision(
        "record-without-ids",
        "the manifest record carries no trace or span id: joined by its statement's ids, binding_mismatch",
        record_without_ids,
        want={"chat": "binding_mismatch"},
    )

    # Codes when several steps fail (§12): every finding counts for the policy.
    def span_dropped_record_model(t: vf.Tamper) -> None:
        tt._span_dropped(t)
        vf.set_attribute(t.record("tools"), "gen_ai.request.model", "gpt-5")

    decision(
        "several-findings-policy",
        "a span dropped and its manifest record's model edited: code span_missing (step 5), telemetry_mismatch "
        "(step 6) also found; the policy tolerates span_missing only, so the run fails",
        span_dropped_record_model,
        policy={"allow": ["span_missing"]},
        want={"tools": "span_missing"},
    )

    # event.name as an attribute, equal to event_name (§12 step 1).
    def event_name_both(t: vf.Tamper) -> None:
        vf.set_attribute(t.record("chat"), "event.name", "run_identity.manifest")

    decision(
        "event-name-both-equal",
        "a manifest record naming its event both in event_name and in an equal event.name attribute: verified",
        event_name_both,
    )

    # Step 7: which spans need an identity.
    def agent_spans(t: vf.Tamper) -> None:
        base = t.span("chat")
        spans = t.traces[0]["resourceSpans"][0]["scopeSpans"][0]["spans"]
        for i, operation in enumerate(("invoke_agent", "execute_tool", "create_agent", "chat")):
            span = _span(base["traceId"], _hex(f"agent-{i}", "span", 16), operation, T0, {})
            vf.set_attribute(span, "gen_ai.operation.name", operation)
            vf.set_attribute(span, "gen_ai.provider.name", "openai")
            spans.append(span)

    decision(
        "agent-and-nested-spans",
        "invoke_agent, execute_tool and create_agent spans and a second chat span, none declared: no run, the "
        "five runs verify",
        agent_spans,
    )
    decision(
        "agent-and-nested-spans-identity-required",
        "the same, the policy requiring an identity on every model call: only the chat span is unidentified",
        agent_spans,
        policy={"require_identity": True},
        want={"extra": "unidentified"},
    )

    def agent_span_lost(t: vf.Tamper) -> None:
        spans = t.traces[0]["resourceSpans"][0]["scopeSpans"][0]["spans"]
        span = _span(t.span("chat")["traceId"], _hex("agent-lost", "span", 16), "invoke_agent", T0, {})
        vf.set_attribute(span, "gen_ai.operation.name", "invoke_agent")
        vf.set_attribute(span, "run_identity.error", "CompositionError: model: missing required field 'name'")
        spans.append(span)

    decision(
        "lost-identity-any-operation",
        "an invoke_agent span carrying run_identity.error: a declaration lost its identity, unidentified",
        agent_span_lost,
        want={"extra": "unidentified"},
    )

    # OTLP encodings.
    def int_value(value: Any) -> Callable[[vf.Tamper], None]:
        def build(t: vf.Tamper) -> None:
            for kv in t.span("chat")["attributes"]:
                if kv["key"] == "gen_ai.request.max_tokens":
                    kv["value"] = {"intValue": value}

        return build

    decision(
        "int-value-json-number-with-fraction",
        "the span's intValue given as the JSON number 200.0: read by value, the run verifies",
        int_value(200.0),
    )
    decision(
        "int-value-json-number",
        "the span's intValue given as the JSON number 200: the run verifies",
        int_value(200),
    )
    decision(
        "int-value-string-with-sign",
        "the span's intValue given as the string '+200': not an optional '-' and digits, malformed",
        int_value("+200"),
        want={"chat": "malformed"},
    )

    def lowercase_and_uppercase(t: vf.Tamper) -> None:
        span = t.span("chat")
        span["traceId"] = span["traceId"][:16].upper() + span["traceId"][16:]

    decision(
        "hex-id-mixed-case",
        "a span's trace id in mixed-case hex: ids are hex in either case, the run verifies",
        lowercase_and_uppercase,
    )

    # declared_at must be a real time (§8).
    def impossible_date(t: vf.Tamper) -> None:
        vf.set_attribute(t.span("chat"), "run_identity.declared_at", "2026-02-30T12:00:00.000000Z")

    decision(
        "declared-at-not-a-calendar-date",
        "the span's declared_at names 30 February: malformed",
        impossible_date,
        want={"chat": "malformed"},
    )

    def leap_second(t: vf.Tamper) -> None:
        doc = t.manifest("chat")
        doc["statement"]["declared_at"] = "2026-12-31T23:59:60.000000Z"
        t.set_manifest("chat", doc)

    decision(
        "declared-at-leap-second",
        "the manifest statement's declared_at names second 60: not a time this format allows, malformed",
        leap_second,
        want={"chat": "malformed"},
    )

    def receipt_impossible_time(t: vf.Tamper) -> None:
        record = t.add_receipt("chat")
        doc = orjson.loads(record["body"]["stringValue"])
        doc["receipt"]["completed_at"] = "2026-11-22T24:00:00.000000Z"
        record["body"]["stringValue"] = canonicalize(doc).decode()

    decision(
        "receipt-completed-at-not-a-calendar-time",
        "a receipt whose completed_at names hour 24: malformed, like a statement's declared_at",
        receipt_impossible_time,
        want={"chat": "malformed"},
    )

    # Receipts (§10.4, §12 step 8).
    decision(
        "receipt-signed-by-another-trusted-key",
        "a receipt signed by a trusted key other than the run's: any trusted key may sign a receipt, verified",
        lambda t: t.add_receipt("chat", signer=t.other),
        signers=[vf.signer(), vf.signer(vf.OTHER_SEED)],
    )
    for name, response, want in [
        ("dated-snapshot-not-a-calendar-date", "gpt-4o-mini-2024-13-45", "verified"),
        ("four-digit-snapshot", "gpt-4o-mini-0125", "verified"),
        ("compact-date-snapshot", "gpt-4o-mini-20240718", "verified"),
        ("non-numeric-suffix", "gpt-4o-mini-v2", "model_substituted"),
        ("uppercase-model", "GPT-4O-MINI", "model_substituted"),
    ]:

        def receipt(t: vf.Tamper, response: str = response) -> None:
            t.add_receipt("chat", response_model=response)

        decision(
            f"receipt-{name}",
            f"a receipt reporting {response!r} for the requested 'gpt-4o-mini': {want} (the suffixes of §10.4, "
            "digits only, no calendar check, names compared exactly)",
            receipt,
            want={} if want == "verified" else {"chat": want},
        )

    captured_content(decision, _resign)  # §12 step 6, captured content: scripts/conformance_content.py


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def generate(out: Path) -> int:
    """Write every case into ``out`` (which must not exist); returns the number of cases."""
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        suite = Suite(out, Path(scratch))
        suite.tamperings()
        encodings(suite)
        verdicts(suite)
        decisions(suite)
        log_cases(suite, finish)
    return len(suite.names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when conformance/verify differs")
    args = parser.parse_args(argv)
    if not args.check:
        if OUT.exists():
            shutil.rmtree(OUT)
        count = generate(OUT)
        print(f"wrote {count} cases into {OUT.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "verify"
        count = generate(fresh)
        want = {p.relative_to(fresh): p for p in _files(fresh)}
        have = {p.relative_to(OUT): p for p in _files(OUT)} if OUT.exists() else {}
        differ = sorted(
            str(rel)
            for rel in want.keys() | have.keys()
            if rel not in want or rel not in have or not filecmp.cmp(want[rel], have[rel], shallow=False)
        )
    if differ:
        print(f"conformance/verify differs from what scripts/gen_conformance.py writes ({len(differ)} files):")
        for rel in differ[:20]:
            print(f"  {rel}")
        print("run: python3 scripts/gen_conformance.py")
        return 1
    print(f"conformance/verify is up to date ({count} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
