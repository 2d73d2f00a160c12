"""The conformance suite (conformance/verify, docs/spec.md §11.1): the cases are what the generator writes, our
verifier reaches every case's expected verdict, and the runner for other verifiers agrees with our CLI and
reports a verifier that does not."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import test_tamper as tt

from run_identity.core.keys import Keyring
from run_identity.verify import Policy, Verifier

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "conformance" / "verify"
ALL = sorted(p for p in CASES.iterdir() if (p / "expected.json").is_file())
RUNNER = ROOT / "scripts" / "conformance.py"
CLI = f"{sys.executable} -m run_identity verify {{inputs}} --keyring {{keyring}} --json"


def _expected(case: Path) -> dict[str, Any]:
    return dict(json.loads((case / "expected.json").read_text(encoding="utf-8")))


def test_the_cases_are_what_the_generator_writes() -> None:
    """scripts/gen_conformance.py --check finds no drift (it regenerates every case from fixed seeds)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_conformance.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_suite_covers_every_tampering_and_is_large_enough() -> None:
    """At least 80 cases; one per tampering of the tamper suite, in its order; benign and verdict cases too."""
    assert len(ALL) >= 80
    tampered = [_expected(c)["description"] for c in ALL if c.name[7:9].isdigit() and c.name.startswith("tamper-")]
    assert tampered == [f"tests/test_tamper.py: {name}" for name, _, _ in tt.CASES]
    assert len([c for c in ALL if c.name.startswith("tamper-proto-")]) >= 10
    encodings = [c for c in ALL if c.name.startswith("encoding-")]
    assert len(encodings) >= 15 and all(_expected(c)["exit_status"] == 0 for c in encodings)
    assert len([c for c in ALL if c.name.startswith("verdict-")]) >= 20
    kinds = {p.suffix for c in ALL for p in (c / "input").iterdir()}
    assert kinds == {".jsonl", ".pb", ".bin"}
    size = sum(p.stat().st_size for p in CASES.rglob("*") if p.is_file())
    assert size < 5_000_000


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_our_verifier_reaches_the_expected_verdict(case: Path) -> None:
    """Every run's code, finding codes and pass, the unreadable records, and the verification's pass."""
    expected = _expected(case)
    spec = json.loads((case / "policy.json").read_text()) if (case / "policy.json").exists() else {}
    policy = Policy(
        allow=spec.get("allow", ()),
        require_content=spec.get("require_content", ()),
        allow_empty=spec.get("allow_empty", False),
        expect=spec.get("expect"),
        expect_min=spec.get("expect_min"),
        require_identity=spec.get("require_identity", False),
    )
    salts = [bytes.fromhex(p.read_text().strip()) for p in sorted(case.glob("salt*.hex"))]
    keyring = Keyring.from_jwks(case / "keyring.jwks.json")
    files = sorted(p for p in (case / "input").iterdir())
    for paths in ([case / "input"], files[::-1]):  # the verdict does not depend on the order of the files
        report = Verifier(keyring, policy, salts=salts).verify(paths)
        runs: dict[str, Any] = {}
        unreadable: Counter[str] = Counter()
        for result in report.results():
            if result.trace_id is None:
                unreadable[result.code] += 1
            else:
                runs[f"{result.trace_id}/{result.span_id}"] = {
                    "code": result.code,
                    "findings": sorted({f.code for f in result.findings}),
                    "passed": result.passed,
                }
        assert runs == expected["runs"]
        assert dict(unreadable) == expected["unreadable"]
        assert (0 if report.passed else 1) == expected["exit_status"]


def _runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, cwd=ROOT)


# A sample of cases covering each encoding, salts, every policy option, unreadable records and empty input.
SAMPLE = [
    "encoding-protobuf-requests",
    "encoding-proto-length-prefixed",
    "encoding-base64-ids",
    "tamper-01-*",
    "tamper-65-*",
    "verdict-salted-*",
    "verdict-empty-input*",
    "verdict-expect-*",
    "verdict-withheld-model-and-parameters-required",
    "verdict-span-missing-allowed",
    "verdict-truncated-proto-frame",
]


def test_the_runner_agrees_with_our_cli() -> None:
    """Our own CLI as the 'other' verifier: every sampled case agrees, finding codes included."""
    args = ["--verifier", CLI, "--findings", "--jobs", "2"]
    for pattern in SAMPLE:
        args += ["--only", pattern]
    proc = _runner(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 disagree, 0 skipped" in proc.stdout
    assert proc.stdout.count("agrees") >= 15


def test_the_runner_reports_a_verifier_that_disagrees(tmp_path: Path) -> None:
    """A 'verifier' that calls every run verified and exits 0: each disagreement named, exit 1."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import json, sys\n"
        "case = sys.argv[1]\n"
        "expected = json.load(open(case + '/expected.json'))\n"
        "for key in expected['runs']:\n"
        "    t, s = key.split('/')\n"
        "    print(json.dumps({'type': 'run', 'trace_id': t, 'span_id': s, 'code': 'verified'}))\n"
        "print(json.dumps({'type': 'summary', 'passed': True}))\n"
    )
    proc = _runner(
        "--verifier", f"{sys.executable} {fake} {{case}}", "--only", "tamper-01-*", "--only", "encoding-base64-ids"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "code verified, expected identity_mismatch" in proc.stdout
    assert "exit status 0, expected 1" in proc.stdout
    assert "2 cases: 1 agree, 1 disagree, 0 skipped" in proc.stdout


def test_the_runner_skips_a_case_whose_option_the_verifier_lacks() -> None:
    """A verifier without salts: the salted cases are skipped, which fails unless --allow-skips."""
    args = ["--verifier", CLI, "--salt-option", "", "--only", "verdict-salted-with-salt"]
    proc = _runner(*args)
    assert proc.returncode == 1 and "skipped: needs a salt option" in proc.stdout
    assert _runner(*args, "--allow-skips").returncode == 0
