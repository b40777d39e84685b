"""Test support stays out of the runtime: no runtime module imports pytest or ``testing``; the wheel leaves
``testing`` out; ``testing`` imports no ``loadtest`` (nothing but loadtest and tests imports it)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("common", "train", "export", "serving", "client", "loadtest")
TEST_ONLY = {"pytest", "testing"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_runtime_modules_import_no_test_support():
    offenders = {}
    for package in RUNTIME:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.endswith("_test.py"):
                continue
            found = _imported_roots(path) & TEST_ONLY
            if found:
                offenders[path.relative_to(ROOT).as_posix()] = sorted(found)
    assert not offenders, f"runtime modules importing test support: {offenders}"


def test_the_wheel_holds_the_runtime_packages_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "testing" not in project["tool"]["setuptools"]["packages"]


def test_test_support_imports_no_load_test():
    offenders = [path.relative_to(ROOT).as_posix() for path in sorted((ROOT / "testing").rglob("*.py"))
                 if "loadtest" in _imported_roots(path)]
    assert not offenders, f"test support importing loadtest: {offenders}"
