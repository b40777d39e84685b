"""python -m export.scale_bench: how train, export, model size and recommend latency grow with the data.

For each size, a synthetic MovieLens-format set (``train/synthetic.py``:
power-law popularity, latent tastes) is written once into the work folder,
then one child process per size loads it, trains the default preset for one
epoch per stage on the seed-temporal split (including the run's evaluation
and baselines), exports it, and times ``recommend`` for one user, k = 10, on
the reloaded SavedModel in-process. A child per size makes its peak RSS its
own. The table goes between markers in BENCHMARKS.md, which ``make bench``
keeps.
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

SIZES = {  # name: (users, movies, ratings)
    "100K": (943, 1_682, 100_000),
    "1M": (20_000, 45_000, 1_000_000),
    "5M": (60_000, 50_000, 5_000_000),
    "25M": (162_000, 59_000, 25_000_000),
}
DEFAULT_SIZES = ("100K", "1M", "5M")
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
LATENCY_CALLS = 300


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
        "evaluate_s": metrics["evaluate_seconds"],
        "export_s": round(export_s, 1),
        "model_mb": round(_dir_mb(version), 1),
        "recommend_p50_ms": round(float(np.percentile(timings, 50)), 2),
        "recommend_p99_ms": round(float(np.percentile(timings, 99)), 2),
        "recall_at_10": metrics["recall_at_10"],
        "popularity_recall_at_10": metrics["baselines"]["popularity"]["recall_at_10"],
        "ease": "skipped" if "skipped" in metrics["baselines"]["ease"] else "ran",
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
        [sys.executable, "-m", "export.scale_bench", "--child", str(data_dir), str(work / size)],
        capture_output=True, text=True,
    )
    wall_s = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{size}: the benchmark child failed:\n{child.stderr[-3000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(size=size, users=users, movies=movies, generate_s=round(generate_s, 1), child_wall_s=round(wall_s, 1),
                  peak_rss_gb=round(peak_kb / 1e6, 2) if peak_kb > before else None)
    return result


def table(results: list[dict], machine: str) -> str:
    lines = [
        START,
        "## Growth with the data (`make bench-scale`)",
        "",
        f"Synthetic MovieLens-format sets (`train/synthetic.py`), the default preset, one epoch per stage, seed-temporal split; "
        f"{machine}. One process per size; `recommend` is one user, k=10, called in-process on the reloaded SavedModel "
        f"({LATENCY_CALLS} calls). Train includes loading, the feature tables, both stages, the blend choice and the "
        "run's evaluation with its baselines (EASE is skipped above 20,000 movies).",
        "",
        "| ratings | users | movies | train (1 epoch each) | export | train + export | peak RSS | SavedModel | recommend p50 | p99 | Recall@10 (popularity) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rss = "—" if r["peak_rss_gb"] is None else f"{r['peak_rss_gb']:.2f} GB"
        lines.append(
            f"| {r['size']} | {r['users']:,} | {r['movies']:,} | {r['train_s']:.0f} s | {r['export_s']:.0f} s | "
            f"**{r['train_s'] + r['export_s']:.0f} s** | {rss} | **{r['model_mb']:.0f} MB** | **{r['recommend_p50_ms']:.2f} ms** | "
            f"{r['recommend_p99_ms']:.2f} ms | {r['recall_at_10']:.3f} ({r['popularity_recall_at_10']:.3f}) |"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = SIZES[last["size"]][2] / SIZES[first["size"]][2]
        wall = (last["train_s"] + last["export_s"]) / (first["train_s"] + first["export_s"])
        lines += ["", f"From {first['size']} to {last['size']} ({growth:.0f}× the ratings): train + export × {wall:.1f}, "
                  f"SavedModel × {last['model_mb'] / first['model_mb']:.1f}, recommend p50 × "
                  f"{last['recommend_p50_ms'] / first['recommend_p50_ms']:.1f}."]
    lines += ["", "Reproduce: `make bench-scale` (`python -m export.scale_bench --sizes 100K 1M 5M`).", END]
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
    parser = argparse.ArgumentParser(prog="python -m export.scale_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), choices=list(SIZES))
    parser.add_argument("--work-dir", type=Path, default=Path("reports/scale"))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)

    from loadtest.machine import this_machine

    machine = this_machine()
    results = []
    for size in args.sizes:
        result = measure(size, args.work_dir)
        print(json.dumps(result), flush=True)
        results.append(result)
    (args.work_dir / "scale.json").write_text(json.dumps(results, indent=2))
    load = os.getloadavg()[0]
    write_section(args.out, table(results, f"{machine.describe()}, load average {load:.1f} when the run ended (other work on the same cores slows every row alike)"))
    print(f"wrote the scale table into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
