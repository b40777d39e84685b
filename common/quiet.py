"""TensorFlow's own log noise off every command line, in one place; ``--verbose`` brings it back.

``common/tf_setup.py`` calls :func:`install` before anything imports TensorFlow,
so every entry point (``python -m train``, ``export``, ``serving``, ``client``,
``loadtest`` and the modules under them, Locust's processes, the tests) starts
quiet. What TensorFlow 2.21 prints by itself, and what keeps each off stderr:

- Lines from its C++ logging, e.g. ``E0000 … cuda_platform.cc … failed call to
  cuInit`` at the first device use on a machine without a GPU driver, CPU feature
  notes, kernel warnings: ``TF_CPP_MIN_LOG_LEVEL=3`` (read when the library loads;
  3 is the only level that also hides the E-level cuInit line).
- absl lines written while the shared libraries load, before absl is initialised
  (``WARNING: All log messages before absl::InitializeLog() …``, the oneDNN and
  CUDA-stub notes): absl ignores ``TF_CPP_MIN_LOG_LEVEL`` there and has no
  environment switch, so file descriptor 2 points at /dev/null while the
  ``tensorflow`` package is imported, whichever module imports it first (an import
  hook). A Python exception from that import still prints: it propagates after the
  descriptor is restored.
- Python ``WARNING:tensorflow:`` / ``WARNING:absl:`` lines (e.g. Keras' "Skipping full
  serialization" notices during export): those two loggers at ERROR.
- gRPC core's INFO lines: ``GRPC_VERBOSITY=ERROR``.

Only logging changes: no device is hidden and no TensorFlow option is set, so a
GPU is used exactly as without this module. A variable the user set explicitly
(``TF_CPP_MIN_LOG_LEVEL=0``) is left alone.

Verbose: ``MOVIELENS_VERBOSE=1`` in the environment, or ``--verbose`` on a
project command line (``python -m train … --verbose``; looked up in
``sys.orig_argv`` because TensorFlow may be imported before the command parses its
arguments). The CLIs then call :func:`set_verbose` so that the processes they
start (the demo's server, Locust) are verbose as well.
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

ENV_VAR = "MOVIELENS_VERBOSE"
VERBOSE_FLAG = "--verbose"
# Packages whose ``python -m`` command lines accept --verbose.
PACKAGES = ("common", "train", "export", "serving", "client", "loadtest")
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
QUIET_LOGGERS = ("tensorflow", "absl")

_verbose = False
_env_we_set: list[str] = []


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def asked_on_command_line(argv: Sequence[str]) -> bool:
    """``python [options] -m <one of our packages>[.module] … --verbose …``"""
    argv = list(argv)
    if "-m" not in argv:
        return False
    at = argv.index("-m")
    module = argv[at + 1] if at + 1 < len(argv) else ""
    return module.split(".")[0] in PACKAGES and VERBOSE_FLAG in argv[at + 2 :]


def verbose_requested() -> bool:
    return _truthy(os.environ.get(ENV_VAR)) or asked_on_command_line(getattr(sys, "orig_argv", ()))


def is_verbose() -> bool:
    return _verbose


def install() -> None:
    """Quiet unless verbose was asked for; idempotent."""
    if verbose_requested():
        set_verbose(True)
        return
    for name, value in QUIET_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            _env_we_set.append(name)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def set_verbose(verbose: bool) -> None:
    """``--verbose``: TensorFlow's, Keras' and gRPC's own lines back, here and in child processes.

    Native lines TensorFlow printed (or suppressed) while loading before this call
    stay as they were; ``MOVIELENS_VERBOSE=1`` or ``--verbose`` on the command line
    act before that.
    """
    global _verbose
    if not verbose:
        return
    _verbose = True
    os.environ[ENV_VAR] = "1"
    while _env_we_set:
        os.environ.pop(_env_we_set.pop(), None)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block (a no-op when verbose).

    Process-wide: whatever any thread writes to stderr meanwhile is lost too, so keep
    the block to an import.
    """
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders, and runs its import with stderr silenced."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # once is enough
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _SilencedLoader(spec.loader)
                return spec
        return None


class _SilencedLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with native_stderr_silenced():
                self._loader.exec_module(module)
        finally:  # the module keeps its real loader
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name):
        return getattr(self._loader, name)
