"""The runner for TF Serving's own tests builds what they expect; the suite itself runs in make conformance-upstream."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from testing import upstream_conformance as upstream


def test_wrapper_execs_the_given_python_with_every_argument(tmp_path: Path):
    script = tmp_path / "tensorflow_model_server"
    script.write_text(upstream.wrapper_script(python="/bin/echo", repo_root=tmp_path))
    script.chmod(0o755)
    out = subprocess.run([str(script), "--port=1", "--grpc_channel_arguments=a=1,b=x y"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "-m serving --port=1 --grpc_channel_arguments=a=1,b=x y\n"
    assert "exec " in script.read_text()  # the tests SIGKILL the PID they started: it must be the server


def test_test_srcdir_holds_the_binary_and_the_testdata(tmp_path: Path):
    suite = tmp_path / "suite"
    (suite / "tensorflow_serving" / "servables" / "tensorflow" / "testdata").mkdir(parents=True)
    root = upstream.build_test_srcdir(suite, tmp_path / "srcdir")
    binary = root / upstream.BINARY
    assert os.access(binary, os.X_OK)
    assert (root / "tf_serving/tensorflow_serving/servables/tensorflow/testdata").is_dir()


def test_suite_location_is_overridable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(upstream.SUITE_ENV, str(tmp_path))
    assert upstream.suite_dir() == tmp_path.resolve()
    monkeypatch.delenv(upstream.SUITE_ENV)
    assert upstream.suite_dir() == (upstream.REPO_ROOT.parent / "shared" / "tfserving-tests").resolve()


def test_every_skipped_name_is_a_test_of_the_suite():
    test_file = upstream.suite_dir() / upstream.TEST_FILE
    if not test_file.is_file():
        pytest.skip(f"{test_file} is not here")
    defined = set(re.findall(r"^  def (test\w+)\(", test_file.read_text(), re.MULTILINE))
    assert set(upstream.SKIPPED) <= defined
