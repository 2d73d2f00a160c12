"""The package as users install it: a clean virtual environment, pip, no dev extras, the commands users run.

Each test runs ``scripts/install_check.py`` (which .ci/run also runs, there with fresh environments and the
lowest allowed dependency versions too). The environments live in ``.pkgtest/`` and are reused while
pyproject.toml is unchanged: only the package is reinstalled, so the suite stays fast after the first run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".pkgtest"


def _install_check_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_check", ROOT / "scripts" / "install_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "install_check.py"), *args],
        capture_output=True, text=True, timeout=900, check=False,
    )
    report = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("WARNING: Location"))
    assert done.returncode == 0, report + "\n" + done.stderr[-3000:]
    assert "FAIL" not in report


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = out.glob("*.whl")
    return built


def test_floor_pins_follow_pyproject() -> None:
    """--floors pins each dependency (and each chosen extra's) at its lowest allowed version."""
    pins = _install_check_module().floor_pins(["otlp"])
    assert "opentelemetry-sdk==1.43" in pins and "opentelemetry-proto==1.43" in pins
    assert "opentelemetry-exporter-otlp-proto-common==1.43" in pins and "protobuf==7.35.1" in pins
    assert "cryptography==42" in pins and "opentelemetry-exporter-otlp-proto-http==1.43" in pins
    assert not any(pin.startswith(("rotel", "pytest", "ai-run-identity")) for pin in pins)


@pytest.mark.slow
def test_bare_install_from_the_checkout() -> None:
    """`pip install <checkout>` without extras: version, keygen, demo, verify, the shipped collector config."""
    _check("--source", str(ROOT), "--venv", str(CACHE / "bare-source"), "--reuse")


@pytest.mark.slow
def test_the_wheel_in_a_clean_environment(wheel: Path) -> None:
    """The built wheel, no extras, into a new environment: the same commands, and a missing extra is one line."""
    _check("--wheel", str(wheel))


@pytest.mark.slow
def test_the_wheel_with_the_otlp_extra(wheel: Path) -> None:
    """With [otlp], the README's library snippet sends its run to run-identity serve, where it verifies."""
    _check("--wheel", str(wheel), "--extras", "otlp", "--venv", str(CACHE / "otlp"), "--reuse")


@pytest.mark.slow
@pytest.mark.collector
def test_the_wheel_with_the_collector_extra(wheel: Path) -> None:
    """With [collector], `run-identity demo --collector` runs through rotel from an empty folder and verifies."""
    _check("--wheel", str(wheel), "--extras", "collector", "--venv", str(CACHE / "collector"), "--reuse")


@pytest.mark.slow
@pytest.mark.collector
def test_the_wheel_at_the_lowest_allowed_versions(wheel: Path) -> None:
    """With every dependency at the floor pyproject.toml states (OpenTelemetry 1.43, protobuf 7.35.1,
    cryptography 42...), the demo, verify, demo --collector and the README snippet all pass."""
    _check("--wheel", str(wheel), "--extras", "otlp,collector", "--floors", "--venv", str(CACHE / "floors"), "--reuse")
