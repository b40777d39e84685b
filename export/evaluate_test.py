"""Evaluation through the exported signatures reproduces the trainer's figures from the same code path."""

import json
import os
from pathlib import Path

import pytest

from export.evaluate import evaluate_new_users, evaluate_saved_model
from train import run_dir as run_files
from train.config import TrainConfig


@pytest.fixture(scope="module")
def data_dir(fixture_dir) -> Path:
    return Path(os.environ["MOVIELENS_DIR"]) if os.environ.get("MOVIELENS_DIR") else fixture_dir


def test_signature_figures_equal_the_trainers(exported_model, trained_run, data_dir):
    config = TrainConfig.from_file(trained_run / run_files.CONFIG_FILE)
    metrics = json.loads((trained_run / run_files.METRICS_FILE).read_text())
    served = evaluate_saved_model(exported_model / "1", data_dir, config)
    for key in ("recall_at_10", "ndcg_at_10", "coverage_at_10"):
        assert served[key] == pytest.approx(metrics[key], abs=1e-9), key
    assert served["test_rmse"] == pytest.approx(metrics["test_rmse"], abs=1e-4)


def test_new_user_rows_are_measured(exported_model, trained_run, data_dir):
    config = TrainConfig.from_file(trained_run / run_files.CONFIG_FILE)
    rows = evaluate_new_users(exported_model / "1", data_dir, config)
    assert {"recommend_from_ratings", "popularity (training part)"} <= set(rows)
    for figures in rows.values():
        assert {"recall_at_10", "ndcg_at_10", "coverage_at_10", "users_evaluated"} <= set(figures)
