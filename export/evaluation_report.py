"""python -m export.evaluation_report: train presets on every split, export, measure, write EVALUATION.md.

For each of u1…u5 and seed-temporal: ``python -m train``'s story with the
default preset, and any other ``--preset`` (a name or a preset file such as
a tuning study's), then an export, then the protocol measured through the
exported ``recommend`` and ``serving_default`` signatures
(``export/evaluate.py``), next to the baselines the trainer computed in the
same run on the same split. The report gives mean ± sd over the five folds,
the seed-temporal row, the new-user rows, the commands, and a plot.

A row is *clean* when nothing that chose the preset's values saw that
split's test rows. A preset file written by a study records the split it
was tuned on (``tuned_by``); only that split's row is clean, because the
other folds' test rows lie inside its base file. Named presets were set by
hand and are marked as such.
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
from train.config import DEFAULT_PRESET, PRESET_TUNED_BY, PRESETS, TWO_STAGE, TrainConfig, preset_argument, preset_values

METRICS = ("recall_at_10", "ndcg_at_10", "coverage_at_10")


def _mean_sd(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def preset_label(preset: str) -> str:
    """A preset's name in the report: a named preset as it is, a preset file by its stem (tuning/two-stage-u1.json: two-stage-u1)."""
    return preset if preset == DEFAULT_PRESET or not preset.endswith(".json") else Path(preset).stem


def tuned_on(preset: str) -> str | None:
    """The split a preset's study tuned on: a preset file's ``tuned_by`` record, a named preset's
    ``PRESET_TUNED_BY`` entry; None for a hand-set preset, and for one a study kept (its trial 0, the
    hand-set values it started from: the study chose nothing that the hand had not)."""
    if preset in PRESET_TUNED_BY:
        return None if PRESET_TUNED_BY[preset]["trial"] == 0 else PRESET_TUNED_BY[preset]["split"]
    if not preset.endswith(".json") or not Path(preset).is_file():  # a study's evaluation runs before its file is written
        return None
    return json.loads(Path(preset).read_text()).get("tuned_by", {}).get("split")


def measure(split: str, data_dir: Path, work: Path, config: TrainConfig | None = None) -> dict:
    """Trains ``config`` (default: the default preset) on ``split``, exports it and measures the served model."""
    from export.evaluate import evaluate_new_users, evaluate_saved_model
    from export.exporter import export_run
    from train import trainer

    config = config or TrainConfig(**{**preset_values(DEFAULT_PRESET), "preset": DEFAULT_PRESET, "split": split})
    label = preset_label(config.preset)
    run_dir = work / "runs" / (f"evaluate-{split}" if label == DEFAULT_PRESET else f"evaluate-{label}-{split}")
    started = time.perf_counter()
    metrics = trainer.run(config, data_dir, run_dir, verbose=0)
    train_seconds = time.perf_counter() - started
    base = work / "models" / run_dir.name
    shutil.rmtree(base, ignore_errors=True)
    version = export_run(run_dir, base, version=1)
    served = evaluate_saved_model(version, data_dir, config)
    # The reference model serves no recommend_from_ratings: it has no new-user rows.
    new_users = evaluate_new_users(version, data_dir, config) if config.model == TWO_STAGE else {}
    result = {
        "split": split,
        "preset": label,
        "tuned_on": tuned_on(config.preset),
        "model": {**served, "val_rmse": metrics["val_rmse"]},
        "in_memory": {k: metrics[k] for k in (*METRICS, "test_rmse")},
        "baselines": metrics["baselines"],
        "blend_weight": metrics["blend_weight"],
        "popularity_penalty": metrics.get("popularity_penalty"),
        "new_users": new_users,
        "train_and_evaluate_seconds": round(train_seconds, 1),
        "rows": metrics["rows"],
    }
    print(f"{split} ({label}): Recall@10 {served['recall_at_10']:.4f} NDCG@10 {served['ndcg_at_10']:.4f} "
          f"coverage {served['coverage_at_10']} RMSE {served['test_rmse']:.4f} "
          f"(EASE {metrics['baselines']['ease'].get('recall_at_10', float('nan')):.4f}, "
          f"popularity {metrics['baselines']['popularity']['recall_at_10']:.4f}) in {train_seconds:.0f} s", flush=True)
    return result


def _config(preset: str, split: str) -> TrainConfig:
    return TrainConfig(**{**preset_values(preset), "preset": preset, "split": split})


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["split"] for r in results))
    first = {split: next(r for r in results if r["split"] == split) for split in names}
    series = {}
    for preset in dict.fromkeys(r["preset"] for r in results):
        by_split = {r["split"]: r for r in results if r["preset"] == preset}
        series[f"{preset} (served)" if preset == DEFAULT_PRESET else preset] = [
            by_split[s]["model"]["recall_at_10"] if s in by_split else np.nan for s in names]
    series["EASE"] = [first[s]["baselines"]["ease"].get("recall_at_10", np.nan) for s in names]
    series["most popular"] = [first[s]["baselines"]["popularity"]["recall_at_10"] for s in names]
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


def _model_name(preset: str, tuned_split: str | None, splits_in_row: list[str]) -> str:
    """The model column: the default preset bold and served; a tuned preset says where its rows are not clean."""
    if tuned_split is None:
        return f"**{preset} (served)**" if preset == DEFAULT_PRESET else preset
    if splits_in_row == [tuned_split]:
        cleanliness = f"tuned on {tuned_split}: clean"
    else:
        cleanliness = f"tuned on {tuned_split}: not clean" + (f" except {tuned_split}" if tuned_split in splits_in_row else "")
    return f"**{preset} (served; {cleanliness})**" if preset == DEFAULT_PRESET else f"{preset} ({cleanliness})"


def _intro(presets: dict[str, str | None], data_dir: Path, seconds: float) -> list[str]:
    lines = [
        "# Evaluation",
        "",
        f"Written by `make evaluate` (`python -m export.evaluation_report`) in {seconds / 60:.1f} min on "
        f"{platform.machine()} with {len(os.sched_getaffinity(0))} cores, from the files in `{data_dir.name}`.",
        f"Preset `{DEFAULT_PRESET}` (every hyperparameter in `train/config.py`), trained once per split; every model",
        "figure is measured through the exported SavedModel's `recommend` and `serving_default` signatures, the path a",
        "client takes. Baselines are computed by the same run on the same split.",
    ]
    for preset, tuned_split in presets.items():
        origin = (f"holds the values of study `{PRESET_TUNED_BY[preset]['study']}`'s trial "
                  f"{PRESET_TUNED_BY[preset]['trial']}" if preset in PRESET_TUNED_BY
                  else f"is the preset file `tuning/{preset}.json`, written by a study")
        if tuned_split:
            lines.append(f"`{preset}` {origin}, which tuned on {tuned_split}'s train part only: its {tuned_split} row "
                         f"is clean; its other rows are not (their test rows lie inside the data its study saw), and "
                         f"show how it carries over.")
        elif preset in PRESET_TUNED_BY:  # kept by its study: trial 0
            lines.append(f"`{preset}` holds the values of study `{PRESET_TUNED_BY[preset]['study']}`'s best trial, "
                         f"trial 0: the hand-set values it started from, which none of its trials beat within its "
                         f"constraints. They were set partly from earlier u1 and seed-temporal test figures: none of its "
                         f"rows is clean.")
        elif preset in PRESETS:
            lines.append(f"`{preset}`'s values were set by hand, partly from earlier u1 and seed-temporal test figures: "
                         f"none of its rows is clean.")
        else:
            lines.append(f"`{preset}`: also trained on every split, as above.")
    return lines + [
        "",
        "Protocol: for every test user, the top 10 after removing the movies they rated in the training data (train +",
        "validation part); relevant = their test ratings ≥ 4. Recall@10 = hits / min(10, relevant), NDCG@10 with binary",
        "gains, both averaged over users with a relevant movie; coverage@10 = distinct movies across all those top-10",
        "lists. RMSE over every test rating. The blend (retrieval score + w × predicted rating − p × log(1 + the movie's",
        "training ratings)) is chosen on the validation part: the column gives w / p.",
        "",
    ]


def report(results: list[dict], data_dir: Path, plot_name: str, seconds: float) -> str:
    presets = {r["preset"]: r.get("tuned_on") for r in results}
    lines = _intro(presets, data_dir, seconds) + [
        "| split | model | Recall@10 | NDCG@10 | coverage@10 | test RMSE |",
        "|---|---|---:|---:|---:|---:|",
    ]

    def rows(group: list[dict], label: str) -> None:
        def cell(group, get, digits):
            values = [get(r) for r in group]
            if any(v is None for v in values):
                return "—"
            return _mean_sd(values, digits)

        for preset, tuned_split in presets.items():
            mine = [r for r in group if r["preset"] == preset]
            if not mine:
                continue
            bold = "**" if preset == DEFAULT_PRESET else ""
            lines.append(f"| {label} | {_model_name(preset, tuned_split, [r['split'] for r in mine])} | "
                         f"{bold}{cell(mine, lambda r: r['model']['recall_at_10'], 3)}{bold} | "
                         f"{bold}{cell(mine, lambda r: r['model']['ndcg_at_10'], 3)}{bold} | "
                         f"{cell(mine, lambda r: r['model']['coverage_at_10'], 0)} | "
                         f"{bold}{cell(mine, lambda r: r['model']['test_rmse'], 3)}{bold} |")
        first = [r for r in group if r["preset"] == group[0]["preset"]]  # the baselines do not depend on the preset
        for name, key in (("EASE (λ=300)", "ease"), ("most popular", "popularity")):
            if any("skipped" in r["baselines"][key] for r in first):
                lines.append(f"| {label} | {name} | skipped | | | |")
                continue
            lines.append(f"| {label} | {name} | {cell(first, lambda r: r['baselines'][key]['recall_at_10'], 3)} | "
                         f"{cell(first, lambda r: r['baselines'][key]['ndcg_at_10'], 3)} | "
                         f"{cell(first, lambda r: r['baselines'][key]['coverage_at_10'], 0)} | |")
        lines.append(f"| {label} | global mean | | | | {cell(first, lambda r: r['baselines']['global_mean']['test_rmse'], 3)} |")

    folds = [r for r in results if r["split"] in splits.FOLDS]
    n_folds = len({r["split"] for r in folds})
    if folds:
        rows(folds, f"u1…u5 (mean ± sd, {n_folds} folds)" if n_folds > 1 else folds[0]["split"])
    for split in dict.fromkeys(r["split"] for r in results if r["split"] not in splits.FOLDS):
        rows([r for r in results if r["split"] == split], split)
    several = len(presets) > 1
    lines += ["", f"![Recall@10 per split]({plot_name})", "", "Per split:", "",
              "| split | preset | Recall@10 | NDCG@10 | coverage@10 | test RMSE | blend w / p | EASE Recall@10 | "
              "popularity Recall@10 | train + evaluate |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ease = r["baselines"]["ease"].get("recall_at_10")
        blend = "—" if r["blend_weight"] is None else f"{r['blend_weight']:g} / {r.get('popularity_penalty') or 0:g}"
        lines.append(f"| {r['split']} | {r['preset']} | {r['model']['recall_at_10']:.4f} | {r['model']['ndcg_at_10']:.4f} | "
                     f"{r['model']['coverage_at_10']} | {r['model']['test_rmse']:.4f} | {blend} | "
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
            shown = f"{r['preset']}: {name}" if several and not name.startswith("popularity") else name
            if several and name.startswith("popularity") and r["preset"] != results[0]["preset"]:
                continue  # the same list for every preset of a split
            lines.append(f"| {r['split']} | {shown} | {m['recall_at_10']:.4f} | {m['ndcg_at_10']:.4f} | "
                         f"{m['coverage_at_10']} | {m['users_evaluated']} |")
    lines += ["", "Reproduce: `MOVIELENS_DIR=/path/to/ml-100k make evaluate` (raw numbers in `reports/evaluation.json`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.evaluation_report", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="MovieLens 100K folder (else $MOVIELENS_DIR, the cache, download)")
    parser.add_argument("--splits", nargs="+", default=[*splits.FOLDS, splits.SEED_TEMPORAL], choices=splits.NAMES)
    parser.add_argument("--work-dir", type=Path, default=Path(contract.REPORTS_DIR) / "evaluation")
    parser.add_argument("--out", type=Path, default=Path("EVALUATION.md"))
    parser.add_argument("--preset", nargs="+", type=preset_argument, default=[DEFAULT_PRESET], metavar="PRESET|FILE",
                        help=f"presets to train and measure on every split, each a name or a preset file (default "
                             f"{DEFAULT_PRESET}; a study's file: tuning/<study>.json)")
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
    results = [measure(split, data_dir, args.work_dir, _config(preset, split)) for preset in args.preset
               for split in args.splits]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir.parent / "evaluation.json").write_text(json.dumps(results, indent=2))
    plot = args.out.with_name("evaluation.png")
    _plot(results, plot)
    args.out.write_text(report(results, data_dir, plot.name, time.perf_counter() - started))
    print(f"wrote {args.out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
