"""Process-wide setup shared by every entry point.

TensorFlow Recommenders 0.7.7 is written against Keras 2, but TensorFlow 2.21
binds ``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set *before*
TensorFlow is first imported. Every component package imports this module
first (``python -m train``, ``python -m serving``, the tests' conftest), so the
variable is set in exactly one place, and so is the quiet logging of ``quiet.py``.
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
