"""python -m train --run-name NAME [--preset two-stage|reference-basic|reference-tuned|FILE] [--split u1|...|seed-temporal] [--epochs N ...]

Trains one model on MovieLens and writes runs/NAME/. Every flag not given
comes from the preset (a name, or a preset file such as the report of a
python -m train tune search writes). python -m train tune ... runs a
hyperparameter search instead (train/tuning.py). With TF_CONFIG set (TensorFlow's multi-worker cluster
description), this process is one worker of a MultiWorkerMirroredStrategy run
and only the chief writes the run. Exit codes: 0 done, 1 the data is missing or malformed,
2 a bad command line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import cli, contract
from train import config as train_config
from train.data import DataError
from train.download import DATASETS, DataUnavailable, locate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train", description=cli.plain(__doc__.split("\n\n", 1)[1]),
        usage="%(prog)s --run-name NAME [--preset PRESET] [--split SPLIT] [flags of the model ...]",
    )
    parser.add_argument("--run-name", required=True, help=f"writes {contract.RUNS_DIR}/NAME/")
    parser.add_argument("--runs-dir", default=contract.RUNS_DIR, help="where runs are written (default %(default)s)")
    parser.add_argument("--data-dir", default=None,
                        help="MovieLens folder; it must hold a whole layout: 100K u.data, u.item, u.user; 1M "
                             "ratings.dat, movies.dat, users.dat; 20M/25M/32M/latest ratings.csv, movies.csv (default: "
                             "$MOVIELENS_DIR, then the cache, then a download from GroupLens)")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="which MovieLens set: looked for in $MOVIELENS_DIR (if it is that set's layout) and the "
                             "cache, else downloaded and checked against GroupLens' MD5 (default: ml-100k, or "
                             "whatever layout --data-dir or $MOVIELENS_DIR holds)")
    cli.add_verbose(parser)
    train_config.add_arguments(parser.add_argument_group("the model (each default: the preset's value)"))
    return parser


@cli.interruptible
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:
        from train import tuning

        return tuning.main(argv[1:])
    args = build_parser().parse_args(argv)
    verbose = cli.apply_verbose(args)
    config = train_config.from_arguments(args)

    try:
        data_dir = locate(args.data_dir, dataset=args.dataset)
    except DataUnavailable as e:
        return cli.fail(str(e))
    from train import distribute

    try:
        task = distribute.task_from_environment()
    except distribute.ClusterConfigError as e:
        return cli.fail(str(e), cli.EXIT_USAGE)
    from train import progress, trainer  # TensorFlow loads here, after the cheap checks

    run_dir = Path(args.runs_dir) / args.run_name
    where = f"{run_dir}" if task.is_chief else f"nothing (the chief writes {run_dir})"
    role = f" as {task.describe()}" if task.distributed else ""
    print(f"training {config.preset} on {config.split} from {data_dir}{role} -> {where}", flush=True)
    try:
        metrics = trainer.run(config, data_dir, run_dir, verbose=2 if verbose else 0,
                              progress=None if verbose else progress.epoch_lines, task=task)
    except DataError as e:
        return cli.fail(str(e))
    rows, base = metrics["rows"], metrics["baselines"]
    ease = base["ease"].get("recall_at_10")
    print(
        f"{args.run_name}: preset={config.preset} split={config.split} "
        f"rows={rows['train']}/{rows['val']}/{rows['test']} fit={metrics['fit_seconds']:.1f}s\n"
        f"  test Recall@10 {metrics['recall_at_10']:.4f}  NDCG@10 {metrics['ndcg_at_10']:.4f}  "
        f"coverage@10 {metrics['coverage_at_10']}  (popularity {base['popularity']['recall_at_10']:.4f} / "
        f"{base['popularity']['ndcg_at_10']:.4f}, EASE {'skipped' if ease is None else f'{ease:.4f} / ' + format(base['ease']['ndcg_at_10'], '.4f')})\n"
        f"  RMSE train {metrics['train_rmse']:.4f}  val {metrics['val_rmse']:.4f}  test {metrics['test_rmse']:.4f}  "
        f"(global mean {metrics['baseline_global_mean_test_rmse']:.4f})"
    )
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
