"""The search on the fixture: tiny real trials (the trainer's own fit), never a stand-in objective.

A smoke study in-process, then the report command it prints (report, plots,
preset file that python -m train trains; resume adds nothing), the pruning wiring. With
RUN_TUNING_SCENARIOS=1 (make test-tuning): a trial that cannot have read the test part, two
worker processes on one SQLite study with one of them killed mid-trial, resumed to the budget, a
20-trial two-worker study, and workers opening a new study database at once.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from train import config as train_config
from train import splits, tuning
from train.config import PRESETS, TWO_STAGE, TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
# The smallest trial that is still the real one: every stage fits, the blend is chosen, the figures computed.
TINY = ["retrieval_epochs=2", "epochs=1", "retrieval_dim=16", "layer_sizes=8", "embedding_dim=8", "candidates=50",
        "history_sample=16"]
TINY_FLAGS = [flag for assignment in TINY for flag in ("--fix", assignment)] + [
    "--max-val-rmse", "10", "--pruner-startup-trials", "2", "--pruner-warmup-epochs", "0"]


def tune_args(data_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--storage", f"sqlite:///{tmp_path / 'study.db'}", *TINY_FLAGS, *extra]


def printed_report_command(output: str) -> list[str]:
    """The report command the search prints when it ends, as an argv for export.tuning_report.main."""
    [line] = [line.strip() for line in output.splitlines() if line.strip().startswith("python -m export.tuning_report")]
    return shlex.split(line)[3:]


def load(tmp_path: Path, name: str = "two-stage-u1") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=tuning.storage_of(f"sqlite:///{tmp_path / 'study.db'}"))


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_the_space_maps_to_configs_and_back():
    preset = TrainConfig(**{**PRESETS[TWO_STAGE], "preset": TWO_STAGE})
    assert tuning.config_of(preset, tuning.params_of(preset)) == preset
    assert tuning.layer_sizes(3, 128) == (128, 64, 32) and tuning.layer_sizes(2, 8) == (8, 8)
    fixed = tuning.parse_fixed(["retrieval_epochs=3", "layer_sizes=64 32", "l2=0.01"])
    assert fixed == {"retrieval_epochs": 3, tuning.RANKING_LAYERS: 2, tuning.RANKING_WIDTH: 64, "l2": 0.01}
    with pytest.raises(ValueError, match="not a searched parameter"):
        tuning.parse_fixed(["batch_size=8"])
    assert tuning.shares(7, 2) == [4, 3] and tuning.shares(1, 3) == [1] and tuning.shares(0, 2) == []
    # Every field the search sets exists on TrainConfig (layer_sizes through the two ranking-shape parameters).
    fields = {f.name for f in train_config.dataclasses.fields(TrainConfig)}
    assert set(tuning.SPACE) - {tuning.RANKING_LAYERS, tuning.RANKING_WIDTH} <= fields


def test_smoke_study_writes_the_report_and_a_preset_python_m_train_trains(fixture_dir, tmp_path, capsys):
    from export import tuning_report  # the report sits above train: the search only prints its command
    from train import __main__ as train_main

    # No pruning among three trials: which trial the pruner stops depends on what the sampler draws.
    # --min-new-user-lift -1: every trial feasible, the constraint recorded (lift ≥ -1 always holds).
    assert train_main.main(["tune", *tune_args(fixture_dir, tmp_path, "--trials", "3", "--pruner-startup-trials", "3",
                                               "--min-new-user-lift", "-1")]) == 0
    report_argv = printed_report_command(capsys.readouterr().out)
    assert report_argv == ["--split", "u1", "--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    assert not (tmp_path / "TUNING.md").exists()  # the search writes no report
    assert tuning_report.main([*report_argv, "--out", str(tmp_path / "TUNING.md")]) == 0
    study = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 3
    first = study.trials[0]
    assert tuning.config_of(tuning.base_config("u1"), {**tuning.parse_fixed(TINY), **first.params}) == \
        tuning.config_of(tuning.base_config("u1"), tuning.parse_fixed(TINY))  # trial 0: the preset as it stands
    for trial in study.trials:
        figures = trial.user_attrs["figures"]
        assert set(figures) >= {"recall_at_10", "ndcg_at_10", "coverage_at_10", "val_rmse", "blend_weight"}
        assert trial.value == pytest.approx(figures["recall_at_10"] + figures["ndcg_at_10"])
        # New users: the served recommend_from_ratings from 5 ratings, against most popular on the same users.
        popular = study.user_attrs["new_user_popularity"]["recall_at_10"]
        assert figures["new_user_lift"] == pytest.approx(figures["new_user_recall_at_10"] / popular - 1)
        assert 0 <= figures["new_user_recall_at_10"] <= 1 and 0 <= figures["new_user_ndcg_at_10"] <= 1
        assert trial.constraints["new_user_lift"] == pytest.approx(-1 - figures["new_user_lift"])
        assert trial.user_attrs["wall_seconds"] > 0 and trial.user_attrs["worker"]
        assert sorted(trial.intermediate_values) == [0, 1]  # one report per retrieval epoch
    assert study.user_attrs["baselines"]["ease"]["recall_at_10"] >= 0

    report = (tmp_path / "TUNING.md").read_text()
    assert "## Study `two-stage-u1` (split u1)" in report and "| 3 | 3 | 0 | 0 |" in report
    assert "new users' validation Recall@10 ≥ (1 + -1) × most popular's" in report
    for suffix in ("history", "importances", "parallel", "intermediate"):
        assert (tmp_path / "tuning" / f"two-stage-u1-{suffix}.png").stat().st_size > 1000
        assert f"(tuning/two-stage-u1-{suffix}.png)" in report
    preset = tmp_path / "tuning" / "two-stage-u1.json"
    assert json.loads(preset.read_text())["tuned_by"]["trial"] == study.best_trial.number

    # python -m train --preset FILE resolves to exactly the best trial's config.
    parser = train_main.build_parser()
    config = train_config.from_arguments(parser.parse_args(["--run-name", "x", "--preset", str(preset), "--split", "u1"]))
    assert config == tuning.dataclasses.replace(tuning_report.best_config(study), preset=str(preset))

    # The same command again: the budget is met, nothing runs, the report command is printed again.
    capsys.readouterr()
    assert tuning.main(tune_args(fixture_dir, tmp_path, "--trials", "3")) == 0
    output = capsys.readouterr().out
    assert "3 of 3 trials done or running, 0 to run" in output and printed_report_command(output) == report_argv
    assert len(load(tmp_path).trials) == 3
    # The report's "reproduce" stays the command that ran the trials, not the one that found nothing to run.
    assert load(tmp_path).user_attrs[tuning.SEARCH_COMMAND] == shlex.join(
        ["python", "-m", "train", "tune", *tune_args(fixture_dir, tmp_path, "--trials", "3", "--pruner-startup-trials", "3",
                                                     "--min-new-user-lift", "-1")])


@pytest.mark.skipif(os.environ.get("RUN_TUNING_SCENARIOS") != "1",
                    reason="ten seconds on two cores: make test-tuning (RUN_TUNING_SCENARIOS=1)")
def test_a_trial_never_reads_the_test_part(fixture_dir, tmp_path, monkeypatch):
    """The fold's test file deleted, its ratings cut out of u.data too: the trial runs, with the same figures.

    Every file the trial opens is recorded as well: u1.base, never u1.test.
    """
    blind = tmp_path / "ml"
    shutil.copytree(fixture_dir, blind)
    test_lines = set((blind / "u1.test").read_text().splitlines())
    (blind / "u1.test").unlink()
    kept = [line for line in (blind / "u.data").read_text().splitlines() if line not in test_lines]
    assert len(kept) == 900 - len(test_lines)
    (blind / "u.data").write_text("\n".join(kept) + "\n")

    opened: list[str] = []
    real_open = io.open

    def recording_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            opened.append(Path(file).name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", recording_open)  # what Path.open calls
    monkeypatch.setattr(builtins, "open", recording_open)
    fixed = tuning.parse_fixed(TINY)
    params = {k: v for k, v in tuning.params_of(tuning.base_config("u1")).items() if k not in fixed}
    figures = []
    for data_dir in (fixture_dir, blind):
        objective = tuning.Objective(data_dir, tuning.base_config("u1"), fixed, max_val_rmse=10)
        trial = optuna.trial.FixedTrial(params)
        value = objective(trial)
        figures.append((value, trial.user_attrs["figures"]))
    assert "u1.base" in opened and "u1.test" not in opened
    assert figures[0] == figures[1]

    # And the trial is the trainer's own story: python -m train on the same config (which does read u1.test,
    # for its test figures) chooses the same blend with the same validation figures.
    from train import trainer

    monkeypatch.undo()
    config = tuning.config_of(tuning.base_config("u1"), {**params, **fixed})
    metrics = trainer.run(config, fixture_dir, tmp_path / "run", verbose=0)
    value, trial_figures = figures[0]
    assert metrics["blend_weight"] == trial_figures["blend_weight"]
    assert metrics["popularity_penalty"] == trial_figures["popularity_penalty"]
    chosen = trainer.blend_key(metrics["blend_weight"], metrics["popularity_penalty"])
    assert metrics["val_recall_at_10_by_blend"][chosen] == trial_figures["recall_at_10"]
    assert metrics["val_rmse"] == pytest.approx(trial_figures["val_rmse"], abs=1e-6)


def test_without_test_is_the_trainers_split_minus_its_test_part(fixture_dir):
    from train import data

    movielens = data.load(fixture_dir)
    for name in ("u2", splits.SEED_TEMPORAL):
        full, tuned = splits.make(name, movielens, seed=7), splits.without_test(name, movielens, seed=7)
        assert np.array_equal(full.train, tuned.train) and np.array_equal(full.val, tuned.val)
        assert len(tuned.test) == 0


def test_a_trailing_trial_is_pruned_during_retrieval(fixture_dir):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    fixed = tuning.parse_fixed(TINY)
    study.enqueue_trial({k: v for k, v in tuning.params_of(tuning.base_config("u1")).items() if k not in fixed})
    study.optimize(tuning.Objective(fixture_dir, tuning.base_config("u1"), fixed, max_val_rmse=10), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_after_retrieval_epoch"] == 1 and list(trial.intermediate_values) == [0]
    assert trial.user_attrs["wall_seconds"] > 0 and "figures" not in trial.user_attrs


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def _finished_distinct(study: optuna.Study) -> list:
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    assert len({t.number for t in finished}) == len(finished)
    return finished


def _has_heartbeat(database: Path, trial_id: int) -> bool:
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
        try:
            rows = connection.execute("SELECT 1 FROM trial_heartbeats WHERE trial_id = ?", (trial_id,)).fetchall()
        except sqlite3.OperationalError:  # the table is not there yet, or the database is busy
            return False
    return bool(rows)


@pytest.mark.skipif(os.environ.get("RUN_TUNING_SCENARIOS") != "1",
                    reason="half a minute on two cores: make test-tuning (RUN_TUNING_SCENARIOS=1)")
def test_two_workers_share_a_study_and_a_killed_one_resumes(fixture_dir, tmp_path):
    """Two worker processes on one SQLite study; one is SIGKILLed mid-trial; the same command resumes to the budget."""
    budget, heartbeat = 4, 1
    # Trials long enough to be killed mid-way: eight retrieval epochs, none pruned, and the kill lands while a
    # trial is in its first epoch, so it cannot finish between the read that picks it and the kill.
    slow = ["--fix", "retrieval_epochs=8", "--pruner-warmup-epochs", "100"]
    command = [sys.executable, "-m", "train", "tune",
               *tune_args(fixture_dir, tmp_path, "--trials", str(budget), "--workers", "2",
                          "--heartbeat", str(heartbeat), *slow)]
    first = subprocess.Popen(command, cwd=tmp_path, env=_environment(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.3)
        if not (tmp_path / "study.db").exists():
            continue
        try:
            trials = load(tmp_path).get_trials(deepcopy=False)
        except (KeyError, optuna.exceptions.StorageInternalError):
            continue  # the study is not created yet
        # Only a trial whose heartbeat is recorded can go stale: Optuna leaves a trial killed before its
        # first heartbeat RUNNING for good, so the kill waits for that row.
        running = [t for t in trials if t.state.name == "RUNNING" and "worker" in t.user_attrs
                   and not t.intermediate_values and _has_heartbeat(tmp_path / "study.db", t._trial_id)]
        if any(t.state.name == "COMPLETE" for t in trials) and running:
            killed = running[0]
            os.kill(int(killed.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    output = first.communicate(timeout=180)[0]
    assert killed is not None, output
    assert first.returncode == 1 and "exited with -9" in output and "resumes" in output, output

    time.sleep(3 * heartbeat + 1)  # the killed trial's heartbeat goes stale
    # Resumed by the same command with one worker, in this process (a fresh one would only add TensorFlow's start).
    assert tuning.main(tune_args(fixture_dir, tmp_path, "--trials", str(budget), "--heartbeat", str(heartbeat), *slow)) == 0
    study = load(tmp_path)
    assert len(_finished_distinct(study)) == budget
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [killed.number]
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number)
    # Compared with the failed trial as stored, not the snapshot read at the kill: in one CI run that snapshot
    # held the trial's worker attribute but none of its parameters.
    assert retry.state.name in ("COMPLETE", "PRUNED") and retry.params and retry.params == failed[0].params
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    assert len({t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}) == 3  # 2 workers, then 1


@pytest.mark.skipif(os.environ.get("RUN_TUNING_SCENARIOS") != "1",
                    reason="about a minute on two cores: make test-tuning (RUN_TUNING_SCENARIOS=1)")
def test_two_workers_finish_a_twenty_trial_study(fixture_dir, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "train", "tune", *tune_args(fixture_dir, tmp_path, "--trials", "20", "--workers", "2")],
        cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    study = load(tmp_path)
    finished = _finished_distinct(study)
    assert len(finished) == 20 == len(study.trials)  # none lost, none extra, none failed
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 20  # distinct parameters too


@pytest.mark.skipif(os.environ.get("RUN_TUNING_SCENARIOS") != "1",
                    reason="six worker processes: make test-tuning (RUN_TUNING_SCENARIOS=1)")
def test_processes_opening_a_new_study_database_at_once(tmp_path):
    """Several workers (or machines) starting together on a new database: one creates its tables, none fails."""
    opener = ("import sys; from train import tuning; import optuna; "
              "optuna.create_study(study_name='s', storage=tuning.storage_of(sys.argv[1]), load_if_exists=True)")
    for round_ in range(2):
        url = f"sqlite:///{tmp_path / f'new-{round_}.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", opener, url], env=_environment(), stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errors


def test_the_first_worker_takes_the_enqueued_trial_before_the_others_start():
    """SQLite cannot lock a row, so two workers starting together could both run trial 0 (optuna/optuna#4002)."""
    import threading

    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0})
    taken = threading.Timer(0.3, study.ask)  # the first worker popping trial 0
    taken.start()
    started = time.perf_counter()
    tuning.wait_for_queue(study, timeout=10)
    taken.join()
    assert 0.2 < time.perf_counter() - started < 5
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    started = time.perf_counter()
    study.enqueue_trial({"x": 2.0})
    tuning.wait_for_queue(study, timeout=0.5)  # a worker that never takes it: the others start anyway
    assert time.perf_counter() - started < 2
