"""Silence native (C++) stderr while TensorFlow loads, for clean command-line output.

TensorFlow 2.21 writes absl INFO lines (oneDNN, CUDA stubs) straight to file
descriptor 2 on import, ignoring TF_CPP_MIN_LOG_LEVEL; a CLI whose contract is
"one-line error on stderr" cannot let them through. Python-level exceptions
still propagate (and print) after the descriptor is restored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
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
