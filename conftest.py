"""Shared pytest fixtures: data, a trained-and-exported model, a running local server.

Training and exporting once per session keeps ``make test`` fast; the model is
trained on the real MovieLens files when ``MOVIELENS_DIR`` is set (as in CI)
and on a small synthetic fixture otherwise, so the suite runs anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import common.tf_setup  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads, quiet logs)
import pytest

from testing.movielens_fixture import write_movielens_fixture


def _real_data() -> tuple[Path | None, str]:
    """The real MovieLens folder from $MOVIELENS_DIR, or None with the reason."""
    value = os.environ.get("MOVIELENS_DIR")
    if not value:
        return None, "MOVIELENS_DIR is not set: point it at the pristine ml-100k folder"
    if not (Path(value) / "u.data").is_file():
        return None, f"MOVIELENS_DIR={value} has no u.data"
    return Path(value), ""


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    path, reason = _real_data()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    """A small MovieLens-format folder written by the tests."""
    return write_movielens_fixture(tmp_path_factory.mktemp("ml-fixture"))


@pytest.fixture(scope="session")
def training_data_dir(fixture_dir) -> Path:
    """The folder ``trained_run`` trains on (what `python -m export --data-dir` needs for its gate)."""
    return _real_data()[0] or fixture_dir


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, training_data_dir) -> Path:
    from train import trainer
    from train.config import DEFAULT_PRESET, PRESETS, TrainConfig

    data_dir = training_data_dir
    run_dir = tmp_path_factory.mktemp("runs") / "session"
    # The default preset, briefly: the served model of every serving, client and load test. Without the refit
    # on validation, which doubles the training (train/trainer_test.py and export/gate_test.py cover it).
    config = TrainConfig(**{**PRESETS[DEFAULT_PRESET], "preset": DEFAULT_PRESET, "epochs": 3, "retrieval_epochs": 2,
                            "refit": False})
    trainer.run(config, data_dir, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, trained_run) -> Path:
    """The model base path (holding version 1) of a briefly trained model."""
    from export.exporter import export_run

    base_path = tmp_path_factory.mktemp("models") / "movielens"
    export_run(trained_run, base_path, version=1)
    return base_path


@pytest.fixture(scope="session")
def local_server(exported_model):
    from serving.launcher import start_local_server

    with start_local_server(exported_model) as server:
        yield server
