"""Entry point of ``python -m client`` (see client/cli.py)."""

import os
import sys

# gRPC core's INFO lines (e.g. GOAWAY on a server restart) are not for CLI users.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from common.quiet import native_stderr_silenced  # noqa: E402

try:
    with native_stderr_silenced():
        from client.cli import main  # imports TensorFlow via TF Serving's protos
except KeyboardInterrupt:  # Ctrl-C during that seconds-long import; main() handles the rest alike
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
