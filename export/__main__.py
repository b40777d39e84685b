"""python -m export --run runs/NAME --model-base-path models/movielens [--version N] [--force]

Writes the next version of the model under the base path: built in a hidden
staging directory, verified, then renamed into place, but only if it is not worse
than the served version on the run's validation part (Recall@10, NDCG@10, RMSE,
within --tolerance; export/gate.py). Exit codes: 0 done, 1 the export failed or
was refused (not a finished run, version exists, verification failed, worse than
the served version: nothing is published), 2 a bad command line, 130 interrupted.
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
    parser.add_argument("--force", action="store_true",
                        help="publish even if the gate refuses it (recorded in the model card), and replace an existing version")
    parser.add_argument("--models-config", type=Path, default=None,
                        help="the model config the servers poll; with labelled rollouts its `stable` version is the one "
                             "to beat (default: the newest version under the base path, what the `latest` policy serves)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the MovieLens folder the run trained on, for the gate's validation part "
                             "(default: $MOVIELENS_DIR, then the download cache)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="the gate: Recall@10 and NDCG@10 may be at most this fraction below the served version's, "
                             "RMSE this fraction above (default %(default)s)")
    cli.add_verbose(parser)
    return parser


@cli.interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.apply_verbose(args)
    print(f"exporting {args.run} into {args.model_base_path} ...", flush=True)
    from export.exporter import ExportError, Gate, export_run  # TensorFlow loads here

    try:
        export_run(args.run, args.model_base_path, args.version, args.force,
                   progress=lambda message: print(f"  {message}", flush=True),
                   gate=Gate(args.data_dir, args.models_config, args.tolerance))
    except ExportError as e:
        return cli.fail(str(e))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
