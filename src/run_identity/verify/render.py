"""Text for people: a manifest with its verdict (``show``) and the difference of two runs (``diff``)."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from run_identity.core.manifest import Manifest, ManifestComponent
from run_identity.core.receipt import Receipt
from run_identity.verify._codes import SPAN_MISSING, VERIFIED
from run_identity.verify._result import VerificationResult
from run_identity.verify.diff import Change, ManifestDiff, Withheld

__all__ = ["esc", "render_diff", "render_manifest", "render_receipt", "render_status"]

_INDENT = "    "
_LONG = 120
#: Characters a terminal may act on: C0 and C1 controls, DEL, and the bidirectional overrides and isolates
#: that reorder what is shown. Untrusted text shows them escaped, never raw.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def esc(text: object) -> str:
    """``text`` safe for a terminal: every control character (newlines included) and every bidirectional
    control shown as an escape such as ``\\x1b``, so untrusted data can neither move the cursor, clear
    the screen, nor start a line of its own."""
    return _UNSAFE.sub(_escape_one, str(text))


def _json(value: Any, limit: int | None = None) -> str:
    if isinstance(value, Withheld):
        return f"(withheld: {esc(value.digest)})"
    text = esc(json.dumps(value, ensure_ascii=False, sort_keys=True, default=str))
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _block(text: str, indent: str) -> list[str]:
    return [indent + esc(line) for line in (text.split("\n") or [""])]


def render_status(result: VerificationResult | None, *, manifest_file: bool = False) -> list[str]:
    """The verdict lines of a run: its code, every finding, and every check that could not be made."""
    if result is None:
        return ["status       NOT VERIFIED (no manifest could be read)"]
    findings = [f for f in result.findings if not (manifest_file and f.code == SPAN_MISSING)]
    lines: list[str] = []
    if not findings:
        extra = " (manifest file: signature and content; no span checked)" if manifest_file else ""
        lines.append(f"status       {VERIFIED.upper()}{extra}")
    else:
        verdict = "passes the policy" if result.passed else "FAILED"
        lines.append(f"status       {verdict}: {findings[0].code}")
        for f in findings:
            where = f"  [{esc(f.location)}]" if f.location else ""
            lines.append(f"  - {f.code} (step {f.step}): {esc(f.message)}{where}")
    if result.withheld:
        lines.append(f"withheld     {esc(', '.join(result.withheld))}")
    for check in result.unchecked:
        lines.append(f"not checked  {esc(check)}")
    return lines


def render_receipt(receipt: Receipt, where: str) -> str:
    """A run's receipt: what the provider returned, as signed (served model, output digest, finish)."""
    s = receipt.statement
    lines = [
        f"receipt      {esc(where)}",
        f"  requested  {esc(s.request_model or '-')}",
        f"  served     {esc(s.response_model or '-')}",
        f"  output     {esc(s.output_digest)}",
        f"  finish     {esc(', '.join(s.finish_reasons) or '-')}",
        f"  completed  {esc(s.completed_at)}",
    ]
    if s.response_id:
        lines.append(f"  response   {esc(s.response_id)}")
    if s.system_fingerprint:
        lines.append(f"  system fp  {esc(s.system_fingerprint)}")
    return "\n".join(lines) + "\n"


def _part(part: Any, indent: str) -> list[str]:
    if isinstance(part, Withheld) or type(part) is not dict:
        return [indent + _json(part, _LONG)]
    kind = part.get("type")
    if kind in ("text", "reasoning") and type(part.get("content")) is str:
        return [f"{indent}{esc(kind)}:", *_block(part["content"], indent + "  ")]
    rest = {k: v for k, v in part.items() if k != "type"}
    return [f"{indent}{esc(kind)}: {_json(rest, _LONG)}"]


def _element(name: str, i: int, value: Any) -> list[str]:
    head = f"  [{i}] "
    if isinstance(value, Withheld) or type(value) is not dict:
        return [head + _json(value, _LONG)]
    if name == "messages":
        lines = [head + esc(value.get("role")) + (f" ({esc(value['name'])})" if value.get("name") else "")]
        for part in value.get("parts", []) if type(value.get("parts")) is list else []:
            lines += _part(part, _INDENT + "  ")
        return lines
    if name == "instructions":
        lines = _part(value, _INDENT)
        return [head + lines[0].lstrip(), *lines[1:]]
    if name == "tools":
        described = f": {esc(value['description'])}" if value.get("description") else ""
        lines = [f"{head}{esc(value.get('name'))}{described}"]
        if value.get("parameters") is not None:
            lines.append(f"{_INDENT}  parameters: {_json(value['parameters'], _LONG)}")
        return lines
    lines = [head + esc(value.get("id")) + (f"  {esc(value['uri'])}" if value.get("uri") else "")]
    if type(value.get("content")) is str:
        lines += _block(value["content"], _INDENT + "  ")
    rest = {k: v for k, v in value.items() if k not in ("id", "uri", "content")}
    if rest:
        lines.append(f"{_INDENT}  {_json(rest, _LONG)}")
    return lines


def _component(name: str, c: ManifestComponent) -> list[str]:
    if c.withheld:
        return [f"{name:<12} (withheld: {c.digest})"]
    if c.elements is not None:
        lines = [f"{name} ({len(c.elements)})"]
        for i, e in enumerate(c.elements):
            lines += _element(name, i, Withheld(e.digest) if e.withheld else e.value)
        return lines
    value = c.value
    if name == "model" and type(value) is dict:
        extra = ", ".join(f"{k} {esc(value[k])}" for k in ("revision", "weights_digest", "endpoint") if k in value)
        head = f"{'model':<12} {esc(value.get('provider'))} {esc(value.get('name'))}"
        return [head + (f" ({extra})" if extra else "")]
    if name == "operation":
        return [f"{'operation':<12} {esc(value)}"]
    if name == "parameters" and type(value) is dict:
        return [f"{'parameters':<12} " + "  ".join(f"{esc(k)}={_json(v)}" for k, v in sorted(value.items()))]
    return [f"{name:<12} {_json(value)}"]


def render_manifest(
    manifest: Manifest, result: VerificationResult | None, where: str, *, manifest_file: bool = False
) -> str:
    """A manifest as a person reads it, headed by its verdict."""
    st = manifest.statement
    lines = [
        f"run          {st.trace_id}/{st.span_id}",
        f"identity     {manifest.identity}",
        f"key id       {st.key_id}",
        f"declared at  {st.declared_at}",
        f"manifest     {esc(where)}",
    ]
    if result is not None and result.span_location:
        lines.append(f"span         {esc(result.span_location)}")
    if manifest.salt_id:
        lines.append(f"salt id      {manifest.salt_id}")
    lines += render_status(result, manifest_file=manifest_file)
    order = ("model", "operation", "parameters", "instructions", "messages", "tools", "context", "extensions")
    lines.append("")
    for name in order:
        if name in manifest.components:
            c = manifest.components[name]
            if c.elements is not None and lines[-1]:
                lines.append("")
            lines += _component(name, c)
    return "\n".join(lines) + "\n"


def _text_lines(a: str, b: str, indent: str) -> list[str]:
    if "\n" in a or "\n" in b:
        diff = difflib.unified_diff(a.split("\n"), b.split("\n"), "A", "B", n=1, lineterm="")
        return [indent + esc(line) for line in list(diff)[2:]]
    a, b = esc(a), esc(b)
    if len(a) <= _LONG and len(b) <= _LONG:
        return [f"{indent}- {a}", f"{indent}+ {b}"]
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, at - 40)
    return [
        f"{indent}first difference at character {at}:",
        f"{indent}- …{a[lo : at + 40]}…",
        f"{indent}+ …{b[lo : at + 40]}…",
    ]


def _change(c: Change) -> list[str]:
    indent = _INDENT + "  "
    if c.kind in ("added", "removed"):
        sign, value, side = ("+", c.b, "B") if c.kind == "added" else ("-", c.a, "A")
        if type(value) not in (dict, list):
            return [f"  {sign} {esc(c.path)} = {_json(value, _LONG)}  (only in {side})"]
        return [f"  {sign} {esc(c.path)}  (only in {side})", indent + _json(value, _LONG)]
    if c.kind == "reordered":
        return [f"  ↔ {esc(c.path)}: {esc(c.note)}"]
    if c.kind == "withheld":
        return [f"  ? {esc(c.path)}: {esc(c.note)}"]
    lines = [f"  ~ {esc(c.path)}" + (f"  ({esc(c.note)})" if c.note else "")]
    if type(c.a) is str and type(c.b) is str:
        return lines + _text_lines(c.a, c.b, indent)
    return [*lines, f"{indent}- {_json(c.a, _LONG)}", f"{indent}+ {_json(c.b, _LONG)}"]


def render_diff(d: ManifestDiff, label_a: str, label_b: str) -> str:
    """The difference of two runs, component by component."""
    lines = [f"A  {esc(d.identity_a)}  {esc(label_a)}", f"B  {esc(d.identity_b)}  {esc(label_b)}", ""]
    if d.identical:
        lines.append("identical: both runs have the same identity (the same composition)")
        return "\n".join(lines) + "\n"
    changed = [c for c in d.components if c.status != "same"]
    same = [c.name for c in d.components if c.status == "same"]
    lines.append(
        f"{len(changed)} of {len(d.components)} components differ" + (f"; same: {', '.join(same)}" if same else "")
    )
    for c in changed:
        lines.append("")
        if c.status in ("only_a", "only_b"):
            lines.append(f"{c.name}: only in {'A' if c.status == 'only_a' else 'B'}")
            for change in c.changes:
                value = change.a if c.status == "only_a" else change.b
                lines.append(_INDENT + _json(value, _LONG * 4))
        else:
            lines.append(f"{c.name}:")
            for change in c.changes:
                lines += _change(change)
            if not c.changes:
                lines.append("  (digests differ; the content compares equal, so a digest is stated wrongly)")
    return "\n".join(lines) + "\n"
