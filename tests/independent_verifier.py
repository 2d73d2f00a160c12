"""A second implementation of docs/spec.md §4 to §12, written from the spec alone.

It imports nothing from ``run_identity``: canonical form by the reference ``rfc8785`` package, digests with
``hashlib``, signatures with ``cryptography``, OTLP/JSON lines read with ``json``. It checks steps 2 to 5 of
§12 (signatures, content, join) and reports one code per run. tests/test_independent.py runs it on data
exported by the library; agreement is the evidence that the spec is enough to verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LISTS = {"instructions", "messages", "tools", "context"}
PAYLOAD_TYPE = b"application/vnd.run-identity.binding.v1+json"


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_keys(jwks_path: Path) -> dict[str, Ed25519PublicKey]:
    """§7: key id = base64url(SHA-256 of {"crv","kty","x"} compact, sorted)."""
    keys = {}
    for jwk in json.loads(jwks_path.read_text())["keys"]:
        thumb_input = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
        kid = base64.urlsafe_b64encode(hashlib.sha256(thumb_input.encode()).digest()).rstrip(b"=").decode()
        keys[kid] = Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"]))
    return keys


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def recompute_identity(manifest: dict[str, Any]) -> str | None:
    """§4/§5 over the manifest content (no salt); None when a stated digest disagrees with the content."""
    digests = {}
    for name, comp in manifest["components"].items():
        if comp.get("withheld"):
            digests[name] = comp["digest"]
            continue
        if name in LISTS:
            element_digests = []
            for element in comp["elements"]:
                if element.get("withheld"):
                    element_digests.append(element["digest"])
                    continue
                d = _sha(f"run-identity/v1/element/{name}".encode() + b"\0\0\0\0\0" + rfc8785.dumps(element["value"]))
                if d != element["digest"]:
                    return None
                element_digests.append(d)
            digest = _sha(f"run-identity/v1/list/{name}".encode() + b"\0" + rfc8785.dumps(element_digests))
        else:
            digest = _sha(f"run-identity/v1/component/{name}".encode() + b"\0\0\0\0\0" + rfc8785.dumps(comp["value"]))
        if digest != comp["digest"]:
            return None
        digests[name] = digest
    return _sha(b"run-identity/v1/identity\0" + rfc8785.dumps(digests))


def _signature_ok(statement: dict[str, str], signature_b64: str, keys: dict[str, Ed25519PublicKey]) -> str:
    key = keys.get(statement["key_id"])
    if key is None:
        return "unknown_key"
    body = rfc8785.dumps(statement)
    pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE, len(body), body)
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), pae)
    except (InvalidSignature, ValueError):
        return "bad_signature"
    return "verified"


def _attributes(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for kv in record.get("attributes", []):
        value = kv["value"]
        out[kv["key"]] = next(iter(value.values())) if value else None
    return out


class _Repeated(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """§12 step 1: an object that names a member twice has no single reading."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Repeated("a member is named twice")
    return out


def read_export(folder: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Run spans and manifest records by (trace id, span id), from OTLP/JSON lines files in ``folder``."""
    spans: dict[tuple[str, str], dict[str, Any]] = {}
    manifests: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            doc = json.loads(line)
            for rs in doc.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        attrs = _attributes(span)
                        if "run_identity.id" in attrs:
                            spans[(span["traceId"], span["spanId"])] = attrs
            for rl in doc.get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    for rec in sl.get("logRecords", []):
                        if rec.get("eventName") == "run_identity.manifest":
                            try:
                                body = json.loads(rec["body"]["stringValue"], object_pairs_hook=_unique_members)
                            except _Repeated:
                                body = {"malformed": True}
                            manifests[(rec["traceId"], rec["spanId"])] = body
    return spans, manifests


def verify_folder(folder: Path, keys: dict[str, Ed25519PublicKey]) -> dict[tuple[str, str], str]:
    """One code per run (§13), by (trace id, span id)."""
    spans, manifests = read_export(folder)
    results: dict[tuple[str, str], str] = {}
    for run in sorted(set(spans) | set(manifests)):
        attrs, manifest = spans.get(run), manifests.get(run)
        code = "verified"
        span_statement = None
        if attrs is not None:
            span_statement = {
                "spec_version": attrs["run_identity.spec_version"],
                "identity": attrs["run_identity.id"],
                "trace_id": run[0],
                "span_id": run[1],
                "key_id": attrs["run_identity.key_id"],
                "declared_at": attrs["run_identity.declared_at"],
            }
            code = _signature_ok(span_statement, attrs["run_identity.signature"], keys)
        if manifest is not None and manifest.get("malformed"):
            code = "malformed"
        if code == "verified" and manifest is not None:
            code = _signature_ok(manifest["statement"], manifest["signature"], keys)
            if code == "verified":
                identity = recompute_identity(manifest)
                if identity is None or identity != manifest["identity"] or identity != manifest["statement"]["identity"]:
                    code = "identity_mismatch"
            if code == "verified" and (manifest["statement"]["trace_id"], manifest["statement"]["span_id"]) != run:
                code = "binding_mismatch"
            if code == "verified" and span_statement is not None and span_statement != manifest["statement"]:
                code = "binding_mismatch"
        if code == "verified" and manifest is None:
            code = "manifest_missing"
        if code == "verified" and attrs is None:
            code = "span_missing"
        results[run] = code
    return results
