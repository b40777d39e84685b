"""The rollout gate: a new version is published only if it is not worse than the served one.

Both are measured the same way, on the new run's validation part (the carve-out of the
training data that chose the blend weight; test is never looked at) or, for a two-stage run
refitted on most of it, on the share it kept out (``splits.refit_and_gate``), through the
signatures a client calls: Recall@10 and NDCG@10 from ``recommend`` (relevant = validation ratings ≥ 4,
the run's training rows, refit rows included, excluded for both models), RMSE from ``serving_default`` over every
validation rating. The served version's figures are recomputed from its SavedModel on that
same part rather than read from its model card, whose figures came from another run's split.

The candidate passes when none of the three is worse than the served version's by more than
``tolerance`` (relative, default 2%): Recall@10 and NDCG@10 at least (1 - tolerance) x the
served ones, RMSE at most (1 + tolerance) x the served one. Which version is "served" is the
config's ``stable`` label when the servers run labelled rollouts (export/rollout.py), else the
newest version directory (what the ``latest`` policy serves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from common import contract
from common.versions import list_versions
from train import data as movielens_data
from train import evaluation, splits
from train.config import TWO_STAGE, TrainConfig
from train.features import rows_of
from train.rows import Rows

DEFAULT_TOLERANCE = 0.02
STABLE = "stable"
RECALL, NDCG, RMSE = "recall_at_10", "ndcg_at_10", "rmse"
HIGHER_IS_BETTER = {RECALL: True, NDCG: True, RMSE: False}
PREDICT_ROWS = 4096


class GateError(RuntimeError):
    """The gate could not measure (no data, a served version it cannot load)."""


@dataclass(frozen=True)
class ValidationPart:
    """The run's validation rows and what the figures need around them."""

    movielens: movielens_data.MovieLens
    users: np.ndarray  # user rows evaluated (a seeded sample when there are many)
    relevant: object  # Interactions: validation ratings >= 4
    exclude: object  # Interactions: the run's training rows
    val: Rows

    @classmethod
    def of(cls, data_dir: Path, config: TrainConfig,
           dataset_sha256: dict[str, str] | None = None) -> "ValidationPart":
        movielens = movielens_data.load(data_dir)
        # The run also hashed the fold files it read (u1.base, u1.test); the gate compares the files both read.
        differing = sorted(name for name, digest in movielens.sha256.items()
                           if (dataset_sha256 or {}).get(name, digest) != digest)
        if differing:
            raise GateError(f"{data_dir} is not the data the run trained on ({', '.join(differing)} differ "
                            "from the run's dataset_sha256): pass --data-dir")
        split = splits.make(config.split, movielens, seed=config.seed)
        train_rows, val_rows = split.train, split.val
        if config.model == TWO_STAGE and config.refit:  # the served models learnt from all validation but this
            refit_rows, val_rows = splits.refit_and_gate(split.val, config.seed)
            train_rows = np.concatenate([train_rows, refit_rows])
        train, val = Rows.of(movielens, train_rows), Rows.of(movielens, val_rows)
        if not len(val.user):
            raise GateError(f"split {config.split} has no validation rows to compare versions on")
        shape = (len(movielens.users) + 1, len(movielens.movies) + 1)
        return cls(movielens, evaluation.evaluation_users(val.user, config.max_eval_users, config.seed),
                   val.table(*shape, min_rating=4.0), train.table(*shape), val)


def figures(signatures, part: ValidationPart) -> dict[str, float]:
    """Recall@10, NDCG@10 and RMSE on ``part`` through ``signatures`` (name -> callable, as SavedModel.signatures)."""
    recommend_fn = signatures[contract.RECOMMEND_SIGNATURE]
    predict_fn = signatures[contract.PREDICT_SIGNATURE]
    user_ids = np.concatenate([[""], part.movielens.users.ids.astype(str)])
    movie_ids = part.movielens.movies.ids.astype(str)

    def recommend(user_rows: np.ndarray, k: int) -> np.ndarray:
        out = recommend_fn(user_id=tf.constant(user_ids[user_rows]), k=tf.fill([len(user_rows)], tf.constant(k, tf.int32)))
        served = out[contract.MOVIE_IDS].numpy().astype(str)
        return rows_of(served.reshape(-1), movie_ids).reshape(served.shape)

    top = evaluation.recommend_top_k(recommend, part.users, part.exclude)
    quality = evaluation.top_k_metrics(top, part.relevant, part.users, evaluation.EVAL_TOP_K)
    val = part.val
    predicted = np.concatenate([
        predict_fn(user_id=tf.constant(user_ids[val.user[i : i + PREDICT_ROWS]]),
                   movie_id=tf.constant(movie_ids[val.movie[i : i + PREDICT_ROWS] - 1]))[contract.PREDICTED_RATING].numpy()
        for i in range(0, len(val.user), PREDICT_ROWS)
    ]).reshape(-1)
    rmse = evaluation.rmse(predicted, val.rating)
    out = {RECALL: float(quality[RECALL]), NDCG: float(quality[NDCG]), RMSE: float(rmse)}
    # A diverged model answers NaN: never "not worse".
    return {k: (v if np.isfinite(v) else float("nan")) for k, v in out.items()}


def worse(candidate: dict[str, float], served: dict[str, float], tolerance: float) -> list[str]:
    """The figures on which ``candidate`` is worse than ``served`` beyond ``tolerance``, described."""
    out = []
    for name, higher in HIGHER_IS_BETTER.items():
        new, old = candidate[name], served[name]
        if not np.isfinite(new):
            out.append(f"{name} {new} (served {old:.4f})")
            continue
        if not np.isfinite(old):
            continue
        limit = old * (1 - tolerance) if higher else old * (1 + tolerance)
        if (new < limit) if higher else (new > limit):
            out.append(f"{name} {new:.4f} {'<' if higher else '>'} {limit:.4f} (served {old:.4f}, tolerance {tolerance:.0%})")
    return out


def served_version(base_path: Path, models_config: Path | None = None, model_name: str = contract.MODEL_NAME) -> int | None:
    """The version clients get today: the config's ``stable`` label, else the newest version directory."""
    if models_config is not None and Path(models_config).exists():
        from export import rollout

        state = rollout.read_state(Path(models_config), model_name)
        if state.labels.get(STABLE):
            return state.labels[STABLE]
        if state.policy == "specific" and state.versions:
            return max(state.versions)
    versions = list_versions(base_path)
    return max(versions) if versions else None


def describe(values: dict[str, float]) -> str:
    return f"Recall@10 {values[RECALL]:.4f}  NDCG@10 {values[NDCG]:.4f}  RMSE {values[RMSE]:.4f}"
