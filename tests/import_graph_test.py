"""The import graph of the project's runtime modules: no cycles, and packages import only downward.

Every ``.py`` file of the packages is parsed with ``ast`` (nothing is imported), and every
``import`` statement counts, also one inside a function: a deferred import is still a dependency.
Test modules (``*_test.py``, ``conftest.py``, ``tests/``) are left out; they may import anything.

The layers, lowest first (``a <- b``: b may import a)::

    client.contract, client.help_text  <-  common  <-  train  <-  export
                                           common  <-  serving
    client imports nothing of the project outside client/; loadtest may import everything, and
    nothing imports loadtest (the load test, the benchmarks and their report writers).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "train", "export", "serving", "client", "loadtest")

# Which project packages each package may import (besides itself).
ALLOWED = {
    "common": {"client"},  # only client.contract and client.help_text, which import nothing but the standard library
    "train": {"common"},
    "export": {"common", "train"},
    "serving": {"common"},
    "client": set(),
    "loadtest": {"common", "train", "export", "serving", "client"},
}


def _is_test(path: Path) -> bool:
    return path.name.endswith("_test.py") or path.name == "conftest.py"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Runtime module name -> file, for every package in PACKAGES."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if not _is_test(path):
                modules[module_name(path, root)] = path
    return modules


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> list[list[str]]:
    """For each name an import statement brings in, the dotted names it may be, most specific first.

    ``from train import data`` is the module ``train.data`` if there is one, else the name ``data``
    of ``train``; relative imports are resolved against ``module``.
    """
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names.extend([f"{prefix}.{alias.name}", prefix] for alias in node.names)
    return names


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Runtime module -> the project modules it imports (the longest project module each name names)."""
    modules = project_modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for candidates in _imported_names(tree, module, path.name == "__init__.py"):
            name = next((c for c in candidates if c in modules), candidates[-1])
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        top = module.split(".")[0]
        packages.setdefault(top, set()).update(t.split(".")[0] for t in targets if t.split(".")[0] != top)
    return packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (or a self-loop), each sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_violations(graph: dict[str, set[str]], allowed=ALLOWED) -> list[str]:
    """``module -> imported module`` for each import of a package its layer may not import."""
    wrong = []
    for module, targets in sorted(graph.items()):
        top = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != top and other not in allowed.get(top, set()):
                wrong.append(f"{module} -> {target}")
    return wrong


def problems(graph: dict[str, set[str]]) -> list[str]:
    """Every rule this file checks, as readable lines (empty: the graph is fine)."""
    found = [f"module cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    found += [f"package cycle: {' <-> '.join(c)}" for c in cycles(package_graph(graph))]
    found += [f"upward or sideways import: {line}" for line in layer_violations(graph)]
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_known_imports(graph):
    # A parser that finds nothing would pass every rule below.
    assert "train.tables" in graph["train.layouts"]
    assert "train.data" in graph["train.splits"]  # `from train.data import ...`
    assert "client.protocol" in graph["client.base"]  # a relative import, `from . import protocol`
    assert "export.exporter" in graph["loadtest.scale_bench"]  # a deferred import counts


def test_no_module_cycle(graph):
    assert cycles(graph) == []


def test_no_package_cycle(graph):
    assert cycles(package_graph(graph)) == []


def test_packages_import_only_their_lower_layers(graph):
    assert layer_violations(graph) == []


def test_common_takes_only_the_contract_and_the_help_text_from_the_client(graph):
    # The served API declared once, and the help text of every command line: both stdlib-only, so
    # nothing that imports common (train, serving, export) loads gRPC or the rest of the client.
    assert {t for m, targets in graph.items() if m.startswith("common") for t in targets
            if t.startswith("client")} <= {"client.contract", "client.help_text"}


def test_serving_and_client_import_neither_train_nor_export(graph):
    for package in ("serving", "client"):
        assert not package_graph(graph).get(package, set()) & {"train", "export"}, package


def test_nothing_imports_loadtest(graph):
    importers = [m for m, targets in graph.items() if not m.startswith("loadtest")
                 for t in targets if t.startswith("loadtest")]
    assert importers == []


def test_the_client_imports_nothing_of_the_project_outside_client(graph):
    outside = [f"{m} -> {t}" for m, targets in graph.items() if m.startswith("client")
               for t in targets if not t.startswith("client")]
    assert outside == []


# --- the checks fail when a rule is broken ----------------------------------------------------


def test_cycles_finds_a_cycle_in_a_synthetic_graph():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize("edge, expected", [
    (("common.contract", "train.data"), "package cycle: common <-> train"),  # common imports train
    (("train.tables", "train.layouts"), "module cycle: "),  # a cycle inside train
    (("train.data", "export.exporter"), "upward or sideways import: train.data -> export.exporter"),
    (("serving.config", "train.data"), "upward or sideways import: serving.config -> train.data"),
    (("client.client", "common.contract"), "upward or sideways import: client.client -> common.contract"),
    (("export.evaluate", "loadtest.machine"), "upward or sideways import: export.evaluate -> loadtest.machine"),
])
def test_an_added_import_breaking_a_rule_is_reported(graph, edge, expected):
    assert problems(graph) == []
    broken = {module: set(targets) for module, targets in graph.items()}
    broken[edge[0]].add(edge[1])
    reported = [line for line in problems(broken) if line.startswith(expected)]
    named = [name.split(".")[0] if expected.startswith("package") else name for name in edge]
    assert reported and all(name in reported[0] for name in named), problems(broken)


def test_a_cycle_written_into_source_files_is_found(tmp_path):
    for name, text in {"common/__init__.py": "", "common/a.py": "from common import b\n",
                       "common/b.py": "def f():\n    from .a import x\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for package in PACKAGES[1:]:
        (tmp_path / package).mkdir()
    assert cycles(import_graph(tmp_path)) == [["common.a", "common.b"]]
