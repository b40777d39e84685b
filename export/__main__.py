"""python -m export --run runs/NAME --model-base-path models/movielens [--version N] [--force]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import contract
from common.quiet import native_stderr_silenced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--run", required=True, type=Path, help="a training run directory, e.g. runs/demo")
    parser.add_argument("--model-base-path", type=Path, default=Path(contract.MODEL_BASE_PATH))
    parser.add_argument("--version", type=int, default=None, help="default: one above the newest version")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    args = parser.parse_args(argv)

    with native_stderr_silenced():  # TensorFlow's import-time C++ log lines
        import tensorflow as tf

        from export.exporter import ExportError, export_run
    # Keras warns that the unbuilt TFRS task layer is not serialised; serving never needs it.
    tf.get_logger().setLevel("ERROR")

    try:
        export_run(args.run, args.model_base_path, args.version, args.force)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
