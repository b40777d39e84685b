"""Entry point of ``python -m loadtest`` (see loadtest/runner.py)."""

import sys

from loadtest.runner import main

sys.exit(main())
