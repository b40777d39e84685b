"""python -m export.tuning_report: the report of finished tuning studies (TUNING.md, preset files, plots).

Reads the studies ``python -m train tune`` left in their database (the same
``--split``, ``--study-name`` and ``--storage`` as the search; the search
prints this command when it ends) and writes, without training anything, a
preset file per study, the study's plots and the report. ``--evaluate`` then
trains each study's preset on its split, exports it and measures it on the
split's test file through the served signatures: the only step of tuning that
reads a test file, and it runs after the search, so nothing it measures goes
back into a study. Exit codes: 0 done, 1 a study or the data is missing, 2 a
bad command line, 130 interrupted.

The preset file (``tuning/<study>.json``) holds every field of the best
feasible trial's config except the split, beside a ``tuned_by`` record
(study, split, trial, validation figures), so ``python -m train --preset
tuning/<study>.json --split u1`` trains exactly what the trial trained. The
plots are Optuna's matplotlib ones (PNG, no browser or plotly needed):
optimisation history, parameter importances (PED-ANOVA, Optuna's default),
parallel coordinates of the most important parameters, and the pruned
trials' intermediate values.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from common import cli, contract
from train import tuning
from train.config import NOT_IN_PRESET_FILES, TrainConfig
from train.evaluation import EVAL_TOP_K, NEW_USER_RATINGS

REPORT_DIR = tuning.REPORT_DIR
PARALLEL_PARAMS = 8  # parallel coordinates of the most important parameters only: 15 axes are unreadable


def counts(study) -> dict[str, int]:
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    return {state: states.count(state) for state in ("complete", "pruned", "fail", "running", "waiting")}


def constraints(attrs: dict) -> str:
    """The study's feasibility constraints in words; a study stored before the coverage one has the RMSE one alone."""
    words = f"constraint validation RMSE ≤ {attrs['max_val_rmse']}"
    if attrs.get("min_val_coverage"):
        words += f", validation coverage@{EVAL_TOP_K} ≥ {attrs['min_val_coverage']}"
    if attrs.get("min_new_user_lift") is not None:
        words += (f", new users' validation Recall@{EVAL_TOP_K} ≥ (1 + {attrs['min_new_user_lift']:g}) × most popular's "
                  f"(recommend_from_ratings from each user's earliest {NEW_USER_RATINGS} training ratings)")
    return words


def best_trial(study):
    """The best feasible completed trial, or None (no trial completed, or none met the RMSE constraint)."""
    try:
        return study.best_trial
    except ValueError:
        return None


def best_config(study) -> TrainConfig | None:
    trial = best_trial(study)
    if trial is None:
        return None
    base = tuning.base_config(study.user_attrs["split"], study.user_attrs["base_preset"])
    return tuning.config_of(base, {**study.user_attrs["fixed"], **trial.params})


def write_preset(study, path: Path) -> TrainConfig | None:
    config = best_config(study)
    if config is None:
        return None
    trial = best_trial(study)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in json.loads(config.to_json()).items()
              if k not in NOT_IN_PRESET_FILES}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "values": values,
        "tuned_by": {"study": study.study_name, "split": study.user_attrs["split"], "trial": trial.number,
                     "objective": study.user_attrs["objective"], "value": trial.value,
                     "validation": trial.user_attrs.get("figures", {})},
    }, indent=2) + "\n")
    return config


def wall_span(study) -> float:
    """Seconds from the first trial's start to the last one's end (over every run of the search)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    if not trials:
        return 0.0
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def plots(study, directory: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNGs in ``directory``: {title: file name}; a plot that cannot be drawn is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    directory.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    finished = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    try:
        importances = optuna.importance.get_param_importances(study) if len(finished) >= 2 else {}
    except (RuntimeError, ValueError):
        importances = {}
    top = list(importances)[:PARALLEL_PARAMS] or None
    drawings = {
        "optimisation history": ("history", lambda: vis.plot_optimization_history(study)),
        "parameter importances": ("importances", (lambda: vis.plot_param_importances(study)) if importances else None),
        "parallel coordinates": ("parallel", (lambda: vis.plot_parallel_coordinate(study, params=top))
                                 if len(finished) >= 2 else None),
        "intermediate values (retrieval epochs; pruned trials stop early)":
            ("intermediate", lambda: vis.plot_intermediate_values(study)),
    }
    for title, (suffix, draw) in drawings.items():
        if draw is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for the matplotlib backend
            try:
                axes = draw()
            except (ValueError, RuntimeError, KeyError):
                continue
        figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).figure
        figure.set_size_inches(11, 5.5)
        figure.tight_layout()
        name = f"{study.study_name}-{suffix}.png"
        figure.savefig(directory / name, dpi=90)
        plt.close(figure)
        made[title] = name
    return made


def _figures(figures: dict) -> str:
    return (f"Recall@10 {figures.get(f'recall_at_{EVAL_TOP_K}', float('nan')):.4f}, NDCG@10 "
            f"{figures.get(f'ndcg_at_{EVAL_TOP_K}', float('nan')):.4f}")


def section(study, report_dir: Path, out: Path) -> list[str]:
    import optuna

    attrs, n = study.user_attrs, counts(study)
    trials = study.get_trials(deepcopy=False)
    finished = n["complete"] + n["pruned"]
    workers = sorted({t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs})
    trial_seconds = sum(t.user_attrs.get("wall_seconds", 0.0) for t in trials)
    validation = attrs["validation"]
    lines = [
        f"## Study `{study.study_name}` (split {attrs['split']})",
        "",
        f"Tuned on {attrs['split']}'s train part ({validation['train_rows']} ratings) and scored on its validation "
        f"part ({validation['val_rows']} ratings, {validation['users_evaluated']} users with a rating ≥ 4); objective "
        f"{attrs['objective']}, {constraints(attrs)}.",
        "",
        "| trials | complete | pruned | failed | pruned share | worker processes | wall (first start → last end) | trial time, summed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(trials)} | {n['complete']} | {n['pruned']} | {n['fail']} | "
        f"{n['pruned'] / finished if finished else 0:.0%} | {len(workers)} | {wall_span(study) / 60:.1f} min | "
        f"{trial_seconds / 60:.1f} min |",
        "",
    ]
    base = next((t for t in trials if t.number == 0 and t.state == optuna.trial.TrialState.COMPLETE), None)
    best = best_trial(study)
    baselines = attrs["baselines"]
    lines += ["On the validation part (new users: `recommend_from_ratings` from each validation user's earliest "
              f"{NEW_USER_RATINGS} training ratings; a study stored before this figure has none):", "",
              "| | Recall@10 | NDCG@10 | coverage@10 | val RMSE | blend w / p | new users Recall@10 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, trial in ((f"best trial (#{best.number})" if best else "", best),
                         (f"`{attrs['base_preset']}` preset (trial 0)", base)):
        if trial is None:
            continue
        f = trial.user_attrs.get("figures", {})
        lines.append(f"| {label} | {f[f'recall_at_{EVAL_TOP_K}']:.4f} | {f[f'ndcg_at_{EVAL_TOP_K}']:.4f} | {f[f'coverage_at_{EVAL_TOP_K}']} | "
                     f"{f['val_rmse']:.4f} | {f['blend_weight']:g} / {f.get('popularity_penalty', 0):g} | "
                     f"{_figure(f.get(f'new_user_recall_at_{EVAL_TOP_K}'))} |")
    for key, label in (("ease", "EASE (λ=300)"), ("popularity", "most popular")):
        f = baselines.get(key, {})
        new_users = attrs.get("new_user_popularity", {}).get(f"recall_at_{EVAL_TOP_K}") if key == "popularity" else None
        if f:
            lines.append(f"| {label} | {f[f'recall_at_{EVAL_TOP_K}']:.4f} | {f[f'ndcg_at_{EVAL_TOP_K}']:.4f} | "
                         f"{f[f'coverage_at_{EVAL_TOP_K}']} | | | {_figure(new_users)} |")
    lines.append("")
    if best is None:
        # A preset file left by an earlier search of this study's name would say otherwise: it goes.
        (report_dir / f"{study.study_name}.json").unlink(missing_ok=True)
        lines += [f"No trial has completed within the {constraints(attrs)}: "
                  "no preset file.", ""]
    else:
        preset = report_dir / f"{study.study_name}.json"
        base_config = tuning.base_config(attrs["split"], attrs["base_preset"])
        config = best_config(study)
        lines += [f"Best parameters (preset file [`{_rel(preset, out)}`]({_rel(preset, out)})):", "",
                  f"| parameter | best | `{attrs['base_preset']}` |", "|---|---:|---:|"]
        searched = [f.name for f in dataclasses.fields(config) if f.name in tuning.SPACE or f.name == "layer_sizes"]
        for field in searched:  # every field of the search space (layer_sizes: ranking_layers x ranking_width)
            fixed = " (fixed)" if field in attrs["fixed"] else ""
            lines.append(f"| {field}{fixed} | {_value(getattr(config, field))} | {_value(getattr(base_config, field))} |")
        lines += ["", f"Train it: `python -m train --preset {_rel(preset, out)} --split {attrs['split']} "
                      f"--run-name tuned-{attrs['split']}`", ""]
    for title, name in plots(study, report_dir).items():
        lines += [f"![{title}]({_rel(report_dir / name, out)})", ""]
    return lines


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _value(value) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rel(path: Path, out: Path) -> str:
    return os.path.relpath(path, out.parent).replace(os.sep, "/")


def evaluate(studies: list, data_dir: Path, report_dir: Path = REPORT_DIR) -> list[dict]:
    """Each study's preset trained on its split, exported, measured on the test part (served signatures).

    The only step of tuning that reads a test file, and it runs after the
    search: nothing it measures goes back into a study.
    """
    from export.evaluation_report import measure

    results = []
    for study in studies:
        config = best_config(study)
        if config is None:
            continue
        config = dataclasses.replace(config, preset=str(report_dir / f"{study.study_name}.json"))
        results.append({"study": study.study_name, **measure(config.split, Path(data_dir),
                                                            Path(contract.REPORTS_DIR) / "tuning", config)})
    return results


def evaluation_lines(results: list[dict]) -> list[str]:
    lines = ["## Test figures of the tuned presets (read after the search)", "",
             "Each study's preset trained on its split, exported, and measured through the served `recommend` and",
             "`serving_default` signatures on the split's test part (as `make evaluate`); EASE from the same run.",
             "Every row is clean: its study saw only that split's train and validation parts (a fold: its base file).", "",
             "| split | study | Recall@10 | NDCG@10 | coverage@10 | test RMSE | EASE Recall@10 | EASE NDCG@10 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        m, ease = r["model"], r["baselines"]["ease"]
        lines.append(f"| {r['split']} | `{r['study']}` | {m['recall_at_10']:.4f} | {m['ndcg_at_10']:.4f} | "
                     f"{m['coverage_at_10']} | {m['test_rmse']:.4f} | {ease.get('recall_at_10', float('nan')):.4f} | "
                     f"{ease.get('ndcg_at_10', float('nan')):.4f} |")
    if len(results) > 1:
        mean = {key: np.mean([r["model"][key] for r in results]) for key in ("recall_at_10", "ndcg_at_10", "test_rmse")}
        ease = {key: np.mean([r["baselines"]["ease"].get(key, np.nan) for r in results])
                for key in ("recall_at_10", "ndcg_at_10")}
        lines.append(f"| mean | | {mean['recall_at_10']:.4f} | {mean['ndcg_at_10']:.4f} | | {mean['test_rmse']:.4f} | "
                     f"{ease['recall_at_10']:.4f} | {ease['ndcg_at_10']:.4f} |")
    return lines + [""]


def search_commands(studies: list) -> list[str]:
    """The command lines that last ran each study's search (recorded by ``python -m train tune``), each once."""
    commands = []
    for study in studies:
        command = study.user_attrs.get(tuning.SEARCH_COMMAND)
        if command is None:  # a study searched before the command was recorded: its split and name
            split = study.user_attrs["split"]
            prefix = study.study_name.removesuffix(f"-{split}")
            command = " ".join(["python -m train tune --split", split,
                                *(["--study-name", prefix] if prefix != tuning.DEFAULT_STUDY else [])])
        if command not in commands:
            commands.append(command)
    return commands


def write(studies: list, out: Path, command: str, wall_seconds: float, evaluation: list[dict] | None = None) -> None:
    """TUNING.md at ``out``, and a preset file and plots per study in tuning/ beside it."""
    report_dir = out.parent / REPORT_DIR
    lines = [
        "# Tuning",
        "",
        f"Written by `{command}` on {datetime.date.today().isoformat()}, {platform.machine()} with "
        f"{len(os.sched_getaffinity(0))} cores (this command ran {wall_seconds / 60:.1f} min), from the studies the "
        "search below left in their database. Search engine: Optuna (TPE sampler, seeded, multivariate, constant "
        "liar; MedianPruner on each retrieval epoch's validation figure).",
        "Each trial trains on the split's train part and is scored on its validation part (a fold: the seeded 10% of",
        "its base file that also picks the blend); no test file is read during a search.",
        "",
    ]
    for study in studies:
        preset = report_dir / f"{study.study_name}.json"
        write_preset(study, preset)
        lines += section(study, report_dir, out)
    if evaluation:
        lines += evaluation_lines(evaluation)
    lines += ["Reproduce: the search (the same command resumes a stopped search: the study lives in its database), "
              "then this report:", ""]
    lines += [f"    {line}" for line in (*search_commands(studies), command)] + [""]
    out.write_text("\n".join(lines))
    print(f"wrote {out} and {report_dir}/", flush=True)


def load_studies(splits: list[str], prefix: str, storage: str | None) -> list:
    """The studies of ``python -m train tune --split ... --study-name prefix --storage storage``, as it left them.

    LookupError when a database or a study is not there (a SQLite file is never created here).
    """
    import optuna

    studies = []
    for split in splits:
        name = tuning.study_name(prefix, split)
        url = tuning.storage_url(name, storage)
        database = tuning.sqlite_file(url)
        if database is not None and not database.is_file():
            raise LookupError(f"no study database {database}: run the search first (python -m train tune --split "
                              f"{split}{'' if prefix == tuning.DEFAULT_STUDY else f' --study-name {prefix}'})")
        try:
            study = optuna.load_study(study_name=name, storage=tuning.storage_of(url))
        except KeyError:
            raise LookupError(f"no study {name} in {url}: run the search first (python -m train tune)") from None
        if "split" not in study.user_attrs:
            raise LookupError(f"study {name} in {url} was not made by python -m train tune (no split recorded)")
        studies.append(study)
    return studies


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.tuning_report", description=cli.plain(__doc__.split("\n\n", 1)[1]),
        usage="%(prog)s [--split u1 ...] [--study-name NAME] [--storage URL] [--out TUNING.md] [--evaluate]",
    )
    parser.add_argument("--split", nargs="+", choices=tuning.TUNABLE_SPLITS, default=["u1"],
                        help="the studies to report, one per split, as the search was given (default u1)")
    parser.add_argument("--study-name", default=tuning.DEFAULT_STUDY,
                        help="the study of split S is NAME-S, as the search was given (default %(default)s)")
    parser.add_argument("--storage", default=None,
                        help="the studies' database URL, as the search was given (default: "
                             f"{tuning.storage_url('<study>-<split>')})")
    parser.add_argument("--out", type=Path, default=Path("TUNING.md"),
                        help=f"the report; preset files and plots go to {REPORT_DIR}/ beside it (default %(default)s)")
    parser.add_argument("--evaluate", action="store_true",
                        help="also train each study's preset on its split, export it and measure it on the test part "
                             "through the served signatures (the only step of tuning that reads test data)")
    parser.add_argument("--data-dir", default=None,
                        help="MovieLens 100K folder for --evaluate (default: $MOVIELENS_DIR, the cache, a download)")
    cli.add_verbose(parser)
    return parser


def _evaluate(studies: list, data_dir: str | None, report_dir: Path) -> list[dict]:
    from common.quiet import native_stderr_silenced
    from train.data import DataError
    from train.download import DataUnavailable, locate

    try:
        located = locate(data_dir)
        with native_stderr_silenced():
            import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
        return evaluate(studies, located, report_dir)
    except (DataUnavailable, DataError) as e:
        raise LookupError(str(e)) from None


@cli.interruptible
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cli.apply_verbose(args)
    started = time.time()
    tuning.quiet_optuna()
    try:
        studies = load_studies(args.split, args.study_name, args.storage)
        evaluation = _evaluate(studies, args.data_dir, args.out.parent / REPORT_DIR) if args.evaluate else None
    except LookupError as e:
        return cli.fail(str(e))
    write(studies, args.out, command=" ".join(["python -m export.tuning_report", *map(shlex.quote, argv)]),
          wall_seconds=time.time() - started, evaluation=evaluation)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
