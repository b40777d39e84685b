"""TensorFlow's process-wide setup, applied on import by the parts of the project that use TensorFlow.

TensorFlow Recommenders 0.7.7 is written against Keras 2, but TensorFlow 2.21
binds ``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set *before*
TensorFlow is first imported. The packages that import TensorFlow (``train``,
``export``, ``serving``, and ``loadtest``, which starts servers in-process) import
this module first in their ``__init__.py``, and so does the tests' conftest.py, so the
variable is set in exactly one place, and so is the quiet logging of ``quiet.py``.

It used to run from ``common/__init__.py``, i.e. for anything that imported ``common``,
the client included: an application embedding the client had its environment, its
loggers and its import hooks changed. The client (``client/``, the thin distribution)
no longer imports ``common`` at all, and ``common`` itself changes nothing on import.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from common import quiet  # noqa: E402

# TensorFlow's own log lines (absl, oneDNN, cuInit, Keras warnings) stay off every command
# line unless MOVIELENS_VERBOSE=1 or --verbose asks for them (common/quiet.py).
quiet.install()

if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        "TF_USE_LEGACY_KERAS must be 1: TensorFlow Recommenders needs Keras 2 (tf-keras)."
    )
