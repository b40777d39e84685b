"""Importing the client changes nothing in the host process (an application embeds it).

Run in a fresh interpreter from the repository (the thin wheel's twin of this check is in
client/wheel_test.py): ``os.environ``, the root logger's handlers and level and
``sys.meta_path`` are the same before and after importing every public name, the CLI
module and the credentials helpers, and neither TensorFlow nor ``common`` was imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, logging, os, sys
env, root = dict(os.environ), logging.getLogger()
handlers, level, meta_path, path_hooks = list(root.handlers), root.level, list(sys.meta_path), list(sys.path_hooks)
import {package}
from {package} import *
from {package} import RecommenderClient, AsyncRecommenderClient, auth, cli, messages
client = RecommenderClient("127.0.0.1:1")  # a channel, not a connection
client.close()
print(json.dumps({{
    "environ": sorted(set(os.environ.items()) ^ set(env.items())),
    "root_handlers": root.handlers == handlers,
    "root_level": root.level == level,
    "meta_path": sys.meta_path == meta_path,
    "path_hooks": sys.path_hooks == path_hooks,
    "tensorflow": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving", "keras", "tf_keras")),
    "common": sorted(m for m in sys.modules if m.split(".")[0] == "common"),
}}))
"""


def probe(python: str, package: str, cwd: Path, env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [python, "-c", PROBE.format(package=package)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


NO_CHANGE = {"environ": [], "root_handlers": True, "root_level": True, "meta_path": True, "path_hooks": True,
             "tensorflow": [], "common": []}  # fmt: skip


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "MOVIELENS_VERBOSE")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONPATH": str(REPO_ROOT), **extra}


def test_importing_the_client_has_no_side_effects():
    assert probe(sys.executable, "client", REPO_ROOT, _clean_env()) == NO_CHANGE


def test_an_application_with_keras_3_can_import_the_client():
    """TF_USE_LEGACY_KERAS=0 used to raise RuntimeError on import (common/__init__.py); now it is not ours to judge."""
    assert probe(sys.executable, "client", REPO_ROOT, _clean_env(TF_USE_LEGACY_KERAS="0")) == NO_CHANGE
