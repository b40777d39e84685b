"""python -m export.evaluation_report: train the default preset on every split, export, measure, write EVALUATION.md.

For each of u1…u5 and seed-temporal: ``python -m train``'s story with the
default preset (run directories under ``runs/evaluate-<split>``), then an
export, then the protocol measured through the exported ``recommend`` and
``serving_default`` signatures (``export/evaluate.py``), next to the
baselines the trainer computed in the same run on the same split. The
report gives mean ± sd over the five folds, the seed-temporal row, the
new-user rows, the commands, and a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from common import contract
from common.quiet import native_stderr_silenced
from train import splits
from train.config import DEFAULT_PRESET, PRESETS, TrainConfig

METRICS = ("recall_at_10", "ndcg_at_10", "coverage_at_10")


def _mean_sd(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def measure(split: str, data_dir: Path, work: Path, config: TrainConfig | None = None) -> dict:
    """Trains ``config`` (default: the default preset) on ``split``, exports it and measures the served model."""
    from export.evaluate import evaluate_new_users, evaluate_saved_model
    from export.exporter import export_run
    from train import trainer

    config = config or TrainConfig(**{**PRESETS[DEFAULT_PRESET], "preset": DEFAULT_PRESET, "split": split})
    run_dir = work / "runs" / f"evaluate-{split}"
    started = time.perf_counter()
    metrics = trainer.run(config, data_dir, run_dir, verbose=0)
    train_seconds = time.perf_counter() - started
    base = work / "models" / f"evaluate-{split}"
    shutil.rmtree(base, ignore_errors=True)
    version = export_run(run_dir, base, version=1)
    served = evaluate_saved_model(version, data_dir, config)
    new_users = evaluate_new_users(version, data_dir, config)
    result = {
        "split": split,
        "model": {**served, "val_rmse": metrics["val_rmse"]},
        "in_memory": {k: metrics[k] for k in (*METRICS, "test_rmse")},
        "baselines": metrics["baselines"],
        "blend_weight": metrics["blend_weight"],
        "new_users": new_users,
        "train_and_evaluate_seconds": round(train_seconds, 1),
        "rows": metrics["rows"],
    }
    print(f"{split}: Recall@10 {served['recall_at_10']:.4f} NDCG@10 {served['ndcg_at_10']:.4f} "
          f"coverage {served['coverage_at_10']} RMSE {served['test_rmse']:.4f} "
          f"(EASE {metrics['baselines']['ease'].get('recall_at_10', float('nan')):.4f}, "
          f"popularity {metrics['baselines']['popularity']['recall_at_10']:.4f}) in {train_seconds:.0f} s", flush=True)
    return result


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["split"] for r in results]
    series = {
        "two-stage (served)": [r["model"]["recall_at_10"] for r in results],
        "EASE": [r["baselines"]["ease"].get("recall_at_10", np.nan) for r in results],
        "most popular": [r["baselines"]["popularity"]["recall_at_10"] for r in results],
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(len(names)) + i * width, values, width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(series) - 1) / 2, names)
    ax.set_ylabel("Recall@10")
    ax.set_title("Recall@10 per split: the served model next to the baselines")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results: list[dict], data_dir: Path, plot_name: str, seconds: float) -> str:
    folds = [r for r in results if r["split"] in splits.FOLDS]
    others = [r for r in results if r["split"] not in splits.FOLDS]
    lines = [
        "# Evaluation",
        "",
        f"Written by `make evaluate` (`python -m export.evaluation_report`) in {seconds / 60:.1f} min on "
        f"{platform.machine()} with {len(os.sched_getaffinity(0))} cores, from the files in `{data_dir.name}`.",
        f"Preset `{DEFAULT_PRESET}` (every hyperparameter in `train/config.py`), trained once per split; every model",
        "figure is measured through the exported SavedModel's `recommend` and `serving_default` signatures, the path a",
        "client takes. Baselines are computed by the same run on the same split.",
        "",
        "Protocol: for every test user, the top 10 after removing the movies they rated in the training data (train +",
        "validation part); relevant = their test ratings ≥ 4. Recall@10 = hits / min(10, relevant), NDCG@10 with binary",
        "gains, both averaged over users with a relevant movie; coverage@10 = distinct movies across all those top-10",
        "lists. RMSE over every test rating. The blend weight (retrieval score + w × predicted rating) is chosen on the",
        "validation part.",
        "",
        "| split | model | Recall@10 | NDCG@10 | coverage@10 | test RMSE |",
        "|---|---|---:|---:|---:|---:|",
    ]

    def rows(group: list[dict], label: str) -> None:
        def cell(get, digits):
            values = [get(r) for r in group]
            if any(v is None for v in values):
                return "—"
            return _mean_sd(values, digits)

        lines.append(f"| {label} | **two-stage (served)** | **{cell(lambda r: r['model']['recall_at_10'], 3)}** | "
                     f"**{cell(lambda r: r['model']['ndcg_at_10'], 3)}** | {cell(lambda r: r['model']['coverage_at_10'], 0)} | "
                     f"**{cell(lambda r: r['model']['test_rmse'], 3)}** |")
        for name, key in (("EASE (λ=300)", "ease"), ("most popular", "popularity")):
            if any("skipped" in r["baselines"][key] for r in group):
                lines.append(f"| {label} | {name} | skipped | | | |")
                continue
            lines.append(f"| {label} | {name} | {cell(lambda r: r['baselines'][key]['recall_at_10'], 3)} | "
                         f"{cell(lambda r: r['baselines'][key]['ndcg_at_10'], 3)} | "
                         f"{cell(lambda r: r['baselines'][key]['coverage_at_10'], 0)} | |")
        lines.append(f"| {label} | global mean | | | | {cell(lambda r: r['baselines']['global_mean']['test_rmse'], 3)} |")

    if folds:
        rows(folds, f"u1…u5 (mean ± sd, {len(folds)} folds)" if len(folds) > 1 else folds[0]["split"])
    for r in others:
        rows([r], r["split"])
    lines += ["", f"![Recall@10 per split]({plot_name})", "", "Per split (served model):", "",
              "| split | Recall@10 | NDCG@10 | coverage@10 | test RMSE | blend weight | EASE Recall@10 | popularity Recall@10 | train + evaluate |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ease = r["baselines"]["ease"].get("recall_at_10")
        lines.append(f"| {r['split']} | {r['model']['recall_at_10']:.4f} | {r['model']['ndcg_at_10']:.4f} | "
                     f"{r['model']['coverage_at_10']} | {r['model']['test_rmse']:.4f} | {r['blend_weight']:g} | "
                     f"{'—' if ease is None else f'{ease:.4f}'} | {r['baselines']['popularity']['recall_at_10']:.4f} | "
                     f"{r['train_and_evaluate_seconds']:.0f} s |")
    lines += ["", "## New users: recommendations from a handful of ratings", "",
              f"`{contract.RECOMMEND_FROM_RATINGS_SIGNATURE}` given each user's earliest 5 ratings. seed-temporal: every test",
              "user unseen in training with ≥ 10 test ratings; the 5 are their earliest test ratings, the rest rated ≥ 4 are",
              "relevant, the 5 are excluded. u1…u5: every test user's history replaced by their earliest 5 base-file",
              "ratings; relevant = test ≥ 4; every base movie excluded (reported, no target). Popularity counts the training part.",
              "", "| split | recommender | Recall@10 | NDCG@10 | coverage@10 | users |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        for name, m in r["new_users"].items():
            lines.append(f"| {r['split']} | {name} | {m['recall_at_10']:.4f} | {m['ndcg_at_10']:.4f} | "
                         f"{m['coverage_at_10']} | {m['users_evaluated']} |")
    lines += ["", "Reproduce: `MOVIELENS_DIR=/path/to/ml-100k make evaluate` (raw numbers in `reports/evaluation.json`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.evaluation_report", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="MovieLens 100K folder (else $MOVIELENS_DIR, the cache, download)")
    parser.add_argument("--splits", nargs="+", default=[*splits.FOLDS, splits.SEED_TEMPORAL], choices=splits.NAMES)
    parser.add_argument("--work-dir", type=Path, default=Path(contract.REPORTS_DIR) / "evaluation")
    parser.add_argument("--out", type=Path, default=Path("EVALUATION.md"))
    args = parser.parse_args(argv)

    from train.download import DataUnavailable, locate

    try:
        data_dir = locate(args.data_dir)
    except DataUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with native_stderr_silenced():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    started = time.perf_counter()
    results = [measure(split, data_dir, args.work_dir) for split in args.splits]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir.parent / "evaluation.json").write_text(json.dumps(results, indent=2))
    plot = args.out.with_name("evaluation.png")
    _plot(results, plot)
    args.out.write_text(report(results, data_dir, plot.name, time.perf_counter() - started))
    print(f"wrote {args.out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
