"""Multi-worker training: TF_CONFIG parsing, chief-only writes, and two real workers on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from portpicker import pick_unused_port

from train import distribute

REPO = Path(__file__).resolve().parents[1]


def _tf_config(cluster: dict, kind: str, index: int) -> dict[str, str]:
    return {distribute.TF_CONFIG: json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_no_tf_config_is_one_process():
    task = distribute.task_from_environment({})
    assert (task.workers, task.is_chief, task.distributed) == (1, True, False)
    assert distribute.strategy_for(task) is tf.distribute.get_strategy()


def test_worker_zero_is_chief_unless_the_cluster_names_one():
    workers = {"worker": ["a:1", "b:1"]}
    assert distribute.task_from_environment(_tf_config(workers, "worker", 0)).is_chief
    assert not distribute.task_from_environment(_tf_config(workers, "worker", 1)).is_chief
    with_chief = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
    assert distribute.task_from_environment(_tf_config(with_chief, "chief", 0)).is_chief
    worker0 = distribute.task_from_environment(_tf_config(with_chief, "worker", 0))
    assert not worker0.is_chief and worker0.workers == 3


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "not JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), '"cluster"'),
        (json.dumps({"cluster": {"worker": ["a:1"]}}), '"task"'),
        (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker", "index": 0}}), "remove ps"),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}), "task worker 3"),
    ],
)
def test_a_bad_tf_config_says_what_is_wrong(raw, message):
    with pytest.raises(distribute.ClusterConfigError, match=message):
        distribute.task_from_environment({distribute.TF_CONFIG: raw})


def test_only_the_chief_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    with distribute.writable_dir(run_dir, distribute.Task("worker", 0, 2)) as out:
        assert out == run_dir
    with distribute.writable_dir(run_dir, distribute.Task("worker", 1, 2)) as out:
        assert not out.is_relative_to(tmp_path)
        out.mkdir(parents=True)
        (out / "metrics.json").write_text("{}")
        scratch = out.parent
    assert not scratch.exists() and not run_dir.exists()


def test_ranking_loss_is_the_batch_mean_squared_error(fixture_dir):
    """The SUM reduction distribution needs still yields the mean: the step divides it by the workers only."""
    from train import data, splits
    from train.features import build
    from train.ranking import RankingModel

    movielens = data.load(fixture_dir)
    features = build(movielens, splits.make(splits.SEED_TEMPORAL, movielens, seed=0).train)
    model = RankingModel(features, 8, (16,), 0.0, global_mean=3.5)
    batch = {"user": tf.constant([1, 2, 3], tf.int64), "movie": tf.constant([4, 5, 6], tf.int64),
             "rating": tf.constant([1.0, 4.0, 5.0])}
    predicted = model(batch).numpy()
    expected = np.mean((predicted - batch["rating"].numpy()) ** 2)
    assert float(model.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.skipif(os.environ.get("RUN_DISTRIBUTED") != "1",
                    reason="about a minute on two cores: make test-distributed (RUN_DISTRIBUTED=1)")
def test_two_workers_on_localhost_train_like_one(tmp_path, fixture_dir):
    """Two `python -m train` processes under MultiWorkerMirroredStrategy against one process.

    Both see the same global batches (each worker takes half of every batch), so
    they differ only in the retrieval's sampled histories (each worker draws its
    own) and the order gradients are summed in. Tolerance: RMSE within 0.02 and
    Recall@10 / NDCG@10 within 0.05: on this fixture one relevant movie found or
    missed for one test user moves Recall@10 by about 0.05, and 0.02 RMSE is a
    tenth of what one more ranking epoch changes here; a step that counted the
    workers' gradients twice or dropped half the batch moves them further.
    """
    flags = ["--data-dir", str(fixture_dir), "--runs-dir", str(tmp_path / "runs"),
             "--retrieval-epochs", "2", "--epochs", "3"]
    cluster = {"worker": [f"localhost:{pick_unused_port()}" for _ in range(2)]}
    env = {k: v for k, v in os.environ.items() if k != distribute.TF_CONFIG}
    workers = [
        subprocess.Popen([sys.executable, "-m", "train", "--run-name", "two", *flags], cwd=REPO,
                         env={**env, **_tf_config(cluster, "worker", index)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for index in range(2)
    ]
    single = subprocess.run([sys.executable, "-m", "train", "--run-name", "one", *flags], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(outputs)
    assert single.returncode == 0, single.stderr

    assert "worker 0 of 2 processes (chief)" in outputs[0]
    assert "nothing (the chief writes" in outputs[1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["one", "two"]
    two = json.loads((tmp_path / "runs" / "two" / "metrics.json").read_text())
    one = json.loads((tmp_path / "runs" / "one" / "metrics.json").read_text())
    for key in ("train_rmse", "val_rmse", "test_rmse"):
        assert two[key] == pytest.approx(one[key], abs=0.02), key
    for key in ("recall_at_10", "ndcg_at_10"):
        assert two[key] == pytest.approx(one[key], abs=0.05), key
