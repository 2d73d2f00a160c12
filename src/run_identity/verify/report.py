"""Output of ``run-identity verify``: a summary and a table of failures, or JSON lines (docs/verify.md)."""

from __future__ import annotations

import re
import sys
import time
from typing import TextIO

import orjson

from run_identity.verify._codes import FAILURE_CODES, VERIFIED
from run_identity.verify._result import VerificationResult
from run_identity.verify.render import esc
from run_identity.verify.verifier import VerificationReport

__all__ = ["INSECURE_BANNER", "ProgressBar", "write_json", "write_text"]

INSECURE_BANNER = (
    "!! INSECURE: --insecure-skip-signatures is set. NO SIGNATURE WAS CHECKED and no key was trusted.\n"
    "!! The results below show internal consistency only: anyone could have produced this data.\n"
)


#: What orjson writes raw that a terminal acts on: DEL, C1 controls, bidirectional overrides and isolates.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _json_line(doc: object) -> str:
    """One JSON line, with the characters a terminal acts on written as ``\\uXXXX`` escapes (still the same
    JSON value: untrusted text in a finding never reaches a terminal raw, even with ``--json``)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", orjson.dumps(doc).decode()) + "\n"


def write_json(report: VerificationReport, out: TextIO) -> None:
    """One JSON object per line: every run's result, then the summary (``"type": "summary"``)."""
    for result in report.results():
        out.write(_json_line(result.to_json()))
    out.write(_json_line(report.summary_json()))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _short(identity: str | None) -> str:
    return "-" if identity is None else esc(identity[:15]) + "…"


def write_text(report: VerificationReport, out: TextIO) -> None:
    """The summary (counts per code, the verdict) and then a table of the runs that fail the policy."""
    counts = report.counts
    t = report.tally
    out.write(
        f"run-identity verify: {_plural(report.runs, 'run')} from {_plural(len(report.inputs), 'file')} "
        f"({_plural(t.spans, 'span')}, {_plural(t.log_records, 'log record')} read)\n"
    )
    if report.insecure:
        out.write("signatures: NOT CHECKED (--insecure-skip-signatures); consistency only\n")
    out.write("\n")
    allowed = report.policy.allow
    for code in (VERIFIED, *FAILURE_CODES):
        if counts[code]:
            tag = "  (allowed by policy)" if code in allowed else ""
            out.write(f"  {code:<20}{counts[code]:>10,}{tag}\n")
    if not report.runs:
        out.write("  (no runs found)\n")
    out.write("\n")
    if report.log is not None:
        _log_lines(report, out)
    if report.with_unchecked:
        out.write(f"NOTE: {_plural(report.with_unchecked, 'run')} with checks that could not be made:\n")
        _unchecked(report, out)
        out.write("\n")
    problem = report.count_problem
    if report.passed:
        verdict = "every run verified" if counts[VERIFIED] == report.runs else "every run passes the policy"
        if report.with_unchecked:
            verdict += " (checks not made are listed above)"
        out.write(f"PASS: {verdict}\n")
        return
    if problem is not None:
        out.write(f"FAIL: {problem}\n")
    if report.failed:
        policy = f"allowed: {', '.join(sorted(allowed))}" if allowed else "no code allowed; see --allow"
        out.write(f"FAIL: {_plural(report.failed, 'run')} of {report.runs:,} fail the policy ({policy})\n\n")
        _table(report, out)


def _log_lines(report: VerificationReport, out: TextIO) -> None:
    """The checkpoint checked and what step 9 found (docs/verify.md, "Transparency log")."""
    assert report.log is not None
    summary = report.log.summary_json()
    witnesses = ", ".join(esc(w["name"]) for w in summary["witnesses"]) or "none"
    quorum = f" (quorum {summary['witness_quorum']})" if summary["witness_quorum"] else ""
    out.write(
        f"transparency log: {esc(summary['origin'])} at tree size {summary['size']:,}, root {summary['root']}\n"
        f"  checkpoint {esc(summary['location'])}: log signature verified; witnesses cosigning: {witnesses}{quorum}\n"
    )
    runs = summary["runs"]
    window = ""
    if summary["since"] or summary["until"]:
        window = f" (window {summary['since'] or '-'} .. {summary['until'] or '-'})"
    out.write(
        f"  runs: {runs['included']:,} included, {runs['not_logged']:,} not logged, "
        f"{runs['not_checked']:,} not checked; log entries missing from the export: "
        f"{runs['missing_from_export']:,}{window}\n"
    )
    if summary["rejected_entries"]:
        n = summary["rejected_entries"]
        what = "log entry names" if n == 1 else "log entries name"
        out.write(
            f"  WARNING: {n:,} {what} a trusted key but no valid signed statement (bad signature or form): "
            "the log appended what it should have refused\n"
        )
    out.write("\n")


def _unchecked(report: VerificationReport, out: TextIO, limit: int = 50) -> None:
    shown = 0
    for result in report.results():
        if not result.unchecked:
            continue
        if shown == limit:
            out.write(f"  ... and {report.with_unchecked - limit:,} more (--json lists every run)\n")
            return
        shown += 1
        withheld = f"  withheld: {esc(', '.join(result.withheld))}" if result.withheld else ""
        out.write(f"  {result.run}  {result.code}{withheld}\n")
        for check in result.unchecked:
            out.write(f"      not checked: {esc(check)}\n")


def _table(report: VerificationReport, out: TextIO) -> None:
    header = ("CODE", "RUN (trace_id/span_id)", "IDENTITY", "WHERE", "FINDING")
    rows: list[tuple[str, str, str, str, str]] = [header]
    for result in report.failures():
        rows.extend(_rows(result))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4]))
        out.write(f"{line}  {row[4]}\n")


def _rows(result: VerificationResult) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for i, finding in enumerate(result.findings):
        where = esc(finding.location or "-")
        if i == 0:
            rows.append((result.code, result.run, _short(result.identity), where, esc(finding.message)))
        else:
            rows.append(("", "", "", where, f"[{finding.code}] {esc(finding.message)}"))
    return rows


class ProgressBar:
    """A progress bar on a terminal (stderr), redrawn at most ten times a second; silent elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        share = done / total if total else 1.0
        filled = int(share * 30)
        bar = "#" * filled + "." * (30 - filled)
        self._stream.write(f"\rverifying [{bar}] {share:6.1%}  {done / 1e6:,.1f}/{total / 1e6:,.1f} MB")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the bar's line."""
        if self._drawn:
            self._stream.write("\r" + " " * 78 + "\r")
            self._stream.flush()
