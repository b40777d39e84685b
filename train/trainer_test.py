"""A smoke train on the fixture, the run directory's contents, OOV behaviour and seeding."""

import json

import numpy as np
import pytest
import tensorflow as tf

from train import trainer
from train.config import TrainConfig


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, fixture_dir):
    run_dir = tmp_path_factory.mktemp("run") / "smoke"
    metrics = trainer.run(TrainConfig(epochs=1, batch_size=128), fixture_dir, run_dir, verbose=0)
    return run_dir, metrics


def test_run_directory_contents(fixture_run):
    run_dir, metrics = fixture_run
    for name in (trainer.CONFIG_FILE, trainer.METRICS_FILE, trainer.VOCABULARY_FILE, trainer.CURVE_FILE):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / trainer.LOGS_DIR).rglob("events.out.tfevents.*"))
    saved = json.loads((run_dir / trainer.METRICS_FILE).read_text())
    for key in ("train_rmse", "val_rmse", "test_rmse", "fit_seconds"):
        assert isinstance(saved[key], float) and np.isfinite(saved[key])
    assert sum(saved["rows"].values()) == 900
    assert TrainConfig.from_file(run_dir / trainer.CONFIG_FILE) == TrainConfig(epochs=1, batch_size=128)


def test_reloaded_model_reproduces_the_test_rmse(fixture_run, fixture_dir):
    from train import data, splits

    run_dir, metrics = fixture_run
    model, config, _ = trainer.load_model(run_dir)
    movielens = data.load(fixture_dir)
    split = splits.make(config.split, movielens, seed=config.seed)
    model.compile()
    ds = trainer._dataset(movielens.ratings, split.test).batch(config.batch_size)
    rmse = model.evaluate(ds, return_dict=True, verbose=0)["root_mean_squared_error"]
    assert rmse == pytest.approx(metrics["test_rmse"], abs=1e-6)


def test_oov_ids_share_a_bucket(fixture_run):
    run_dir, _ = fixture_run
    model, _, vocabulary = trainer.load_model(run_dir)
    known_user = vocabulary["user_ids"][0]
    _, _, a = model({"user_id": tf.constant(["nobody", "stranger"]), "movie_id": tf.constant(["1", "1"])})
    assert a[0, 0] == a[1, 0]  # both unseen users use the OOV embedding
    _, _, b = model({"user_id": tf.constant([known_user]), "movie_id": tf.constant(["no-such-movie"])})
    assert np.isfinite(b.numpy()).all()
    assert model.user_lookup(tf.constant(["nobody"])).numpy()[0] == 0


def test_same_seed_same_numbers(fixture_dir, tmp_path):
    config = TrainConfig(epochs=2, batch_size=128)
    first = trainer.run(config, fixture_dir, tmp_path / "a", verbose=0)
    second = trainer.run(config, fixture_dir, tmp_path / "b", verbose=0)
    assert abs(first["test_rmse"] - second["test_rmse"]) < 0.005


def test_cli_overrides_preset():
    import argparse

    from train import config

    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    resolved = config.from_arguments(parser.parse_args(["--preset", "tuned", "--epochs", "2", "--layer-sizes", "8"]))
    assert resolved.l2 == 0.01 and resolved.epochs == 2 and resolved.layer_sizes == (8,)
