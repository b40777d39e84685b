import numpy as np

import common.tf_setup  # noqa: F401
import tensorflow as tf

from train import neighbourhood
from train.neighbourhood import Neighbourhood, baseline, similar_movies

N_MOVIE_ROWS = 13  # movie rows 1..12; 12 is never rated


def random_history(seed: int, users: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CSR history over user rows 0..users-1 (row 0 empty, as the unknown user), movies sorted per row."""
    rng = np.random.default_rng(seed)
    rows = [np.array([], np.int64)] + [np.sort(rng.choice(np.arange(1, 12), size=rng.integers(1, 10), replace=False))
                                       for _ in range(users - 1)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    movies = np.concatenate(rows)
    return indptr, movies, rng.integers(1, 6, size=len(movies)).astype(np.float64)


def dense(indptr, movies, values):
    table = np.full((len(indptr) - 1, N_MOVIE_ROWS), np.nan)
    table[np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)), movies] = values
    return table


def test_the_baseline_solves_its_regularised_least_squares():
    indptr, movies, ratings = random_history(0)
    mean, user_bias, movie_bias = baseline(indptr, movies, ratings, N_MOVIE_ROWS)
    table = dense(indptr, movies, ratings)
    assert mean == ratings.mean()
    rated = ~np.isnan(table)
    residual = np.where(rated, table - mean - user_bias[:, None] - movie_bias[None, :], 0.0)
    # At the fixed point each bias is its residuals' sum over (count + L2); alternating gets close in 10 rounds.
    movie_step = (residual.sum(0) + movie_bias * rated.sum(0)) / (neighbourhood.MOVIE_L2 + rated.sum(0))
    user_step = (residual.sum(1) + user_bias * rated.sum(1)) / (neighbourhood.USER_L2 + rated.sum(1))
    assert np.allclose(movie_bias, movie_step, atol=1e-3) and np.allclose(user_bias, user_step, atol=1e-3)
    assert user_bias[0] == 0 and movie_bias[12] == 0  # nothing rated: no bias


def brute_similarity(table: np.ndarray, shrinkage: float) -> np.ndarray:
    out = np.zeros((N_MOVIE_ROWS, N_MOVIE_ROWS))
    for i in range(1, N_MOVIE_ROWS):
        for j in range(1, N_MOVIE_ROWS):
            both = ~np.isnan(table[:, i]) & ~np.isnan(table[:, j])
            if i == j or not both.any():
                continue
            x, y = table[both, i], table[both, j]
            n = both.sum()
            out[i, j] = (n - 1) / (n - 1 + shrinkage) * (x @ y) / np.sqrt(max((x @ x) * (y @ y), 1e-12))
    return out


def test_similar_movies_are_the_shrunk_correlations_of_residuals_best_first():
    indptr, movies, ratings = random_history(1)
    residuals = ratings - ratings.mean()
    support, values = similar_movies(indptr, movies, residuals, N_MOVIE_ROWS, shrinkage=5.0, width=4)
    expected = brute_similarity(dense(indptr, movies, residuals), 5.0)
    for movie in range(N_MOVIE_ROWS):
        positive = np.flatnonzero(expected[movie] > 0)
        best = positive[np.lexsort((positive, -expected[movie, positive]))][:4]
        assert support[movie, : len(best)].tolist() == best.tolist()
        assert np.allclose(values[movie, : len(best)], expected[movie, best], atol=1e-6)
        assert not support[movie, len(best):].any() and not values[movie, len(best):].any()  # 0-padded


def brute_prediction(table, residual_table, user_bias, movie_bias, mean, support, values, user, movie, k):
    rated = [(s, j) for j, s in zip(support[movie], values[movie]) if j > 0 and not np.isnan(table[user, j])]
    best = sorted(rated, key=lambda pair: -pair[0])[:k]
    offset = sum(s * residual_table[user, j] for s, j in best) / sum(s for s, _ in best) if best else 0.0
    return mean + user_bias[user] + movie_bias[movie] + offset


def test_a_rating_is_the_baseline_plus_the_k_most_similar_rated_movies_residual_mean():
    indptr, movies, ratings = random_history(2)
    layer = Neighbourhood(indptr, movies, ratings, N_MOVIE_ROWS, k=2, shrinkage=3.0)
    mean, user_bias, movie_bias = baseline(indptr, movies, ratings, N_MOVIE_ROWS)
    users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    residuals = ratings - mean - user_bias[users] - movie_bias[movies]
    support, values = similar_movies(indptr, movies, residuals, N_MOVIE_ROWS, 3.0, neighbourhood.LIST_PER_K * 2)
    table, residual_table = dense(indptr, movies, ratings), dense(indptr, movies, residuals)
    pairs = np.array([(u, m) for u in range(len(indptr) - 1) for m in range(N_MOVIE_ROWS)])
    got = layer(tf.constant(pairs[:, 0]), tf.constant(pairs[:, 1])).numpy()
    expected = [brute_prediction(table, residual_table, user_bias, movie_bias, mean, support, values, u, m, 2)
                for u, m in pairs]
    assert np.allclose(got, expected, atol=1e-5)
    # The unknown user (row 0, no history) and the unrated movie get the baseline alone.
    assert np.allclose(got[pairs[:, 0] == 0], mean + movie_bias[pairs[pairs[:, 0] == 0, 1]], atol=1e-6)
    unrated = pairs[:, 1] == 12
    assert np.allclose(got[unrated], mean + user_bias[pairs[unrated, 0]], atol=1e-6)


def test_the_layer_stores_its_tables_as_non_trainable_variables():
    indptr, movies, ratings = random_history(3)
    layer = Neighbourhood(indptr, movies, ratings, N_MOVIE_ROWS, k=3, shrinkage=10.0)
    assert not layer.trainable_weights
    assert {v.name.split("/")[-1].split(":")[0] for v in layer.non_trainable_weights} == {
        "mean", "user_bias", "movie_bias", "support", "similarity", "rating_keys", "residuals"}
    assert layer.support.shape == (N_MOVIE_ROWS, neighbourhood.LIST_PER_K * 3)
