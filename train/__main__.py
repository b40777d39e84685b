"""python -m train --run-name NAME [--preset two-stage|basic|tuned] [--split u1|…|seed-temporal] [--epochs N ...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import contract
from common.quiet import native_stderr_silenced
from train import config as train_config
from train.data import DataError
from train.download import DataUnavailable, locate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    parser.add_argument("--run-name", required=True, help=f"writes {contract.RUNS_DIR}/NAME/")
    parser.add_argument("--runs-dir", default=contract.RUNS_DIR)
    parser.add_argument("--data-dir", default=None, help="MovieLens 100K folder (else $MOVIELENS_DIR, the cache, download)")
    train_config.add_arguments(parser)
    args = parser.parse_args(argv)
    config = train_config.from_arguments(args)

    try:
        data_dir = locate(args.data_dir)
    except DataUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with native_stderr_silenced():  # TensorFlow's import-time C++ log lines
        from train import trainer  # TensorFlow loads here, after the cheap checks

    run_dir = Path(args.runs_dir) / args.run_name
    print(f"training {config.preset} on {config.split} from {data_dir} -> {run_dir}", flush=True)
    try:
        metrics = trainer.run(config, data_dir, run_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
