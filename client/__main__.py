"""Entry point of ``python -m client`` (see client/cli.py)."""

import sys

from common import cli

try:
    from client.cli import main  # imports TensorFlow via TF Serving's protos (quietly: common/quiet.py)
except KeyboardInterrupt:  # Ctrl-C during that seconds-long import; main() handles the rest alike
    print("interrupted", file=sys.stderr)
    sys.exit(cli.EXIT_INTERRUPTED)

sys.exit(main())
