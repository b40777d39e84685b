"""python -m loadtest.scale_bench: how train, export, model size and recommend latency grow with the data.

For each size, a synthetic MovieLens-format set (``train/synthetic.py``:
power-law popularity, latent tastes) is written once into the work folder,
then one child process per size loads it, trains the default preset for one
epoch per stage on the seed-temporal split (including the run's evaluation
and baselines), exports it, and times ``recommend`` for one user, k = 10, on
the reloaded SavedModel in-process. A child per size makes its peak RSS its
own. Every size trains the same way: the default preset with its one
batch-size rule (``train.config.step_batch``: the batch grows with the
training rows), so the growth ratios compare like with like. The table (with
the acceptance limits, ``LIMITS``, checked at 25M) goes between markers in
BENCHMARKS.md, which ``make bench`` keeps, and a log-log plot beside it
(``bench_scale.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from loadtest.machine import this_machine

SIZES = {  # name: (users, movies, ratings)
    "100K": (943, 1_682, 100_000),
    "1M": (20_000, 45_000, 1_000_000),
    "5M": (60_000, 50_000, 5_000_000),
    "25M": (162_000, 59_000, 25_000_000),
}
DEFAULT_SIZES = ("100K", "1M", "5M", "25M")
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
LATENCY_CALLS = 300
PLOT_FILE = "bench_scale.png"
# The acceptance limits at 25M ratings on 2 cores / 24 GiB, and the growth allowed from 1M to 25M.
LIMITS = {"wall_s": 1200.0, "peak_rss_gib": 12.0, "model_mb": 200.0, "recommend_p50_ms": 10.0}
MAX_WALL_RATIO_1M_TO_25M = 30.0


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def measure_one(data_dir: Path, work: Path) -> dict:
    """Runs in the child: train one epoch per stage, export, time recommend."""
    import numpy as np

    from common import contract
    from common.quiet import native_stderr_silenced

    with native_stderr_silenced():
        import tensorflow as tf

        from export.exporter import export_run
        from train import trainer
        from train.config import DEFAULT_PRESET, PRESETS, TrainConfig
    tf.get_logger().setLevel("ERROR")

    config = TrainConfig(**{**PRESETS[DEFAULT_PRESET], "preset": DEFAULT_PRESET, "epochs": 1, "retrieval_epochs": 1})
    started = time.perf_counter()
    metrics = trainer.run(config, data_dir, work / "run", verbose=0)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    version = export_run(work / "run", work / "models", version=1, force=True)
    export_s = time.perf_counter() - started

    loaded = tf.saved_model.load(str(version))
    recommend = loaded.signatures[contract.RECOMMEND_SIGNATURE]
    card = json.loads((version / contract.MODEL_CARD_FILE).read_text())
    users = card["vocabulary"]["user_ids"]
    rng = np.random.default_rng(0)
    k = tf.constant([10], tf.int32)  # one k per user
    for user in users[:20]:  # warm up
        recommend(user_id=tf.constant([user]), k=k)
    timings = []
    for user in rng.choice(users, LATENCY_CALLS):
        one = tf.constant([str(user)])
        started = time.perf_counter()
        recommend(user_id=one, k=k)
        timings.append((time.perf_counter() - started) * 1e3)
    return {
        "ratings": sum(metrics["rows"].values()),
        "catalogue": metrics["catalogue_size"],
        "train_s": round(train_s, 1),
        "train_stages_s": metrics["fit_seconds_by_stage"],
        "batch_sizes": metrics["batch_sizes"],
        "evaluate_s": metrics["evaluate_seconds"],
        "export_s": round(export_s, 1),
        "model_mb": round(_dir_mb(version), 1),
        "recommend_p50_ms": round(float(np.percentile(timings, 50)), 2),
        "recommend_p99_ms": round(float(np.percentile(timings, 99)), 2),
        "recall_at_10": metrics["recall_at_10"],
        "popularity_recall_at_10": metrics["baselines"]["popularity"]["recall_at_10"],
        "ease": "skipped" if "skipped" in metrics["baselines"]["ease"] else "ran",
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def measure(size: str, work: Path) -> dict:
    users, movies, ratings = SIZES[size]
    data_dir = work / "data" / size
    started = time.perf_counter()
    if not (data_dir / "u.data").exists():
        from train.synthetic import write_synthetic

        write_synthetic(data_dir, users, movies, ratings, seed=0)
    generate_s = time.perf_counter() - started
    # A child per size: its peak RSS is that size's, not the largest so far.
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-m", "loadtest.scale_bench", "--child", str(data_dir), str(work / size)],
        capture_output=True, text=True,
    )
    wall_s = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{size}: the benchmark child failed:\n{child.stderr[-3000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(size=size, users=users, movies=movies, generate_s=round(generate_s, 1), child_wall_s=round(wall_s, 1),
                  wall_s=round(result["train_s"] + result["export_s"], 1),
                  peak_rss_gib=round(peak_kb / 2**20, 2) if peak_kb > before else None)
    return result


def checks(results: list[dict]) -> list[str]:
    """The acceptance limits, one line each, from the 25M row (and 1M for the growth ratio)."""
    by_size = {r["size"]: r for r in results}
    if "25M" not in by_size:
        return []
    last = by_size["25M"]
    shown = {"wall_s": ("load + train + evaluate + export", "{:.0f} s"), "peak_rss_gib": ("peak RSS", "{:.2f} GiB"),
             "model_mb": ("SavedModel", "{:.0f} MB"), "recommend_p50_ms": ("recommend p50", "{:.2f} ms")}
    lines = []
    for key, limit in LIMITS.items():
        label, form = shown[key]
        value = last[key]
        verdict = "not measured" if value is None else ("met" if value <= limit else "**NOT met**")
        lines.append(f"- 25M {label}: {'—' if value is None else form.format(value)} (limit {form.format(limit)}): {verdict}")
    if "1M" in by_size:
        ratio = last["wall_s"] / by_size["1M"]["wall_s"]
        verdict = "met" if ratio <= MAX_WALL_RATIO_1M_TO_25M else "**NOT met**"
        lines.append(f"- wall time 1M → 25M: × {ratio:.1f} for × 25 the ratings (limit × {MAX_WALL_RATIO_1M_TO_25M:.0f}): {verdict}")
    return lines


def plot(results: list[dict], path: Path) -> None:
    """Log-log: wall time, peak RSS, SavedModel size and recommend p50 against the number of ratings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratings = [SIZES[r["size"]][2] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = (("wall_s", "load + train + evaluate + export (s)", "o"), ("peak_rss_gib", "peak RSS (GiB)", "s"),
              ("model_mb", "SavedModel (MB)", "^"), ("recommend_p50_ms", "recommend p50 (ms)", "D"))
    for key, label, marker in series:
        points = [(x, r[key]) for x, r in zip(ratings, results) if r.get(key)]
        ax.plot(*zip(*points), marker=marker, label=label)
    if len(results) > 1:  # the line a linear cost would follow, through the first wall time
        x0, y0 = ratings[0], results[0]["wall_s"]
        ax.plot([x0, ratings[-1]], [y0, y0 * ratings[-1] / x0], ":", color="grey", label="linear in the ratings")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ratings, [r["size"] for r in results])
    ax.set_xlabel("ratings (synthetic MovieLens)")
    ax.set_title("make bench-scale: growth with the data")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(results: list[dict], machine: str, plot_name: str | None = None) -> str:
    sizes = " ".join(r["size"] for r in results)
    lines = [
        START,
        "## Growth with the data (`make bench-scale`)",
        "",
        f"Synthetic MovieLens-format sets (`train/synthetic.py`; 25M has ML-25M's shape), the default preset, one epoch "
        f"per stage, seed-temporal split; {machine}. One process per size; `recommend` is one user, k=10, called "
        f"in-process on the reloaded SavedModel ({LATENCY_CALLS} calls). Wall is load + feature tables + both stages "
        "+ the blend choice + the run's evaluation with its baselines (EASE is skipped above 20,000 movies, with the "
        "reason in metrics.json) + export. Every size trains by one rule: steps take the preset's batch, doubled for "
        "each doubling of the training rows past 262k, at most 16× (`train/config.py` `step_batch`); retrieval's "
        "in-batch softmax keeps 1,024 candidates per group of rows whatever the step's size.",
        "",
        "| ratings | users | movies | batch (retrieval / ranking) | fit retrieval + ranking | evaluation | wall (load … export) "
        "| peak RSS | SavedModel | recommend p50 | p99 | Recall@10 (popularity) | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rss = "—" if r["peak_rss_gib"] is None else f"{r['peak_rss_gib']:.2f} GiB"
        stages = r["train_stages_s"]
        batches = r["batch_sizes"]
        lines.append(
            f"| {r['size']} | {r['users']:,} | {r['movies']:,} | {batches.get('retrieval', '—'):,} / {batches.get('ranking', '—'):,} "
            f"| {stages.get('retrieval', 0):.0f} + {stages.get('ranking', 0):.0f} s | {r['evaluate_s']:.0f} s "
            f"| **{r['wall_s']:.0f} s** | {rss} | **{r['model_mb']:.0f} MB** | **{r['recommend_p50_ms']:.2f} ms** "
            f"| {r['recommend_p99_ms']:.2f} ms | {r['recall_at_10']:.3f} ({r['popularity_recall_at_10']:.3f}) | {r['load_average_1min']:.1f} |"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = SIZES[last["size"]][2] / SIZES[first["size"]][2]
        lines += ["", f"From {first['size']} to {last['size']} ({growth:.0f}× the ratings): wall × {last['wall_s'] / first['wall_s']:.1f}, "
                  f"SavedModel × {last['model_mb'] / first['model_mb']:.1f}, recommend p50 × "
                  f"{last['recommend_p50_ms'] / first['recommend_p50_ms']:.1f}."]
    verdicts = checks(results)
    if verdicts:
        lines += ["", "Issue 13's acceptance (2 cores / 24 GiB):", "", *verdicts]
    if plot_name:
        lines += ["", f"![wall time, peak RSS, SavedModel size and recommend p50 against the ratings, log-log]({plot_name})"]
    lines += ["", f"Reproduce: `make bench-scale` (`python -m loadtest.scale_bench --sizes {sizes}`).", END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(measure_one(Path(argv[1]), Path(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m loadtest.scale_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), choices=list(SIZES))
    parser.add_argument("--work-dir", type=Path, default=Path("reports/scale"))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)

    machine = this_machine()
    results = []
    for size in args.sizes:
        result = measure(size, args.work_dir)
        print(json.dumps(result), flush=True)
        results.append(result)
    (args.work_dir / "scale.json").write_text(json.dumps(results, indent=2))
    load = os.getloadavg()[0]
    plot_path = args.out.parent / PLOT_FILE
    plot(results, plot_path)
    machine_line = (f"{machine.describe()}, load average {load:.1f} when the run ended and per size in the last column "
                    "(other work on the same cores slows a row)")
    write_section(args.out, table(results, machine_line, plot_path.name))
    print(f"wrote the scale table into {args.out} and the plot into {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
