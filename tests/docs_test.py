"""Every command on the docs' getting-started page is run by `make demo` or by CI.

The page (docs/getting-started.md) lists its commands in fenced ``bash`` blocks. Each command there,
after dropping comments and leading ``VAR=value`` assignments, must be either

- a command that `make demo` runs: its recipe lines as `make -n demo` prints them, with
  ``.venv/bin/python`` shown as ``python`` (the page's readers have the venv activated), or
- ``make TARGET`` where TARGET is `demo`, a prerequisite of it (recursively, from the Makefile), or a
  target that `.ci/run` runs (its TARGETS list: `make test`, `make docs-check`, ...).

A command that neither runs belongs on another page. The site itself is built with
`mkdocs build --strict` by `make docs-check` (.ci/run), which fails on a broken link or a missing page.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def page_commands(markdown: str) -> list[str]:
    """The commands of the page's ``bash`` blocks, one per logical line, without comments or env assignments."""
    commands = []
    for block in FENCE.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and ASSIGNMENT.match(words[0]):
                words.pop(0)
            if words:
                commands.append(" ".join(words))
    return commands


def ci_make_targets(ci_script: str) -> set[str]:
    """The targets .ci/run makes: its ``TARGETS=(...)`` list (what it runs with no arguments) and
    any literal ``make TARGET`` line."""
    targets = set()
    listed = re.search(r"^TARGETS=\(([^)]*)\)", ci_script, re.MULTILINE)
    if listed:
        targets |= set(listed.group(1).split())
    for match in re.finditer(r"^\s*make((?:\s+[A-Za-z0-9][A-Za-z0-9_.-]*)+)\s*(?:#.*)?$", ci_script, re.MULTILINE):
        targets |= set(match.group(1).split())
    return targets


def prerequisites(makefile: str, target: str) -> set[str]:
    """``target`` and every target it depends on, recursively (rule lines ``name: deps``)."""
    rules = {}
    for match in re.finditer(r"^([A-Za-z0-9_.$()/-]+):(?!=)\s*([^\n#]*)", makefile, re.MULTILINE):
        rules.setdefault(match.group(1), match.group(2).split())
    seen, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(rules.get(name, []))
    return seen


def _defaults_env() -> dict[str, str]:
    """The environment without what would change the Makefile's defaults (``VAR ?= ...``, MAKEFLAGS):
    the page shows `make demo` as a new user runs it, also when `make test RUN=x` runs this test."""
    makefile = (ROOT / "Makefile").read_text()
    overridable = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\?=", makefile, re.MULTILINE))
    drop = overridable | {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def demo_recipe_commands() -> set[str]:
    """What `make demo` runs, as `make -n demo` prints it (nothing is executed)."""
    dry = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=True,
                         env=_defaults_env())
    commands = set()
    for line in dry.stdout.splitlines():
        words = shlex.split(line.strip())
        if words and words[0] == ".venv/bin/python":
            words[0] = "python"
        if words:
            commands.add(" ".join(words))
    return commands


def unrun(commands: list[str], demo_commands: set[str], make_targets: set[str]) -> list[str]:
    """The commands that are neither run by `make demo` nor a make target that demo or CI runs."""
    bad = []
    for command in commands:
        words = command.split()
        if words[0] == "make":
            targets = [w for w in words[1:] if "=" not in w]
            if targets and all(t in make_targets for t in targets):
                continue
        elif command in demo_commands:
            continue
        bad.append(command)
    return bad


def _allowed_targets() -> set[str]:
    return prerequisites((ROOT / "Makefile").read_text(), "demo") | ci_make_targets((ROOT / ".ci" / "run").read_text())


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_getting_started_command_is_run_by_make_demo_or_ci():
    commands = page_commands(PAGE.read_text(encoding="utf-8"))
    assert "make demo" in commands and "make test" in commands, commands
    assert unrun(commands, demo_recipe_commands(), _allowed_targets()) == []


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_check_catches_a_command_nothing_runs():
    page = "```bash\nmake demo  # ok\nmake serve\nFOO=1 python -m train --preset reference-basic\n```\n"
    commands = page_commands(page)
    assert commands == ["make demo", "make serve", "python -m train --preset reference-basic"]
    assert unrun(commands, demo_recipe_commands(), _allowed_targets()) == ["make serve", "python -m train --preset reference-basic"]


def test_make_demo_runs_what_the_page_says():
    demo = prerequisites((ROOT / "Makefile").read_text(), "demo")
    assert {"demo", "train", "export", "setup"} <= demo
    assert {"test", "docs-check"} <= ci_make_targets((ROOT / ".ci" / "run").read_text())
    assert ci_make_targets("make test\nTARGETS=(a b)\n  make \"$target\" 2>&1\n") == {"test", "a", "b"}


def test_the_readmes_links_point_at_files_that_exist():
    """README.md is not part of the site, so `mkdocs build --strict` does not check its links; this does."""
    links = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    local = [link.split("#")[0] for link in links if "://" not in link and not link.startswith("#")]
    assert local and [path for path in local if not (ROOT / path).exists()] == []
