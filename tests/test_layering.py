"""The package's layers (docs/architecture in README "Layout"): folders import only the layers below them.

Bottom up: ``core`` (what docs/spec.md defines) <- ``otel`` and ``verify`` <- ``pipeline`` and ``integrations``
<- the top-level ``demo``, ``demo_runs``, ``zero_code`` <- ``cli``. Every import statement counts, including
imports inside functions and under ``TYPE_CHECKING``. No module imports another folder's private module (a
name starting with ``_``), nor the package root ``run_identity`` (its facade re-exports from the layers; a
module importing it would import upward).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "run_identity"

# layer -> the layers it may import (itself included)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "otel": {"core", "otel"},
    "verify": {"core", "verify"},
    "pipeline": {"core", "otel", "verify", "pipeline"},
    "integrations": {"core", "otel", "integrations"},
    "top": {"core", "otel", "verify", "pipeline", "integrations", "top"},
    "cli": {"core", "otel", "verify", "pipeline", "integrations", "top", "cli"},
}
FOLDERS = {"core", "otel", "verify", "pipeline", "integrations", "cli"}
TOP_MODULES = {"demo", "demo_runs", "zero_code"}
# The package root and ``python -m run_identity`` sit above everything: they may import any layer.
EXEMPT = {("__init__",), ("__main__",)}


def _module_parts(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts
    return parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts


def _layer(parts: tuple[str, ...]) -> str:
    if parts[0] in FOLDERS:
        return parts[0]
    if parts[0] in TOP_MODULES:
        return "top"
    raise AssertionError(f"run_identity.{'.'.join(parts)} belongs to no layer: put it in one of {sorted(FOLDERS)}")


def _imports(path: Path, parts: tuple[str, ...]) -> list[tuple[int, str]]:
    """Every ``run_identity...`` module a file imports, as (line, dotted name below run_identity)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[int, str]] = []
    package = ("run_identity", *parts) if path.name == "__init__.py" else ("run_identity", *parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "run_identity"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module or ""
            if module.split(".")[0] != "run_identity":
                continue
            # ``from run_identity.x import y`` may name a submodule y: count it as an import of x.y
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                sub = PACKAGE.joinpath(*candidate.split(".")[1:])
                found.append((node.lineno, candidate if sub.with_suffix(".py").exists() or sub.is_dir() else module))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_proto" not in p.parts and "collector_config" not in p.parts)


def _file_violations(path: Path, parts: tuple[str, ...]) -> list[str]:
    layer = _layer(parts)
    where = ".".join(("run_identity", *parts))
    problems: list[str] = []
    for line, module in sorted(set(_imports(path, parts))):
        target = tuple(module.split(".")[1:])
        if not target:
            problems.append(f"{where}:{line}: imports the package root run_identity (an upward import)")
            continue
        if target in EXEMPT:
            problems.append(f"{where}:{line}: imports run_identity.{'.'.join(target)}")
            continue
        target_layer = _layer(target)
        if target_layer not in ALLOWED[layer]:
            problems.append(f"{where}:{line}: layer {layer} imports {module} (layer {target_layer})")
        if target[0] != parts[0]:
            private = [p for p in target if p.startswith("_")]
            if private:
                problems.append(f"{where}:{line}: imports {module}, a private module of another folder")
    return problems


def _violations() -> list[str]:
    problems: list[str] = []
    for path in _sources():
        parts = _module_parts(path)
        if parts not in EXEMPT:
            problems += _file_violations(path, parts)
    return problems


def test_every_module_belongs_to_a_layer() -> None:
    for path in _sources():
        parts = _module_parts(path)
        if parts not in EXEMPT:
            _layer(parts)


def test_layers_import_only_downward_and_no_private_module_of_another_folder() -> None:
    problems = _violations()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("layer", sorted(FOLDERS))
def test_each_layer_is_a_folder(layer: str) -> None:
    assert (PACKAGE / layer / "__init__.py").is_file()


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The scan itself must be able to fail: upward and private imports written into a core module are found.
    probe = tmp_path / "probe.py"
    probe.write_text("from run_identity.otel import processor\nfrom run_identity.verify import _runs\nimport run_identity\n")
    problems = _file_violations(probe, ("core", "probe"))
    assert "run_identity.core.probe:1: layer core imports run_identity.otel.processor (layer otel)" in problems
    assert "run_identity.core.probe:2: imports run_identity.verify._runs, a private module of another folder" in problems
    assert "run_identity.core.probe:3: imports the package root run_identity (an upward import)" in problems
