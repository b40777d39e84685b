"""Trains the rating model on one split and writes a self-contained run directory.

Reads top to bottom: data → split → vocabularies → tf.data → fit → evaluate →
artefacts. The run directory holds everything export needs (config, weights,
vocabularies, titles, each user's training history), so exporting never touches
the raw data again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from train import data as movielens_data
from train import splits
from train.config import TrainConfig
from train.model import RatingModel

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_PREFIX = "weights/model"
CURVE_FILE = "training_curve.png"
LOGS_DIR = "logs"


def _dataset(ratings: dict[str, np.ndarray], rows: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {
            "user_id": ratings["user_id"][rows].astype(str),
            "movie_id": ratings["movie_id"][rows].astype(str),
            "user_rating": ratings["user_rating"][rows],
        }
    )


def _numeric_sorted(ids) -> list[str]:
    return sorted(set(ids), key=int)


def _plot_curve(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["root_mean_squared_error"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["root_mean_squared_error"], label="train (running average over the epoch)")
    ax.plot(epochs, history["val_root_mean_squared_error"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title("Training curve")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(config: TrainConfig, data_dir: Path, run_dir: Path, verbose: int = 2) -> dict:
    """Trains, evaluates and writes ``run_dir``; returns the metrics."""
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    # A re-used run name starts over: stale weights or logs must not mix with the new run.
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(config.to_json())

    # Data and split. Vocabularies come from the training rows only: anything
    # first seen later is, to the model, a cold-start id in the OOV bucket.
    movielens = movielens_data.load(data_dir)
    split = splits.make(config.split, movielens, seed=config.seed)
    if config.split in splits.FOLDS:  # the fold files are part of what the model saw
        movielens.sha256.update(movielens_data.verify_checksums(data_dir, splits.fold_files(config.split)))
    ratings = movielens.ratings
    user_ids = _numeric_sorted(ratings["user_id"][split.train])
    movie_ids = _numeric_sorted(ratings["movie_id"][split.train])
    rated: dict[str, list[str]] = {}
    for u, m in zip(ratings["user_id"][split.train], ratings["movie_id"][split.train]):
        rated.setdefault(u, []).append(m)
    vocabulary = {
        "user_ids": user_ids,
        "movie_ids": movie_ids,
        "titles": {m.movie_id: m.title for m in movielens.movies.values()},
        "rated": {u: _numeric_sorted(ms) for u, ms in rated.items()},
    }
    (run_dir / VOCABULARY_FILE).write_text(json.dumps(vocabulary))

    # Input pipelines: cached once, reshuffled every epoch.
    n_train = len(split.train)
    train_ds = (
        _dataset(ratings, split.train)
        .cache()
        .shuffle(n_train, seed=config.seed, reshuffle_each_iteration=True)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    eval_sets = {
        part: _dataset(ratings, rows).batch(config.batch_size).cache()
        for part, rows in (("train", split.train), ("val", split.val), ("test", split.test))
    }

    model = RatingModel(user_ids, movie_ids, config)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=config.learning_rate))
    started = time.perf_counter()
    history = model.fit(
        train_ds,
        epochs=config.epochs,
        validation_data=eval_sets["val"],
        callbacks=[tf.keras.callbacks.TensorBoard(log_dir=str(run_dir / LOGS_DIR))],
        verbose=verbose,
    )
    fit_seconds = time.perf_counter() - started

    # Final numbers come from a clean pass over each part, not the running
    # average Keras reports while the weights are still moving.
    rmse = {
        part: float(model.evaluate(ds, return_dict=True, verbose=0)["root_mean_squared_error"])
        for part, ds in eval_sets.items()
    }
    train_mean = float(ratings["user_rating"][split.train].mean())
    test_true = ratings["user_rating"][split.test]
    metrics = {
        "train_rmse": rmse["train"],
        "val_rmse": rmse["val"],
        "test_rmse": rmse["test"],
        "rows": split.rows(),
        "fit_seconds": round(fit_seconds, 2),
        "baseline_global_mean_test_rmse": float(np.sqrt(np.mean((test_true - train_mean) ** 2))),
        "test_rows_with_unseen_user": float(np.mean(~np.isin(ratings["user_id"][split.test], user_ids))),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "dataset_sha256": movielens.sha256,
    }
    model.save_weights(str(run_dir / WEIGHTS_PREFIX))
    _plot_curve(history.history, run_dir / CURVE_FILE)
    # Written last: export treats metrics.json as the mark of a finished run.
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def load_model(run_dir: Path) -> tuple[RatingModel, TrainConfig, dict]:
    """Rebuilds a run's model with its trained weights; returns (model, config, vocabulary)."""
    config = TrainConfig.from_file(run_dir / CONFIG_FILE)
    vocabulary = json.loads((run_dir / VOCABULARY_FILE).read_text())
    model = RatingModel(vocabulary["user_ids"], vocabulary["movie_ids"], config)
    model({"user_id": tf.constant(["0"]), "movie_id": tf.constant(["0"])})  # creates the variables
    # Every variable of the rebuilt model must come from the checkpoint; the
    # optimizer's slots are in the checkpoint too but not needed for serving.
    model.load_weights(str(run_dir / WEIGHTS_PREFIX)).assert_existing_objects_matched().expect_partial()
    return model, config, vocabulary
