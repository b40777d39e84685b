"""What every command line shares: plain help with --verbose, no TensorFlow noise, the same exit codes.

Exit codes (common/cli.py): 0 ok, 1 the work failed, 2 usage only, 130 interrupted. Each CLI's
own tests check its codes (train/main_test.py, export/main_test.py, client/cli_test.py,
loadtest/runner_test.py, loadtest/local_test.py); the server's are here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import quiet

REPO_ROOT = Path(__file__).resolve().parent.parent
NOISE = ("I0000", "W0000", "E0000", "WARNING: All log messages", "WARNING:tensorflow", "WARNING:absl")
CLIS = [
    "train.__main__", "export.__main__", "serving.__main__", "serving.cluster", "client.cli",
    "loadtest.runner", "loadtest.local", "loadtest.demo", "loadtest.bench",
]


def _quiet_env() -> dict[str, str]:
    """The environment of a fresh shell: none of the variables this test process already set."""
    env = {k: v for k, v in os.environ.items() if k not in (*quiet.QUIET_ENV, quiet.ENV_VAR)}
    return env


@pytest.mark.parametrize("module", CLIS)
def test_help_is_plain_text_and_offers_verbose(module, capsys):
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "--verbose" in text


def test_tensorflow_prints_nothing_of_its_own_by_default():
    # Import and first device use (where a machine without a GPU driver logs the failed cuInit).
    code = "import common.tf_setup, tensorflow as tf; import logging; tf.constant(1) + 1; tf.get_logger().warning('noise')"
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=_quiet_env(),
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""


def test_verbose_leaves_tensorflow_logging_alone():
    code = "import common.tf_setup, os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), common.quiet.is_verbose())"
    for extra, expected in (({}, "3 False"), ({quiet.ENV_VAR: "1"}, "None True")):
        completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**_quiet_env(), **extra},
                                   capture_output=True, text=True, timeout=60)
        assert completed.stdout.strip() == expected


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["python", "-m", "train", "--run-name", "x", "--verbose"], True),
        (["python", "-u", "-m", "loadtest.demo", "--verbose"], True),
        (["python", "-m", "train", "--run-name", "x"], False),
        (["python", "-m", "pytest", "--verbose"], False),  # not one of ours
        (["python", "script.py", "--verbose"], False),
    ],
)
def test_verbose_on_a_project_command_line(argv, verbose):
    assert quiet.asked_on_command_line(argv) is verbose


def test_serving_exit_codes_bad_config_1_usage_2(tmp_path, capsys):
    completed = subprocess.run(
        [sys.executable, "-m", "serving", "--model_config_file", str(tmp_path / "missing.config")],
        cwd=REPO_ROOT, env=_quiet_env(), capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("serving: "), completed.stderr
    assert not any(line.startswith(NOISE) for line in completed.stderr.splitlines())

    from serving.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main([])  # neither --model_base_path nor --model_config_file
    assert exited.value.code == 2
    assert "give --model_base_path or --model_config_file" in capsys.readouterr().err
