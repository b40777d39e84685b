"""TUNING.md, the plots and the preset file from a study of recorded trials (no training here).

The command line reads the studies from their database as the search left
them; ``--evaluate``'s measurement is replaced by a recorder (the real one
trains and exports: ``export/evaluation_report.py``, ``make evaluate``).
"""

from __future__ import annotations

import json
import shlex

import optuna
import pytest

from export import tuning_report
from train import tuning
from train.config import TrainConfig

SEARCH = "python -m train tune --split u1 --trials 40"


def _trial(params: dict, value: float | None, val_rmse: float, state=optuna.trial.TrialState.COMPLETE):
    figures = {"recall_at_10": value / 2 if value else 0.0, "ndcg_at_10": value / 2 if value else 0.0,
               "coverage_at_10": 300, "val_rmse": val_rmse, "blend_weight": 0.5, "users_evaluated": 800}
    distributions = {}
    for name, (kind, arguments) in tuning.SPACE.items():
        if name not in params:
            continue
        if kind == "categorical":
            distributions[name] = optuna.distributions.CategoricalDistribution(arguments[0])
        elif kind == "int":
            distributions[name] = optuna.distributions.IntDistribution(*arguments)
        else:
            distributions[name] = optuna.distributions.FloatDistribution(*arguments, log=kind == "log")
    return optuna.trial.create_trial(
        state=state, value=value if state == optuna.trial.TrialState.COMPLETE else None, params=params,
        distributions=distributions, intermediate_values={0: 0.1, 1: 0.2},
        user_attrs={"worker": "host:1", "wall_seconds": 30.0,
                    **({"figures": figures} if state == optuna.trial.TrialState.COMPLETE else {})},
        system_attrs={"constraints:val_rmse": val_rmse - 0.95} if state == optuna.trial.TrialState.COMPLETE else {},
    )


def _recorded_study(storage=None):
    """A study as python -m train tune leaves it: its attributes and four trials (no training)."""
    study = optuna.create_study(study_name="two-stage-u1", direction="maximize", storage=storage)
    for key, value in {"split": "u1", "base_preset": "two-stage-hand-set", "fixed": {"retrieval_dim": 64}, "seed": 42,
                       "max_val_rmse": 0.95, "objective": "validation Recall@10 + NDCG@10 (maximised)",
                       "validation": {"train_rows": 72000, "val_rows": 8000, "users": 900, "users_evaluated": 831},
                       "baselines": {"ease": {"recall_at_10": 0.25, "ndcg_at_10": 0.2, "coverage_at_10": 361},
                                     "popularity": {"recall_at_10": 0.12, "ndcg_at_10": 0.09, "coverage_at_10": 54}},
                       tuning.SEARCH_COMMAND: SEARCH}.items():
        study.set_user_attr(key, value)
    base = {k: v for k, v in tuning.params_of(tuning.base_config("u1")).items() if k != "retrieval_dim"}
    study.add_trial(_trial(base, 0.45, 0.90))
    study.add_trial(_trial({**base, "epochs": 12, "l2": 0.01}, 0.47, 0.92))  # the best feasible
    study.add_trial(_trial({**base, "epochs": 40}, 0.50, 0.99))  # higher, but over the RMSE constraint
    study.add_trial(_trial({**base, "epochs": 7}, None, 0.0, optuna.trial.TrialState.PRUNED))
    return study


@pytest.fixture
def study():
    return _recorded_study()


@pytest.fixture
def stored(tmp_path) -> str:
    """The same study in a SQLite database, as the search leaves it: its URL."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _recorded_study(tuning.storage_of(url))
    return url


def test_the_report_names_counts_best_feasible_trial_and_plots(study, tmp_path):
    out = tmp_path / "TUNING.md"
    tuning_report.write([study], out, command="python -m export.tuning_report --split u1", wall_seconds=90)
    report = out.read_text()
    assert "| 4 | 3 | 1 | 0 | 25% | 1 |" in report  # trials, complete, pruned, failed, pruned share, workers
    assert "| best trial (#1) | 0.2350 | 0.2350 | 300 | 0.9200 | 0.5 / 0 |" in report
    assert "| `two-stage-hand-set` preset (trial 0) |" in report and "| EASE (λ=300) | 0.2500 | 0.2000 | 361 | | |" in report
    assert "| retrieval_dim (fixed) | 64 | 64 |" in report and "| epochs | 12 | 30 |" in report
    assert "python -m train --preset tuning/two-stage-u1.json --split u1" in report
    # It ends with how to reproduce it: the search's own command line, then the report's.
    assert report.rstrip().endswith(f"    {SEARCH}\n    python -m export.tuning_report --split u1")
    for suffix in ("history", "parallel", "intermediate"):
        assert (tmp_path / "tuning" / f"two-stage-u1-{suffix}.png").is_file()

    preset = json.loads((tmp_path / "tuning" / "two-stage-u1.json").read_text())
    assert preset["tuned_by"]["trial"] == 1 and preset["tuned_by"]["validation"]["val_rmse"] == 0.92
    assert "split" not in preset["values"] and "preset" not in preset["values"]
    config = TrainConfig(**{**preset["values"], "layer_sizes": tuple(preset["values"]["layer_sizes"])})
    assert (config.epochs, config.l2, config.retrieval_dim) == (12, 0.01, 64)


def test_no_feasible_trial_no_preset(study, tmp_path):
    infeasible = optuna.create_study(study_name="two-stage-u2", direction="maximize")
    for key, value in study.user_attrs.items():
        infeasible.set_user_attr(key, value)
    infeasible.add_trial(_trial(study.trials[0].params, 0.4, 1.2))
    (tmp_path / "tuning").mkdir(exist_ok=True)
    (tmp_path / "tuning" / "two-stage-u2.json").write_text("{}")  # an earlier search's best, now stale
    tuning_report.write([infeasible], tmp_path / "TUNING.md", command="c", wall_seconds=1)
    assert "No trial has completed within the constraint" in (tmp_path / "TUNING.md").read_text()
    assert not (tmp_path / "tuning" / "two-stage-u2.json").exists()


def test_the_command_line_reads_the_studies_from_their_database(stored, tmp_path):
    out = tmp_path / "report" / "TUNING.md"
    out.parent.mkdir()
    argv = ["--split", "u1", "--storage", stored, "--out", str(out)]
    assert tuning_report.main(argv) == 0
    report = out.read_text()
    assert "| best trial (#1) | 0.2350 | 0.2350 | 300 | 0.9200 | 0.5 / 0 |" in report
    assert report.rstrip().endswith(f"    {SEARCH}\n    python -m export.tuning_report {shlex.join(argv)}")
    assert json.loads((out.parent / "tuning" / "two-stage-u1.json").read_text())["tuned_by"]["trial"] == 1
    assert "Test figures" not in report  # no --evaluate: no test file read


def test_a_missing_study_is_one_error_line_and_no_new_database(stored, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tuning, "TUNING_DIR", tmp_path / "runs" / "tuning")
    assert tuning_report.main(["--split", "u1", "--out", str(tmp_path / "TUNING.md")]) == 1
    assert "no study database" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    assert tuning_report.main(["--split", "u2", "--storage", stored, "--out", str(tmp_path / "TUNING.md")]) == 1
    assert "no study two-stage-u2" in capsys.readouterr().err and not (tmp_path / "TUNING.md").exists()


def test_evaluate_measures_each_tuned_preset_after_reading_the_studies(stored, tmp_path, fixture_dir, monkeypatch):
    from export import evaluation_report

    calls = []

    def measure(split, data_dir, work, config):
        calls.append((split, data_dir, config))
        figures = {"recall_at_10": 0.3, "ndcg_at_10": 0.25, "coverage_at_10": 280, "test_rmse": 0.93}
        return {"split": split, "model": figures, "baselines": {"ease": {"recall_at_10": 0.28, "ndcg_at_10": 0.22}}}

    monkeypatch.setattr(evaluation_report, "measure", measure)
    out = tmp_path / "TUNING.md"
    assert tuning_report.main(["--storage", stored, "--out", str(out), "--evaluate", "--data-dir", str(fixture_dir)]) == 0
    [(split, data_dir, config)] = calls
    assert (split, data_dir) == ("u1", fixture_dir)
    assert config.preset == str(tmp_path / "tuning" / "two-stage-u1.json") and (config.epochs, config.l2) == (12, 0.01)
    report = out.read_text()
    assert "## Test figures of the tuned presets (read after the search)" in report
    assert "| u1 | `two-stage-u1` | 0.3000 | 0.2500 | 280 | 0.9300 | 0.2800 | 0.2200 |" in report
