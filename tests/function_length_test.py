"""No function in train/, export/ or serving/ is longer than 80 lines, except those listed below with the reason.

A function's length is its source lines from ``def`` (decorators excluded) to
its last line, nested functions included. Split a long function by concern
rather than adding it here; an entry that no longer applies fails the test too,
so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("train", "export", "serving")
MAX_LINES = 80

# "path::qualified.name": why it may stay longer than MAX_LINES.
EXEMPT: dict[str, str] = {}


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def long_functions(root: Path = ROOT) -> dict[str, int]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for name, lines in _functions(tree):
                if lines > MAX_LINES:
                    found[f"{path.relative_to(root).as_posix()}::{name}"] = lines
    return found


def test_no_function_is_longer_than_80_lines_unless_exempt():
    found = long_functions()
    unexplained = {name: lines for name, lines in found.items() if name not in EXEMPT}
    assert not unexplained, f"functions over {MAX_LINES} lines (split them by concern): {unexplained}"


def test_every_exemption_is_still_needed():
    stale = sorted(set(EXEMPT) - set(long_functions()))
    assert not stale, f"no longer over {MAX_LINES} lines (or gone): remove from EXEMPT: {stale}"


def test_a_long_function_is_found(tmp_path: Path):
    package = tmp_path / "serving"
    package.mkdir()
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_LINES))  # def + 80 lines: 81
    (package / "long.py").write_text(f"class A:\n    def run(self):\n{body}")
    (package / "short.py").write_text("def f():\n    return 1\n")
    assert long_functions(tmp_path) == {"serving/long.py::A.run": MAX_LINES + 1}
