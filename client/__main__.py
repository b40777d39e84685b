"""Entry point of ``python -m client`` and of the thin distribution's ``movielens-client`` (client/cli.py)."""

import os
import sys


def run() -> int:
    # The command line's only process-wide setting, made here and not on import: gRPC core's
    # INFO lines stay off stderr unless --verbose or MOVIELENS_VERBOSE=1 asks for them.
    verbose = "--verbose" in sys.argv[1:] or os.environ.get("MOVIELENS_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")
    if not verbose:
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C during the import; main() handles the rest alike
        print("interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
