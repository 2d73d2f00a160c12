"""Run receipts: the format (sign, JSON, verify, negative cases) and the verifier's receipt checks (step 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import DECLARED_AT, SPAN_ID, TRACE_ID, keyring, signer

from run_identity import Composition, Keyring, sign_run
from run_identity.core.attributes import RECEIPT_EVENT_NAME
from run_identity.core.errors import ManifestError, VerificationError
from run_identity.core.receipt import (
    RECEIPT_PAYLOAD_TYPE,
    Receipt,
    attach_receipt,
    model_resolution,
    output_digest,
    receipt_of,
    sign_receipt,
    verify_receipt,
)
from run_identity.verify import Policy, Verifier

OUTPUT = [{"role": "assistant", "parts": [{"type": "text", "content": "Lisbon."}], "finish_reason": "stop"}]
COMPOSITION = {"model": {"provider": "openai", "name": "gpt-4o-mini"}, "operation": "chat"}


def make_receipt(**overrides: Any) -> Receipt:
    """A receipt of OUTPUT under the published TEST 1 key for the fixed span."""
    options: dict[str, Any] = {
        "identity": "sha256:" + "ab" * 32,
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "output": OUTPUT,
        "finish_reasons": ["stop"],
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "response_id": "chatcmpl-1",
        "system_fingerprint": "fp_1",
        "completed_at": DECLARED_AT,
        **overrides,
    }
    return sign_receipt(signer(), **options)


def test_receipt_signs_the_dsse_pae_of_its_canonical_statement() -> None:
    """The signature covers PAE(receipt payload type, JCS(statement)) and verifies with the public key."""
    receipt = make_receipt()
    body = receipt.statement.canonical()
    assert receipt.statement.signing_input() == b"DSSEv1 %d %s %d %s" % (
        len(RECEIPT_PAYLOAD_TYPE),
        RECEIPT_PAYLOAD_TYPE.encode(),
        len(body),
        body,
    )
    assert keyring().verify(receipt.statement.key_id, receipt.signature, receipt.statement.signing_input())
    assert receipt.statement.output_digest == output_digest(OUTPUT)
    verify_receipt(receipt, keyring())


def test_receipt_json_round_trips_with_and_without_its_output() -> None:
    """to_json/from_json keep the statement and signature; the output travels when asked."""
    receipt = make_receipt()
    assert Receipt.from_json(receipt.to_json_bytes()) == receipt
    assert Receipt.from_json(receipt.to_json_bytes()).output == OUTPUT
    assert "output" not in receipt.to_json(with_output=False)
    bare = Receipt.from_json(json.dumps(receipt.to_json(with_output=False)))
    verify_receipt(bare, keyring(), output=OUTPUT)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"output": [{**OUTPUT[0], "parts": [{"type": "text", "content": "Porto."}]}]}, "identity_mismatch"),
        ({"keyring": "other"}, "unknown_key"),
        ({"signature": bytes(64)}, "bad_signature"),
        ({"statement_identity": "sha256:" + "cd" * 32}, "binding_mismatch"),
    ],
)
def test_verify_receipt_rejects_tampering(change: dict[str, Any], code: str) -> None:
    """Another output, an untrusted key, a zero signature or another run each raise with their code."""
    from core_fixtures import TEST2_SEED

    receipt = make_receipt()
    ring: Keyring = keyring(TEST2_SEED) if change.get("keyring") else keyring()
    if "signature" in change:
        receipt = Receipt(receipt.statement, change["signature"], receipt.output)
    statement = None
    if "statement_identity" in change:
        run = sign_run(Composition.from_dict(COMPOSITION), signer(), trace_id=TRACE_ID, span_id=SPAN_ID)
        statement = run.statement
    with pytest.raises(VerificationError) as info:
        verify_receipt(receipt, ring, output=change.get("output"), statement=statement)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"receipt": {}, "signature": "x"}, "receipt"),
        ({"receipt": None}, "receipt"),
        ({"receipt": {}, "surprise": 1}, "surprise"),
    ],
)
def test_malformed_receipts_are_rejected_with_a_path(doc: dict[str, Any], path: str) -> None:
    """Missing members and unknown fields raise ManifestError naming where."""
    with pytest.raises(ManifestError) as info:
        Receipt.from_json(doc)
    assert info.value.path == path


def test_unknown_member_in_a_statement_is_rejected() -> None:
    """A receipt statement with a member the spec does not list is malformed."""
    doc = make_receipt().to_json()
    doc["receipt"]["temperature"] = 0
    with pytest.raises(ManifestError, match="unknown receipt member"):
        Receipt.from_json(doc)


@pytest.mark.parametrize(
    ("requested", "resolved", "verdict"),
    [
        ("gpt-4o-mini", "gpt-4o-mini", "same"),
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "resolved"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", "resolved"),
        ("gpt-4", "gpt-4-0613", "resolved"),
        ("gpt-4o", "gpt-4o-mini-2024-07-18", "substituted"),
        ("gpt-4o", "gpt-3.5-turbo", "substituted"),
        (None, "x", "unknown"),
    ],
)
def test_model_resolution(requested: str | None, resolved: str, verdict: str) -> None:
    """An alias resolved to its dated snapshot is not a substitution; another model is."""
    assert model_resolution(requested, resolved) == verdict


def test_receipt_of_follows_the_object_and_forgets_it() -> None:
    """A receipt attached to an object is found while the object lives."""

    class Reply:
        pass

    reply = Reply()
    receipt = make_receipt()
    attach_receipt(reply, receipt)
    assert receipt_of(reply) is receipt and receipt_of(Reply()) is None


# --- the verifier ----------------------------------------------------------------------------------------


def _log_line(event: str, body: bytes, trace_id: str, span_id: str) -> str:
    record = {"eventName": event, "traceId": trace_id, "spanId": span_id, "body": {"stringValue": body.decode()}}
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})


def _span_line(run: Any, model: str) -> str:
    attributes = {**run.span_attributes(), "gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    span = {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "name": f"chat {model}",
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
    }
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


def export(tmp_path: Path, *receipts: Receipt, manifest: bool = True) -> Path:
    """A run (span, manifest) and the given receipts, as OTLP-JSON lines files."""
    run = sign_run(
        Composition.from_dict(COMPOSITION), signer(), trace_id=TRACE_ID, span_id=SPAN_ID, declared_at=DECLARED_AT
    )
    out = tmp_path / "export"
    out.mkdir()
    logs = [_log_line(RECEIPT_EVENT_NAME, r.to_json_bytes(), TRACE_ID, SPAN_ID) for r in receipts]
    if manifest:
        logs.insert(0, _log_line("run_identity.manifest", run.manifest_json(), TRACE_ID, SPAN_ID))
        (out / "traces.jsonl").write_text(_span_line(run, "gpt-4o-mini") + "\n")
    (out / "logs.jsonl").write_text("\n".join(logs) + "\n")
    return out


def run_identity_of_composition() -> str:
    return sign_run(Composition.from_dict(COMPOSITION), signer(), trace_id=TRACE_ID, span_id=SPAN_ID).identity.id


def verdicts(path: Path, policy: Policy | None = None) -> list[Any]:
    return list(Verifier(keyring(), policy or Policy()).verify([path]).results())


def test_verifier_accepts_a_run_with_its_receipt_and_notes_the_resolved_model(tmp_path: Path) -> None:
    """A good receipt leaves the run verified; the alias resolution is a note."""
    (result,) = verdicts(export(tmp_path, make_receipt(identity=run_identity_of_composition())))
    assert result.code == "verified", result.findings
    assert any("resolved to gpt-4o-mini-2024-07-18" in n for n in result.notes)


def test_verifier_reports_a_substituted_model_which_a_policy_may_allow(tmp_path: Path) -> None:
    """A response model that is not the requested one is model_substituted; --allow accepts it."""
    path = export(tmp_path, make_receipt(identity=run_identity_of_composition(), response_model="gpt-3.5-turbo"))
    (result,) = verdicts(path)
    assert (result.code, result.passed) == ("model_substituted", False)
    (allowed,) = verdicts(path, Policy(allow={"model_substituted"}))
    assert allowed.passed


def test_verifier_rejects_a_receipt_of_another_identity_or_with_a_bad_signature(tmp_path: Path) -> None:
    """A receipt naming another identity is binding_mismatch; a forged signature is bad_signature."""
    good = make_receipt(identity=run_identity_of_composition())
    forged = Receipt(good.statement, bytes(64), good.output)
    (result,) = verdicts(export(tmp_path, make_receipt()))
    assert result.code == "binding_mismatch"
    other = tmp_path / "other"
    other.mkdir()
    (result,) = verdicts(export(other, forged))
    assert result.code == "bad_signature" and result.findings[0].step == 8


def test_verifier_recomputes_the_output_a_receipt_carries(tmp_path: Path) -> None:
    """Output edited after signing: identity_mismatch at step 8."""
    good = make_receipt(identity=run_identity_of_composition())
    edited = Receipt(good.statement, good.signature, [{**OUTPUT[0], "finish_reason": "length"}])
    (result,) = verdicts(export(tmp_path, edited))
    assert result.code == "identity_mismatch" and result.findings[0].step == 8


def test_a_receipt_without_its_run_is_manifest_missing(tmp_path: Path) -> None:
    """Only a receipt in the input: the run it names is missing."""
    (result,) = verdicts(export(tmp_path, make_receipt(), manifest=False))
    assert result.code == "manifest_missing"


def test_receipt_vector_recomputes_independently() -> None:
    """tests/vectors/receipt.json: digest, PAE and signature recomputed with hashlib, rfc8785 and the key."""
    import base64
    import hashlib

    import rfc8785
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    vectors = Path(__file__).resolve().parent / "vectors"
    vector = json.loads((vectors / "receipt.json").read_text(encoding="utf-8"))
    run = json.loads((vectors / vector["run"]).read_text(encoding="utf-8"))
    canonical = rfc8785.dumps(vector["output"])
    assert canonical.decode() == vector["output_canonical"]
    digest = "sha256:" + hashlib.sha256(b"run-identity/v1/output\x00" + bytes(4) + canonical).hexdigest()
    assert digest == vector["output_digest"] == vector["statement"]["output_digest"]
    body = rfc8785.dumps(vector["statement"])
    assert body.decode() == vector["statement_canonical"]
    kind = b"application/vnd.run-identity.receipt.v1+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)
    assert pae.hex() == vector["signing_input_hex"]
    public = Ed25519PublicKey.from_public_bytes(
        bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    )
    public.verify(base64.b64decode(vector["signature"]), pae)
    statement = vector["statement"]
    assert (statement["identity"], statement["trace_id"], statement["span_id"]) == (
        run["identity"],
        run["statement"]["trace_id"],
        run["statement"]["span_id"],
    )
    receipt = Receipt.from_json(vector["receipt"])
    verify_receipt(receipt, keyring())


def test_a_receipt_output_with_large_whole_numbers_reads_back_and_verifies() -> None:
    """JCS writes 1e20 and 2^60 as integers; the reader takes them as the doubles they are (spec §3)."""
    output = [{"role": "assistant", "parts": [{"type": "text", "content": "n"}], "n": [1e20, 2.0**60, 7, -(2**53 - 1)]}]
    receipt = make_receipt(output=output)
    text = receipt.to_json_bytes()
    assert b"[100000000000000000000,1152921504606847000,7,-9007199254740991]" in text
    again = Receipt.from_json(text)
    assert again.output == output
    verify_receipt(again, keyring())


@pytest.mark.parametrize(
    "ambiguous",
    [
        lambda body: '{"output":[],' + body[1:],  # two outputs: the reader keeping the first sees another run
        lambda body: body.replace('"receipt":{', '"receipt":{"response_model":"gpt-4o",', 1),
        lambda body: body.replace('"content":"Lisbon."', '"content":' + "[" * 1000 + "1" + "]" * 1000, 1),
    ],
    ids=["output twice", "statement member twice", "nested 1000 deep"],
)
def test_verifier_finds_a_receipt_naming_a_member_twice_malformed(tmp_path: Path, ambiguous: Any) -> None:
    """A receipt record whose JSON has no single reading makes its run malformed, whatever the depth."""
    receipt = make_receipt(identity=run_identity_of_composition())
    out = export(tmp_path, receipt)
    logs = out / "logs.jsonl"
    body = receipt.to_json_bytes().decode()
    assert json.dumps(body)[1:-1] in logs.read_text()
    logs.write_text(logs.read_text().replace(json.dumps(body)[1:-1], json.dumps(ambiguous(body))[1:-1]))
    (result,) = verdicts(out)
    assert result.code == "malformed", result.findings
    assert any("appears more than once" in f.message or "nested too deeply" in f.message for f in result.findings)
