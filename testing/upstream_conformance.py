"""``make conformance-upstream``: TF Serving's own model-server tests, unchanged, against ``python -m serving``.

The local server promises that what works against it works against the
``tensorflow/serving`` container; TF Serving's end-to-end tests
(``tensorflow_model_server_test.py``) are the strongest check of that. They
start ``$TEST_SRCDIR/tf_serving/tensorflow_serving/model_servers/tensorflow_model_server``
with TF Serving's flags, read models from ``.../servables/tensorflow/testdata``,
and import ``portpicker`` and ``tensorflow_serving.model_servers.test_util``.
This runner provides exactly that around the untouched copy in
``../shared/tfserving-tests`` (or ``$TFSERVING_TESTS_DIR``): a temporary
TEST_SRCDIR whose binary is a two-line wrapper exec'ing ``python -m serving``
with the same arguments, the testdata linked in, the copy's ``tensorflow_serving``
directory added to the installed package's path, absl flags parsed, and
pytest run on the test file. Nothing is written into the copy (no bytecode,
no pytest cache).

Tests that need what the local server does not have are skipped here, with
their reason printed, rather than edited out of the suite.

Usage: ``python -m testing.upstream_conformance [pytest args, e.g. -k testClassify]``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE_ENV = "TFSERVING_TESTS_DIR"
DEFAULT_SUITE = REPO_ROOT.parent / "shared" / "tfserving-tests"
TEST_FILE = Path("tensorflow_serving/model_servers/tensorflow_model_server_test.py")
SERVABLES = "servables"  # tensorflow_serving/servables/tensorflow/testdata: the models and config files
# Where the tests look for the binary, relative to TEST_SRCDIR (test base TestSrcDirPath + RunServer).
BINARY = Path("tf_serving/tensorflow_serving/model_servers/tensorflow_model_server")

SKIPPED = {
    "testPredictOnTfLite": "TF Lite models (--prefer_tflite_model): the local server serves SavedModels only",
    "testPredictWithSignatureDefOnTfLite":
        "TF Lite models (--prefer_tflite_model): the local server serves SavedModels only",
    "test_profiler_service_with_valid_trace_request":
        "the TensorFlow profiler gRPC service (--enable_profiler) is not served by the local server",
    "test_tf_text": "its model, testdata/tf_text_regression/01/saved_model.pb, is not in the copy of the suite",
}


def suite_dir() -> Path:
    """The untouched copy of TF Serving's tests: $TFSERVING_TESTS_DIR, else ../shared/tfserving-tests."""
    return Path(os.environ.get(SUITE_ENV) or DEFAULT_SUITE).resolve()


def wrapper_script(python: str = sys.executable, repo_root: Path = REPO_ROOT) -> str:
    # exec, so the PID the tests hold (and SIGKILL at exit) is the server itself.
    return (
        "#!/bin/sh\n"
        "# tensorflow_model_server for TF Serving's tests: the local server, same arguments.\n"
        f'PYTHONPATH="{repo_root}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{python}" -m serving "$@"\n'
    )


def build_test_srcdir(suite: Path, root: Path) -> Path:
    """A TEST_SRCDIR under ``root``: the wrapper binary and a link to the suite's testdata."""
    package = root / BINARY.parents[1]  # tf_serving/tensorflow_serving
    package.mkdir(parents=True, exist_ok=True)
    os.symlink(suite / "tensorflow_serving" / SERVABLES, package / SERVABLES)
    binary = root / BINARY
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(wrapper_script())
    binary.chmod(0o755)
    return root


# -- pytest plugin (this module is passed to pytest.main as a plugin) ------------------------


def pytest_configure(config: pytest.Config) -> None:
    import tensorflow_serving
    from absl import flags

    # The installed tensorflow_serving (tensorflow-serving-api) holds apis/ and config/;
    # the suite's copy adds model_servers/test_util, which the test file imports.
    package_dir = str(suite_dir() / "tensorflow_serving")
    if package_dir not in tensorflow_serving.__path__:
        tensorflow_serving.__path__.append(package_dir)
    # tf.test.main() would parse absl flags; the tests read FLAGS.test_tmpdir.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["tensorflow_model_server_test"], known_only=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = SKIPPED.get(item.name)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"upstream_conformance: {reason}"))


# -- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = suite_dir()
    test_file = suite / TEST_FILE
    if not test_file.is_file():
        print(f"upstream_conformance: {test_file} not found; set {SUITE_ENV} to the copy of TF Serving's tests",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tfserving-upstream-"))
    # Registered first, so it runs last: after the tests' own atexit handlers have
    # killed their servers and removed their temp dirs.
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    srcdir = build_test_srcdir(suite, work / "srcdir")
    tmpdir = work / "tmp"
    tmpdir.mkdir()
    os.environ["TEST_SRCDIR"] = str(srcdir)
    os.environ["TEST_TMPDIR"] = str(tmpdir) + os.sep  # googletest: mkdtemp(prefix=TEST_TMPDIR)
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the Keras tests save tf.keras models, as with TF Serving's TF
    sys.dont_write_bytecode = True  # nothing written into the suite's directory
    print(f"upstream_conformance: {test_file}\n  binary {srcdir / BINARY} -> {sys.executable} -m serving")
    for name, reason in SKIPPED.items():
        print(f"  skipped: {name}: {reason}")
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\npython_files = *_test.py\n")
    args = [
        str(test_file), "-c", str(ini), "--rootdir", str(suite), "-p", "no:cacheprovider",
        "-ra", "--durations=5", *argv,
    ]
    return int(pytest.main(args, plugins=[sys.modules[__name__]]))


if __name__ == "__main__":
    sys.exit(main())
