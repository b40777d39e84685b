"""The rollout gate (export/gate.py): a version worse than the served one is never published."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from common import contract
from export import gate, rollout

# Small runs on the synthetic fixture (seconds each): a brief good one, and a bad one: one
# retrieval epoch at a learning rate that diverges.
GOOD = {"epochs": 2, "retrieval_epochs": 2}
# Both stages diverge (the ranking network's rating is what the refusal names); without the item-to-item model.
BAD = {"epochs": 1, "retrieval_epochs": 1, "retrieval_learning_rate": 1000.0, "item_neighbours": 0,
       "learning_rate": 1000.0}


def test_worse_compares_each_figure_within_the_tolerance() -> None:
    served = {gate.RECALL: 0.30, gate.NDCG: 0.20, gate.RMSE: 1.00}
    assert gate.worse(dict(served), served, 0.02) == []
    assert gate.worse({gate.RECALL: 0.295, gate.NDCG: 0.197, gate.RMSE: 1.015}, served, 0.02) == []
    failures = gate.worse({gate.RECALL: 0.29, gate.NDCG: 0.25, gate.RMSE: 1.03}, served, 0.02)
    assert [f.split()[0] for f in failures] == [gate.RECALL, gate.RMSE]
    assert gate.worse({gate.RECALL: 0.5, gate.NDCG: 0.5, gate.RMSE: math.nan}, served, 0.02)  # diverged
    assert gate.worse({gate.RECALL: 0.9, gate.NDCG: 0.9, gate.RMSE: 0.5}, served, 0.02) == []


def test_the_served_version_is_the_stable_label_else_the_newest(tmp_path: Path) -> None:
    base = tmp_path / "movielens"
    assert gate.served_version(base) is None
    for version in (1, 2, 3):
        (base / str(version)).mkdir(parents=True)
    assert gate.served_version(base) == 3
    config = tmp_path / "models.config"
    config.write_text(Path(__file__).resolve().parents[1].joinpath("serving", "models.config").read_text())
    assert gate.served_version(base, config) == 3  # `latest`: the newest directory
    rollout.init(config, base, 2, wait_seconds=0)
    assert gate.served_version(base, config) == 2  # labelled: stable, not the unlisted 3


def _train(fixture_dir: Path, run_dir: Path, **overrides) -> Path:
    from train import trainer
    from train.config import DEFAULT_PRESET, PRESETS, TrainConfig

    config = TrainConfig(**{**PRESETS[DEFAULT_PRESET], "preset": DEFAULT_PRESET, **overrides})
    trainer.run(config, fixture_dir, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="module")
def runs(fixture_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate-runs")
    return {"good": _train(fixture_dir, root / "good", **GOOD), "bad": _train(fixture_dir, root / "bad", **BAD)}


def _card(version_dir: Path) -> dict:
    return json.loads((version_dir / contract.MODEL_CARD_FILE).read_text())


@pytest.fixture(scope="module")
def published(runs, fixture_dir, tmp_path_factory) -> Path:
    """A base path whose version 1 (the good run) went through the gate with nothing served yet."""
    from export.exporter import Gate, export_run

    base = tmp_path_factory.mktemp("gate-models") / "movielens"
    first = export_run(runs["good"], base, gate=Gate(fixture_dir))
    record = _card(first)["rollout_gate"]
    assert record["passed"] and record["served_version"] is None  # nothing to compare with
    return base


def test_a_bad_run_is_refused_with_its_figures_and_nothing_changes(runs, fixture_dir, published) -> None:
    from export.exporter import Gate, GateRefused, export_run

    with pytest.raises(GateRefused) as refused:
        export_run(runs["bad"], published, gate=Gate(fixture_dir))
    message = str(refused.value)
    assert "rmse" in message and "served version 1" in message and "Nothing was published" in message
    assert sorted(p.name for p in published.iterdir()) == ["1"]  # no version 2, no staging left behind


def test_the_command_line_exits_1_naming_the_figures(runs, fixture_dir, published, capsys) -> None:
    from export import __main__ as export_main

    argv = ["--run", str(runs["bad"]), "--model-base-path", str(published), "--data-dir", str(fixture_dir)]
    assert export_main.main(argv) == 1
    captured = capsys.readouterr()
    assert "gate: served 1: Recall@10" in captured.out
    assert captured.err.startswith("error: refused: version 2") and "rmse" in captured.err
    assert sorted(p.name for p in published.iterdir()) == ["1"]


def test_the_same_model_passes(runs, fixture_dir, published) -> None:
    from export.exporter import Gate, run_gate
    from export.serving_module import ServingModule
    from train import trainer

    recommender, config, features = trainer.load_recommender(runs["good"])
    module = ServingModule(recommender, features, model_card_json="")
    record = run_gate(Gate(fixture_dir), runs["good"], published, 2, module, config, False, lambda m: None)
    assert record["passed"] and not record["forced"] and record["served_version"] == 1
    assert record["candidate"] == pytest.approx(record["served"], abs=1e-5)  # one model, measured twice
    assert record["candidate"][gate.RECALL] > 0


def test_labelled_rollouts_compare_with_stable_and_force_is_recorded(runs, fixture_dir, published, tmp_path) -> None:
    # Last: it publishes version 2 into the shared base path.
    from export.exporter import Gate, GateRefused, export_run

    config = tmp_path / "models.config"
    config.write_text(Path(__file__).resolve().parents[1].joinpath("serving", "models.config").read_text())
    rollout.init(config, published, 1, wait_seconds=0)
    # A tolerance no model meets (50% better than stable): refused; --force publishes it, recorded.
    demanding = Gate(fixture_dir, models_config=config, tolerance=-0.5)
    with pytest.raises(GateRefused):
        export_run(runs["good"], published, gate=demanding)
    second = export_run(runs["good"], published, gate=demanding, force=True)
    record = _card(second)["rollout_gate"]
    assert second.name == "2" and record["served_version"] == 1
    assert record["forced"] and not record["passed"] and record["worse"]
    # Exported, but not served: the config lists only stable until `rollout canary`.
    assert rollout.read_state(config).versions == {1}


def test_without_the_data_the_gate_refuses_unless_forced(runs, published, tmp_path) -> None:
    from export.exporter import ExportError, Gate, run_gate
    from export.serving_module import ServingModule
    from train import trainer

    recommender, config, features = trainer.load_recommender(runs["good"])
    module = ServingModule(recommender, features, model_card_json="")
    missing = Gate(tmp_path / "no-data")
    with pytest.raises(ExportError, match="cannot compare"):
        run_gate(missing, runs["good"], published, 2, module, config, False, lambda m: None)
    record = run_gate(missing, runs["good"], published, 2, module, config, True, lambda m: None)
    assert record["forced"] and record["passed"] is None and record["error"]


def test_the_data_check_compares_the_files_both_sides_read(fixture_dir: Path) -> None:
    """A run on a fold also hashed its fold files, which the gate does not read: those are not a difference;
    a base file that changed is, and is named."""
    from train import data as movielens_data
    from train.config import TrainConfig

    recorded = dict(movielens_data.load(fixture_dir).sha256)
    config = TrainConfig()
    assert gate.ValidationPart.of(fixture_dir, config, {**recorded, "u1.base": "0" * 64}).users.size
    with pytest.raises(gate.GateError, match=r"u\.data differ"):
        gate.ValidationPart.of(fixture_dir, config, {**recorded, "u.data": "0" * 64})


def test_a_refitted_runs_gate_part_is_what_its_models_never_trained_on(runs, fixture_dir) -> None:
    from train import run_dir as run_files
    from train.config import TrainConfig
    from train.features import FeatureTables

    config = TrainConfig.from_file(runs["good"] / run_files.CONFIG_FILE)
    assert config.refit
    part = gate.ValidationPart.of(fixture_dir, config)
    history = FeatureTables.load(runs["good"] / run_files.FEATURES_FILE).history
    trained = {(user, int(movie)) for user in range(len(history.indptr) - 1) for movie in history.row(user)}
    measured = set(zip(part.val.user.tolist(), part.val.movie.tolist()))
    assert measured and not measured & trained
    assert part.exclude.nnz == len(trained)  # what the served models learnt from is what both lists exclude
