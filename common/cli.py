"""What every command line of the project shares: exit codes, ``--verbose``, plain help text.

Exit codes, the same in every ``python -m …``:

- 0: done.
- 1: the work failed: bad or missing data, a failed export, a load test that
  failed its gate, a server that cannot be reached or cannot start. One line on
  stderr says why.
- 2: usage only: the command line itself is wrong (argparse's message, or a
  value out of range), nothing was attempted.
- 130: interrupted (Ctrl-C), as a shell reports 128 + SIGINT.

The local server (``python -m serving``, ``serving.cluster``) is the one place where
SIGTERM or Ctrl-C is not an interruption: it is how a server is asked to stop, so a
clean drain exits 0.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from client.help_text import plain  # cli.plain: export may not import the client itself
from common import quiet

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT

VERBOSE_HELP = (
    f"also print TensorFlow's, Keras' and gRPC's own log lines (same as {quiet.ENV_VAR}=1, "
    "which every command reads)"
)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(quiet.VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)


def apply_verbose(args: argparse.Namespace) -> bool:
    """After parsing: ``--verbose`` (or MOVIELENS_VERBOSE=1) for this process and the ones it starts."""
    verbose = bool(getattr(args, "verbose", False)) or quiet.is_verbose()
    quiet.set_verbose(verbose)
    return verbose


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """One line on stderr, then the exit code: ``return fail(f"... ")``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def interruptible(main: Callable[..., int]) -> Callable[..., int]:
    """Ctrl-C anywhere in ``main``: one line, exit code 130, no traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED

    return wrapper
