#!/usr/bin/env python3
"""Run any verifier over the conformance cases of docs/spec.md §11.1 and compare its verdicts with theirs.

    python3 scripts/conformance.py --verifier 'my-verifier {inputs} --keyring {keyring} --json'

For each case folder of ``conformance/verify/`` the command is split like a shell would (no shell runs it),
its placeholders replaced, and run with the repository root as its working folder:

``{inputs}``     every file of the case's ``input/`` folder, sorted by name, as separate arguments
``{input_dir}``  the case's ``input/`` folder
``{keyring}``    the case's ``keyring.jwks.json``
``{salts}``      every salt file (``salt.hex``, ``salt-2.hex``...) as separate arguments (none: no argument)
``{policy}``     the case's ``policy.json`` (a file holding ``{}`` when the case has none)
``{case}``       the case folder
``{options}``    the policy and salts as command-line options (below); appended at the end when the
                 command does not name ``{options}`` itself

The options are spelled as ``run-identity verify`` spells them unless told otherwise: ``--salt-option``,
``--allow-option``, ``--require-option``, ``--allow-empty-option``, ``--expect-option``,
``--expect-min-option`` and ``--require-identity-option`` give each one's spelling (an empty string: the
verifier takes no such option, and a case that needs it is skipped, which fails the run unless
``--allow-skips``). A case with a transparency log (``tlog-*``: ``tlog/``, ``tlog.vkey``, ``witness-N.vkey``,
``tlog.json``) adds ``--tlog-option`` (``{dir}``, ``{key}``), ``--witness-option`` (``{key}``, once per
witness key), ``--witness-quorum-option`` (``{n}``), ``--since-option`` and ``--until-option`` (``{time}``).

The verifier prints JSON Lines as docs/verify.md "JSON output" describes (other lines are ignored): one
``{"type": "run", "trace_id", "span_id", "code", "passed"?, "findings"?}`` object per run, ``trace_id`` and
``span_id`` null for an unreadable record without ids. The runner compares every run's code (and ``passed``
when printed; with ``--findings`` also the set of finding codes), the unreadable records' codes and count,
and the exit status (0 when the verification passes the policy, 1 when it fails). It prints one row per
case and exits 1 when any case disagrees (2 for a usage error). Standard library only.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "conformance" / "verify"

DEFAULT_OPTIONS = {
    "salt": "--salt-file {file}",
    "allow": "--allow {code}",
    "require": "--require-content {components}",
    "allow_empty": "--allow-empty",
    "expect": "--expect {n}",
    "expect_min": "--expect {n}+",
    "require_identity": "--require-identity",
    "tlog": "--tlog {dir} --tlog-key {key}",
    "witness": "--witness-key {key}",
    "witness_quorum": "--witness-quorum {n}",
    "since": "--since {time}",
    "until": "--until {time}",
}


class Skip(Exception):
    """The case needs an option the verifier does not take."""


@dataclass
class Outcome:
    """One case's comparison: its name, whether it was skipped, and every disagreement found."""

    name: str
    exit_status: int | None = None
    expected_exit: int | None = None
    runs: int = 0
    differences: list[str] = field(default_factory=list)
    skipped: str | None = None


def _fragment(spelling: str, what: str, **values: str) -> list[str]:
    if not spelling:
        raise Skip(f"needs {what}")
    return [part.format(**values) for part in shlex.split(spelling)]


def case_options(case: Path, spellings: dict[str, str]) -> list[str]:
    """The case's salts and policy as command-line options."""
    out: list[str] = []
    for salt in sorted(case.glob("salt*.hex")):
        out += _fragment(spellings["salt"], "a salt option", file=str(salt))
    policy = _policy(case)
    for code in policy.get("allow", []):
        out += _fragment(spellings["allow"], "an allow option", code=code)
    if policy.get("require_content"):
        out += _fragment(
            spellings["require"], "a require-content option", components=",".join(policy["require_content"])
        )
    if policy.get("allow_empty"):
        out += _fragment(spellings["allow_empty"], "an allow-empty option")
    if policy.get("require_identity"):
        out += _fragment(spellings["require_identity"], "a require-identity option")
    if policy.get("expect") is not None:
        out += _fragment(spellings["expect"], "an expect option", n=str(policy["expect"]))
    if policy.get("expect_min") is not None:
        out += _fragment(spellings["expect_min"], "an expect-at-least option", n=str(policy["expect_min"]))
    return out + _log_options(case, spellings)


def _log_options(case: Path, spellings: dict[str, str]) -> list[str]:
    """A case with a transparency log (``tlog/``, ``tlog.vkey``, ``witness-N.vkey``, ``tlog.json``)."""
    if not (case / "tlog").is_dir():
        return []
    out = _fragment(spellings["tlog"], "a transparency log option", dir=str(case / "tlog"), key=str(case / "tlog.vkey"))
    for witness in sorted(case.glob("witness-*.vkey")):
        out += _fragment(spellings["witness"], "a witness key option", key=str(witness))
    path = case / "tlog.json"
    settings = dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}
    if settings.get("witness_quorum") is not None:
        out += _fragment(spellings["witness_quorum"], "a witness quorum option", n=str(settings["witness_quorum"]))
    for bound in ("since", "until"):
        if settings.get(bound) is not None:
            out += _fragment(spellings[bound], f"a --{bound} option", time=str(settings[bound]))
    return out


def _policy(case: Path) -> dict[str, Any]:
    path = case / "policy.json"
    return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}


def command(template: str, case: Path, spellings: dict[str, str], empty_policy: Path) -> list[str]:
    """The verifier's argument list for one case."""
    inputs = sorted(str(p) for p in (case / "input").rglob("*") if p.is_file())
    salts = sorted(str(p) for p in case.glob("salt*.hex"))
    options = case_options(case, spellings)
    policy = case / "policy.json"
    single = {
        "{input_dir}": str(case / "input"),
        "{keyring}": str(case / "keyring.jwks.json"),
        "{policy}": str(policy if policy.exists() else empty_policy),
        "{case}": str(case),
    }
    many = {"{inputs}": inputs, "{salts}": salts, "{options}": options}
    argv: list[str] = []
    for token in shlex.split(template):
        if token in many:
            argv += many[token]
            continue
        for name, value in single.items():
            token = token.replace(name, value)
        argv.append(token)
    if "{options}" not in shlex.split(template):
        argv += options
    return argv


def parse(stdout: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The run objects of the verifier's JSON Lines output, and problems with it."""
    runs, problems = [], []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            problems.append(f"output line is not JSON: {line[:80]}")
            continue
        if type(obj) is dict and obj.get("type") == "run":
            runs.append(obj)
    return runs, problems


def compare(case: Path, exit_status: int, stdout: str, findings: bool) -> list[str]:
    """Every way the verifier's output disagrees with the case's expected.json."""
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    runs, problems = parse(stdout)
    got: dict[str, dict[str, Any]] = {}
    unreadable: Counter[str] = Counter()
    for run in runs:
        trace_id, span_id, code = run.get("trace_id"), run.get("span_id"), run.get("code")
        if trace_id is None or span_id is None:
            unreadable[str(code)] += 1
            continue
        key = f"{str(trace_id).lower()}/{str(span_id).lower()}"
        if key in got:
            problems.append(f"{key}: reported twice")
        got[key] = run
    for key, want in expected["runs"].items():
        run = got.get(key)
        if run is None:
            problems.append(f"{key}: missing (expected {want['code']})")
            continue
        if run.get("code") != want["code"]:
            problems.append(f"{key}: code {run.get('code')}, expected {want['code']}")
        if "passed" in run and run["passed"] != want["passed"]:
            problems.append(f"{key}: passed {run['passed']}, expected {want['passed']}")
        if findings:
            codes = sorted({f.get("code") for f in run.get("findings", []) if type(f) is dict})
            if codes != want["findings"]:
                problems.append(f"{key}: findings {codes}, expected {want['findings']}")
    for key in sorted(got.keys() - expected["runs"].keys()):
        problems.append(f"{key}: unexpected run ({got[key].get('code')})")
    if dict(unreadable) != expected["unreadable"]:
        problems.append(f"unreadable records {dict(unreadable)}, expected {expected['unreadable']}")
    if exit_status != expected["exit_status"]:
        problems.append(f"exit status {exit_status}, expected {expected['exit_status']}")
    return problems


def run_case(
    case: Path, template: str, spellings: dict[str, str], empty_policy: Path, findings: bool, timeout: float
) -> Outcome:
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
    outcome = Outcome(case.name, expected_exit=expected["exit_status"], runs=len(expected["runs"]))
    try:
        argv = command(template, case, spellings, empty_policy)
    except Skip as exc:
        outcome.skipped = str(exc)
        return outcome
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        outcome.differences.append(f"could not run the verifier: {exc}")
        return outcome
    outcome.exit_status = done.returncode
    if done.returncode not in (0, 1):
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        outcome.differences.append(f"exit status {done.returncode} (a usage error?): {tail[:200]}")
        return outcome
    outcome.differences = compare(case, done.returncode, done.stdout, findings)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a verifier over the conformance cases (docs/spec.md §11.1) and compare its verdicts.",
    )
    parser.add_argument("--verifier", required=True, metavar="COMMAND", help="the command, with placeholders")
    parser.add_argument("--cases", type=Path, default=CASES, metavar="DIR", help="the cases folder")
    parser.add_argument("--only", action="append", metavar="GLOB", help="run only the cases matching (repeatable)")
    parser.add_argument("--findings", action="store_true", help="also compare each run's set of finding codes")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="cases run at once")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per case")
    parser.add_argument("--allow-skips", action="store_true", help="skipped cases do not fail the run")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the cases that disagree")
    for name, default in DEFAULT_OPTIONS.items():
        flag = "--" + name.replace("_", "-") + "-option"
        parser.add_argument(flag, dest=name, default=default, metavar="SPELLING", help=f"default: {default!r}")
    args = parser.parse_args(argv)
    spellings = {name: getattr(args, name) for name in DEFAULT_OPTIONS}
    if not args.cases.is_dir():
        parser.error(f"{args.cases}: no such folder")
    cases = sorted(p for p in args.cases.iterdir() if (p / "expected.json").is_file())
    if args.only:
        cases = [c for c in cases if any(fnmatch.fnmatch(c.name, g) for g in args.only)]
    if not cases:
        parser.error("no case selected")
    with tempfile.TemporaryDirectory() as tmp:
        empty_policy = Path(tmp) / "policy.json"
        empty_policy.write_text("{}\n", encoding="utf-8")
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            outcomes = list(
                pool.map(
                    lambda c: run_case(c, args.verifier, spellings, empty_policy, args.findings, args.timeout), cases
                )
            )
    width = max(len(o.name) for o in outcomes)
    print(f"{'case':<{width}}  runs  exit (expected)  result")
    for o in outcomes:
        status = "skipped: " + o.skipped if o.skipped else ("DISAGREES" if o.differences else "agrees")
        if args.quiet and not o.differences and not o.skipped:
            continue
        got = "-" if o.exit_status is None else str(o.exit_status)
        print(f"{o.name:<{width}}  {o.runs:>4}  {got:>4} ({o.expected_exit})       {status}")
        for difference in o.differences:
            print(f"    {difference}")
    disagree = sum(bool(o.differences) for o in outcomes)
    skipped = sum(o.skipped is not None for o in outcomes)
    agree = len(outcomes) - disagree - skipped
    print(f"{len(outcomes)} cases: {agree} agree, {disagree} disagree, {skipped} skipped")
    return 1 if disagree or (skipped and not args.allow_skips) else 0


if __name__ == "__main__":
    sys.exit(main())
