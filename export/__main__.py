"""python -m export --run runs/NAME --model-base-path models/movielens [--version N] [--force]

Writes the next version of the model under the base path: built in a hidden
staging directory, verified, then renamed into place. Exit codes: 0 done, 1 the
export failed (not a finished run, version exists, verification failed), 2 a bad
command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import cli, contract


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=cli.plain(__doc__.split("\n\n", 1)[1]))
    parser.add_argument("--run", required=True, type=Path, help="a finished training run directory, e.g. runs/demo")
    parser.add_argument("--model-base-path", type=Path, default=Path(contract.MODEL_BASE_PATH),
                        help="the folder of integer version directories a server watches (default %(default)s)")
    parser.add_argument("--version", type=int, default=None, help="default: one above the newest version")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    cli.add_verbose(parser)
    return parser


@cli.interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.apply_verbose(args)
    print(f"exporting {args.run} into {args.model_base_path} ...", flush=True)
    from export.exporter import ExportError, export_run  # TensorFlow loads here

    try:
        export_run(args.run, args.model_base_path, args.version, args.force,
                   progress=lambda message: print(f"  {message}", flush=True))
    except ExportError as e:
        return cli.fail(str(e))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
