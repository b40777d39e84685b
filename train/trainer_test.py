"""Smoke trains on the fixture: the run directory, the reloaded recommender, seeding, presets."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from train import config as train_config
from train import run_dir as run_files
from train import splits, trainer
from train.config import PRESETS, TWO_STAGE, TrainConfig
from train.features import FeatureTables
from train.recommender import ReferenceRecommender, TwoStageRecommender

FAST_TWO_STAGE = TrainConfig(**{**PRESETS[TWO_STAGE], "preset": TWO_STAGE, "epochs": 2, "retrieval_epochs": 2,
                                "batch_size": 128, "retrieval_batch_size": 128})


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory, fixture_dir):
    run_dir = tmp_path_factory.mktemp("run") / "two-stage"
    return run_dir, trainer.run(FAST_TWO_STAGE, fixture_dir, run_dir, verbose=0)


def test_run_directory_and_metrics(two_stage_run):
    run_dir, metrics = two_stage_run
    for name in (run_files.CONFIG_FILE, run_files.METRICS_FILE, run_files.FEATURES_FILE, run_files.BLEND_FILE, run_files.CURVE_FILE):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / run_files.LOGS_DIR).rglob("events.out.tfevents.*"))
    saved = json.loads((run_dir / run_files.METRICS_FILE).read_text())
    for key in ("train_rmse", "val_rmse", "test_rmse", "recall_at_10", "ndcg_at_10"):
        assert isinstance(saved[key], float) and np.isfinite(saved[key]), key
    assert 0 <= saved["recall_at_10"] <= 1 and saved["coverage_at_10"] >= 10
    assert set(saved["baselines"]) == {"global_mean", "popularity", "ease"}
    assert saved["blend_weight"] in trainer.BLEND_WEIGHTS and saved["popularity_penalty"] in trainer.POPULARITY_PENALTIES
    assert sum(saved["rows"].values()) == 900
    assert TrainConfig.from_file(run_dir / run_files.CONFIG_FILE) == FAST_TWO_STAGE


def test_the_served_models_are_refitted_on_train_and_validation(two_stage_run):
    """Validation picks the ranking epochs and the blend weight; then the served models learn from it too,
    all but the rollout gate's share."""
    run_dir, metrics = two_stage_run
    assert metrics["refit_on_train_and_val"]
    val = metrics["rows"]["val"]
    assert metrics["refit_rows"] == val - round(val * splits.GATE_SHARE) > 0
    features = FeatureTables.load(run_dir / run_files.FEATURES_FILE)
    assert int(features.history.lengths().sum()) == metrics["rows"]["train"] + metrics["refit_rows"]
    assert set(metrics["fit_seconds_by_stage"]) == {"retrieval", "ranking"}
    assert len(metrics["history"]["val_root_mean_squared_error"]) == FAST_TWO_STAGE.epochs  # the curve validation watched


def test_without_refit_the_served_models_never_saw_validation(fixture_dir, tmp_path):
    config = dataclasses.replace(FAST_TWO_STAGE, refit=False, epochs=1, retrieval_epochs=1)
    metrics = trainer.run(config, fixture_dir, tmp_path / "run", verbose=0)
    assert not metrics["refit_on_train_and_val"]
    features = FeatureTables.load(tmp_path / "run" / run_files.FEATURES_FILE)
    assert int(features.history.lengths().sum()) == metrics["rows"]["train"]


def test_reloaded_recommender_answers_as_the_trained_one(two_stage_run, fixture_dir):
    from train import data, splits
    from train.rows import Rows

    run_dir, metrics = two_stage_run
    recommender, config, features = trainer.load_recommender(run_dir)
    assert isinstance(recommender, TwoStageRecommender)
    assert float(recommender.blend_weight.numpy()) == pytest.approx(metrics["blend_weight"])
    assert float(recommender.popularity_penalty.numpy()) == pytest.approx(metrics["popularity_penalty"])
    movielens = data.load(fixture_dir)
    test = Rows.of(movielens, splits.make(config.split, movielens, seed=config.seed).test)
    rating, _, _ = recommender.predict(tf.constant(test.user), tf.constant(test.movie))
    rmse = float(np.sqrt(np.mean((rating.numpy() - test.rating) ** 2)))
    assert rmse == pytest.approx(metrics["test_rmse"], abs=1e-5)


def test_profile_users_and_unknown_ids(two_stage_run):
    run_dir, _ = two_stage_run
    recommender, _, features = trainer.load_recommender(run_dir)
    # Row 0 (a wholly unknown id) still gets a full, finite answer.
    movies, scores = recommender.recommend(tf.constant([0], tf.int64), tf.constant(5))
    assert movies.shape == (1, 5) and np.isfinite(scores.numpy()).all()
    assert set(movies.numpy()[0]) <= set(features.catalogue)


@pytest.mark.skipif(os.environ.get("RUN_TRAINING_SCENARIOS") != "1",
                    reason="two whole runs: make test-training (RUN_TRAINING_SCENARIOS=1)")
def test_same_seed_same_numbers(fixture_dir, tmp_path):
    # docs/model.md promises identical numbers for identical commands (op determinism, fixed seeds).
    first = trainer.run(FAST_TWO_STAGE, fixture_dir, tmp_path / "a", verbose=0)
    second = trainer.run(FAST_TWO_STAGE, fixture_dir, tmp_path / "b", verbose=0)
    for key in ("test_rmse", "recall_at_10", "ndcg_at_10", "coverage_at_10", "blend_weight", "popularity_penalty"):
        assert first[key] == second[key], key


def test_reference_preset_still_trains_and_reloads(fixture_dir, tmp_path):
    config = TrainConfig(**{**PRESETS["reference-basic"], "preset": "reference-basic", "epochs": 1, "batch_size": 128})
    metrics = trainer.run(config, fixture_dir, tmp_path / "reference-basic", verbose=0)
    assert metrics["blend_weight"] is None and np.isfinite(metrics["recall_at_10"])
    recommender, _, features = trainer.load_recommender(tmp_path / "reference-basic")
    assert isinstance(recommender, ReferenceRecommender)
    # Users and movies without training ratings share the out-of-vocabulary embedding, as in the reference.
    untrained = np.flatnonzero(features.history.lengths() == 0)
    untrained = untrained[untrained > 0]
    if len(untrained):
        pair = tf.constant([0, int(untrained[0])], tf.int64)
        rating, _, _ = recommender.predict(pair, tf.constant([1, 1], tf.int64))
        assert rating[0] == rating[1]


def test_cli_overrides_preset():
    import argparse

    parser = argparse.ArgumentParser()
    train_config.add_arguments(parser)
    resolved = train_config.from_arguments(parser.parse_args(["--preset", "reference-tuned", "--epochs", "2", "--layer-sizes", "8"]))
    assert resolved.l2 == 0.01 and resolved.epochs == 2 and resolved.layer_sizes == (8,)
    default = train_config.from_arguments(parser.parse_args([]))
    assert default.preset == TWO_STAGE and default.model == TWO_STAGE
