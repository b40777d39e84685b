"""Measures an exported SavedModel the way a client meets it: through its ``recommend`` signature.

The trainer already reports the protocol's numbers from the in-memory
recommender (the same graph code). This module closes the loop on the
artefact itself: it loads the version directory, sends raw string ids to the
``recommend`` signature in batches of at most ``MAX_RECOMMEND_USERS``, maps the
returned ids back, and scores them with ``train/evaluation.py`` under the
protocol (top 10, movies rated in train + validation removed, relevant =
test ratings ≥ 4), plus RMSE through ``serving_default``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from common import contract
from train import data as movielens_data
from train import evaluation, splits
from train.config import TrainConfig
from train.features import rows_of
from train.interactions import Interactions
from train.rows import Rows


def _k(users: np.ndarray, k: int) -> tf.Tensor:
    """The signatures take one k per user (a batch dimension TF Serving's batcher can merge)."""
    return tf.fill([len(users)], tf.constant(k, tf.int32))


def evaluate_saved_model(version_dir: Path, data_dir: Path, config: TrainConfig) -> dict:
    """Recall@10, NDCG@10, coverage@10 and test RMSE of ``version_dir`` on ``config``'s split."""
    loaded = tf.saved_model.load(str(version_dir))
    recommend_signature = loaded.signatures[contract.RECOMMEND_SIGNATURE]
    predict_signature = loaded.signatures[contract.PREDICT_SIGNATURE]
    movielens = movielens_data.load(data_dir)
    split = splits.make(config.split, movielens, seed=config.seed)
    val, test = Rows.of(movielens, split.val), Rows.of(movielens, split.test)
    user_ids = np.concatenate([[""], movielens.users.ids.astype(str)])
    movie_ids = movielens.movies.ids.astype(str)
    shape = (len(movielens.users) + 1, len(movielens.movies) + 1)

    def recommend(user_rows: np.ndarray, k: int) -> np.ndarray:
        out = recommend_signature(user_id=tf.constant(user_ids[user_rows]), k=_k(user_rows, k))
        served = out[contract.MOVIE_IDS].numpy().astype(str)
        return rows_of(served.reshape(-1), movie_ids).reshape(served.shape)

    users = np.unique(test.user)
    top = evaluation.recommend_top_k(recommend, users, val.table(*shape))
    quality = evaluation.top_k_metrics(top, test.table(*shape, min_rating=4.0), users, evaluation.EVAL_TOP_K)
    predicted = np.concatenate([
        predict_signature(
            user_id=tf.constant(user_ids[test.user[i : i + 4096]]),
            movie_id=tf.constant(movie_ids[test.movie[i : i + 4096] - 1]),
        )[contract.PREDICTED_RATING].numpy()
        for i in range(0, len(test.user), 4096)
    ])
    return {**quality, "test_rmse": evaluation.rmse(predicted, test.rating)}


GIVEN = evaluation.NEW_USER_RATINGS  # ratings a new user gives
MIN_TEST_RATINGS = 10  # users with fewer test ratings are not evaluated (too little left to predict)


def evaluate_new_users(version_dir: Path, data_dir: Path, config: TrainConfig) -> dict:
    """``recommend_from_ratings`` on a handful of ratings per user, next to popularity and ``recommend``.

    seed-temporal: every test user unseen in training with ≥ 10 test ratings;
    their earliest 5 test ratings are the input, the rest rated ≥ 4 are
    relevant, the 5 are excluded. u1…u5: every test user, with their history
    replaced by their earliest 5 ratings of the base file; relevant = test ≥ 4;
    every base movie is excluded.
    """
    loaded = tf.saved_model.load(str(version_dir))
    movielens = movielens_data.load(data_dir)
    split = splits.make(config.split, movielens, seed=config.seed)
    train, val, test = (Rows.of(movielens, rows) for rows in (split.train, split.val, split.test))
    shape = (len(movielens.users) + 1, len(movielens.movies) + 1)
    user_ids = np.concatenate([[""], movielens.users.ids.astype(str)])
    movie_ids = np.concatenate([[""], movielens.movies.ids.astype(str)])

    if config.split == splits.SEED_TEMPORAL:
        trained = train.table(*shape).lengths() > 0
        users, counts = np.unique(test.user, return_counts=True)
        users = users[(counts >= MIN_TEST_RATINGS) & ~trained[users]]
        movies, ratings, given = evaluation.earliest_ratings(test, users, GIVEN)
        keep = ~given & np.isin(test.user, users) & (test.rating >= 4.0)
        relevant = Interactions.from_pairs(test.user[keep], test.movie[keep], *shape)
        also_exclude = Interactions.from_pairs(np.repeat(users, GIVEN), movies.reshape(-1), *shape)
    else:
        base = train + val
        users, movies, ratings = evaluation.new_user_input(base, np.unique(test.user), shape)
        relevant = test.table(*shape, min_rating=4.0)
        also_exclude = base.table(*shape)

    from_ratings = loaded.signatures[contract.RECOMMEND_FROM_RATINGS_SIGNATURE]
    by_id = loaded.signatures[contract.RECOMMEND_SIGNATURE]
    given_rows = {u: i for i, u in enumerate(users)}

    def with_ratings(batch: np.ndarray, k: int) -> np.ndarray:
        at = np.array([given_rows[u] for u in batch])
        out = from_ratings(user_id=tf.constant(user_ids[batch]), k=_k(batch, k),
                           rated_movie_ids=tf.constant(movie_ids[movies[at]]), ratings=tf.constant(ratings[at]))
        return rows_of(out[contract.MOVIE_IDS].numpy().astype(str).reshape(-1), movie_ids[1:]).reshape(len(batch), -1)

    def with_id(batch: np.ndarray, k: int) -> np.ndarray:
        out = by_id(user_id=tf.constant(user_ids[batch]), k=_k(batch, k))
        return rows_of(out[contract.MOVIE_IDS].numpy().astype(str).reshape(-1), movie_ids[1:]).reshape(len(batch), -1)

    popular = np.bincount(train.movie, minlength=shape[1]).astype(np.float64)
    rows = {
        "recommend_from_ratings": evaluation.recommend_top_k(with_ratings, users, also_exclude),
        "recommend (id: profile only)" if config.split == splits.SEED_TEMPORAL else "recommend (id: full history)":
            evaluation.recommend_top_k(with_id, users, also_exclude),
        "popularity (training part)": evaluation.top_k_excluding(
            lambda chunk: np.broadcast_to(popular, (len(chunk), len(popular))), users, also_exclude, evaluation.EVAL_TOP_K),
    }
    return {name: evaluation.top_k_metrics(top, relevant, users, evaluation.EVAL_TOP_K) for name, top in rows.items()}
