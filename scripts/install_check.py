#!/usr/bin/env python3
"""Install ai-run-identity into a clean virtual environment, as a user would, and run what a user runs.

    python3 scripts/install_check.py [--wheel WHEEL | --source DIR] [--extras otlp,collector] [--floors]
                                     [--venv DIR [--reuse]] [--sdist SDIST]

The environment is created without system site-packages, outside the checkout (a temporary folder unless
``--venv`` names one), and the package is installed with pip from the wheel (or the source folder) with
only the extras asked for: no dev extras, no pins. ``--floors`` installs the lowest versions pyproject.toml
allows instead (every ``>=X`` of the dependencies and the chosen extras becomes ``==X``). The commands then
run from an empty temporary folder:

* ``pip check``; ``run-identity --version`` and ``python -m run_identity --version``;
* ``keygen``, and ``keygen`` again (refused without ``--force``);
* the main job, ``run-identity demo --out demo``, and ``run-identity verify`` of its export;
* ``run-identity collector --print-config-dir`` names the shipped configuration inside the environment;
* with ``collector``: ``demo --collector`` through rotel, ``verify`` of what arrived, and ``run-identity
  collector`` started and stopped (skipped, saying so, where rotel cannot run); without it, ``demo
  --collector`` fails with one line naming the extra;
* with ``otlp``: the README's library snippet, as written, sends its run to ``run-identity serve``, whose
  verification summary must pass.

``--wheel`` also checks that the wheel holds the collector configuration and ``__main__``, ``--sdist`` that
the sdist holds the sources and the configuration. ``--reuse`` keeps a ``--venv`` whose dependencies were
installed for the same pyproject.toml, extras, floors and Python, and only reinstalls the package (fast, for
the test suite). Exit status 0 when every check passed, 1 otherwise; each check prints one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
STAMP = ".install-check"


def _load_pyproject() -> dict[str, object]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def floor_pins(extras: list[str]) -> list[str]:
    """``name==X`` for every ``>=X`` in the dependencies and the given extras (exact pins stay as they are)."""
    project = _load_pyproject()["project"]
    assert isinstance(project, dict)
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*([^;]*)", requirement)
        if match is None or match.group(1) == "ai-run-identity":
            continue
        name = match.group(1).lower()
        for spec in match.group(3).split(","):
            spec = spec.strip()
            if spec.startswith(">="):
                pins[name] = f"{name}=={spec[2:].strip()}"
            elif spec.startswith("==") and name not in pins:
                pins[name] = f"{name}{spec}"
    return sorted(pins.values())


class Checks:
    """Runs commands in the environment, one line per check; remembers failures."""

    def __init__(self, env_dir: Path, workdir: Path) -> None:
        self.bin = env_dir / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"
        self.workdir = workdir
        self.failures: list[str] = []
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "RUN_IDENTITY_", "PYTHON")) and k != "VIRTUAL_ENV"
        }
        # The environment's bin folder is not on PATH: commands are called by their path, as printed.
        self.env["PATH"] = os.environ.get("PATH", os.defpath)

    def run(self, what: str, argv: list[str], *, expect: int = 0, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            argv, cwd=self.workdir, env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        took = time.monotonic() - started
        if done.returncode == expect:
            print(f"ok    {what} ({took:.1f} s)", flush=True)
        else:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-8:]
            self.fail(f"{what}: exit {done.returncode}, expected {expect}" + "".join(f"\n        {t}" for t in tail))
        return done

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        if ok:
            print(f"ok    {what}", flush=True)
        else:
            self.fail(f"{what}{': ' + detail if detail else ''}")

    def fail(self, text: str) -> None:
        print(f"FAIL  {text}", flush=True)
        self.failures.append(text)

    def cli(self, *args: str) -> list[str]:
        return [str(self.bin / "run-identity"), *args]


def _stamp(extras: list[str], floors: bool) -> str:
    h = hashlib.sha256(PYPROJECT.read_bytes())
    h.update(json.dumps([sorted(extras), floors, sys.version]).encode())
    return h.hexdigest()


def prepare_env(env_dir: Path, target: str, extras: list[str], *, floors: bool, reuse: bool) -> None:
    """Create the environment and install ``target`` (a wheel or a source folder) with ``extras``."""
    spec = f"{target}[{','.join(extras)}]" if extras else target
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install"]
    stamp, want = env_dir / STAMP, _stamp(extras, floors)
    if reuse and python.exists() and stamp.exists() and stamp.read_text() == want:
        print(f"setup reusing {env_dir}; reinstalling the package only", flush=True)
        subprocess.run([*pip, "-q", "--no-deps", "--force-reinstall", target], check=True, cwd=env_dir)
        return
    print(f"setup creating {env_dir} (no system site-packages)", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True, system_site_packages=False).create(env_dir)
    command = [*pip, "-q"]
    if floors:
        pins = floor_pins(extras)
        constraints = env_dir / "floors.txt"
        constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
        print("setup lowest allowed versions: " + " ".join(pins), flush=True)
        command += ["-c", str(constraints)]
    print(f"setup pip install {spec}", flush=True)
    subprocess.run([*command, spec], check=True, cwd=env_dir)
    stamp.write_text(want)


def check_wheel(checks: Checks, wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("rotel.env", "rotel_manifest_router.py", "otelcol-contrib.yaml", "README.md"):
        checks.check(f"wheel holds collector_config/{name}", f"run_identity/collector_config/{name}" in names)
    checks.check("wheel holds run_identity/__main__.py and py.typed",
                 {"run_identity/__main__.py", "run_identity/py.typed"} <= names)


def check_sdist(checks: Checks, sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in ("pyproject.toml", "README.md", "src/run_identity/__main__.py",
                 "src/run_identity/collector_config/rotel.env", "proto/run_identity/v1/manifest.proto"):
        checks.check(f"sdist holds {name}", name in names)


def _installed_versions(checks: Checks) -> str:
    done = subprocess.run([str(checks.python), "-m", "pip", "list", "--format=json"], capture_output=True,
                          text=True, check=False, env=checks.env)
    wanted = ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-proto", "protobuf", "cryptography",
              "opentelemetry-exporter-otlp-proto-http", "rotel", "orjson")
    try:
        found = {p["name"].lower(): p["version"] for p in json.loads(done.stdout)}
    except ValueError:
        return "?"
    return " ".join(f"{name}={found[name]}" for name in wanted if name in found)


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index("## Using the library\n"):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None, "README.md: no python block under 'Using the library'"
    return match.group(1)


def check_otlp_snippet(checks: Checks) -> None:
    """Run the README snippet against `run-identity serve` started from the environment."""
    snippet = readme_snippet()
    (checks.workdir / "snippet.py").write_text(snippet, encoding="utf-8")
    if re.search(r"^import openai|^from openai", snippet, re.M):
        # The snippet declares an OpenAI call as a library user would, with the openai client installed.
        pip = [str(checks.python), "-m", "pip", "--disable-pip-version-check", "install", "-q", "openai"]
        checks.run("pip install openai (the README snippet's client)", pip)
    serve = subprocess.Popen(
        checks.cli("serve", "--port", "0", "--out", "received", "--keyring", "keys/trusted-keys.jwks.json"),
        cwd=checks.workdir, env=checks.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert serve.stdout is not None
        first = serve.stdout.readline()
        match = re.search(r"listening on (http://[^\s,]+)", first)
        if match is None:
            checks.fail(f"run-identity serve did not start: {first.strip()}")
            return
        checks.run("README library snippet -> run-identity serve",
                   [str(checks.python), "snippet.py"],
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": match.group(1), "OPENAI_API_KEY": "sk-not-sent"})
        time.sleep(0.5)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            output, _ = serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            output, _ = serve.communicate()
    checks.check("serve received the snippet's manifest and it verified",
                 serve.returncode == 0 and "verification: passed: 1 runs" in output, output.strip())


def check_collector_command(checks: Checks) -> None:
    """`run-identity collector` starts rotel and serve on free ports, and stops cleanly on SIGTERM."""
    argv = checks.cli("collector", "--grpc-port", "0", "--http-port", "0", "--out", "collected", "--workdir", "rotel")
    process = subprocess.Popen(argv, cwd=checks.workdir, env=checks.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith(("serve:", "run-identity: error")):
                break
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
    output = "\n".join(lines) + "\n" + rest
    checks.check("run-identity collector starts rotel and serve, stops on SIGTERM",
                 process.returncode == 0 and "rotel: OTLP gRPC" in output and "received:" in output, output)


def run_checks(checks: Checks, extras: list[str]) -> None:
    checks.run("pip check", [str(checks.python), "-m", "pip", "check"])
    print(f"info  {_installed_versions(checks)}", flush=True)
    checks.run("run-identity --version", checks.cli("--version"))
    checks.run("python -m run_identity --version", [str(checks.python), "-m", "run_identity", "--version"])
    checks.run("run-identity keygen --out keys", checks.cli("keygen", "--out", "keys"))
    refused = checks.run("keygen again is refused without --force", checks.cli("keygen", "--out", "keys"), expect=1)
    checks.check("  ... in one line naming --force", refused.stderr.count("\n") == 1 and "--force" in refused.stderr)
    demo = checks.run("run-identity demo --out demo", checks.cli("demo", "--out", "demo"))
    checks.check("  ... all runs verified", "PASS: all 12 runs verified." in demo.stdout)
    checks.run("run-identity verify demo/export", checks.cli("verify", "demo/export", "--keyring",
                                                            "demo/keys/trusted-keys.jwks.json"))
    # A stray configuration in the current folder must not be picked up (rotel would run its Python).
    stray = checks.workdir / "collector-config"
    stray.mkdir(exist_ok=True)
    (stray / "rotel.env").write_text("ROTEL_OTLP_WITH_LOGS_PROCESSOR=rotel_manifest_router.py\n")
    (stray / "rotel_manifest_router.py").write_text("raise SystemExit('loaded from the current folder')\n")
    where = checks.run("run-identity collector --print-config-dir", checks.cli("collector", "--print-config-dir"))
    config = Path(where.stdout.strip())
    checks.check("  ... the package's own configuration, inside the environment",
                 config.name == "collector_config" and (config / "rotel.env").is_file()
                 and str(checks.bin.parent.resolve()) in str(config.resolve()), str(config))
    if "collector" in extras:
        probe = subprocess.run(
            [
                str(checks.python),
                "-c",
                "from run_identity.pipeline.collector import rotel_version; print(rotel_version())",
            ],
            cwd=checks.workdir, env=checks.env, capture_output=True, text=True, check=False,
        )
        if probe.returncode != 0:
            print(f"skip  demo --collector: rotel cannot run here: {probe.stderr.strip().splitlines()[-1:]}")
        else:
            demo = checks.run("run-identity demo --collector", checks.cli("demo", "--collector", "--out", "democ"))
            checks.check("  ... all runs verified", "PASS: all 12 runs verified." in demo.stdout)
            checks.run("run-identity verify democ/collected", checks.cli(
                "verify", "democ/collected", "--keyring", "democ/keys/trusted-keys.jwks.json"))
            check_collector_command(checks)
    else:
        missing = checks.run("demo --collector without the extra fails", checks.cli(
            "demo", "--collector", "--out", "democ"), expect=1)
        checks.check("  ... in one line naming the extra", missing.stderr.count("\n") == 1
                     and "ai-run-identity[collector]" in missing.stderr, missing.stderr)
    if "otlp" in extras:
        check_otlp_snippet(checks)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help="the wheel to install (default: the checkout's sources)")
    source.add_argument("--source", type=Path, default=ROOT, help="a source folder to install (default: here)")
    parser.add_argument("--sdist", type=Path, help="also check this sdist's contents")
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. otlp,collector")
    parser.add_argument("--floors", action="store_true", help="install the lowest versions pyproject allows")
    parser.add_argument("--venv", type=Path, help="environment folder (default: a temporary one, removed)")
    parser.add_argument("--reuse", action="store_true", help="keep --venv's dependencies when still valid")
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    target = str((args.wheel or args.source).resolve())
    label = Path(target).name + (f"[{','.join(extras)}]" if extras else "") + (" at the floors" if args.floors else "")
    print(f"== install check: {label}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="run-identity-install-") as tmp:
        env_dir = args.venv.resolve() if args.venv else Path(tmp) / "venv"
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        prepare_env(env_dir, target, extras, floors=args.floors, reuse=args.reuse)
        checks = Checks(env_dir, workdir)
        if args.wheel:
            check_wheel(checks, args.wheel)
        if args.sdist:
            check_sdist(checks, args.sdist)
        run_checks(checks, extras)
    status = "FAILED" if checks.failures else "passed"
    print(f"== {label}: {status} ({len(checks.failures)} failures, {time.monotonic() - started:.0f} s)", flush=True)
    if args.venv is None:
        shutil.rmtree(env_dir, ignore_errors=True)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
