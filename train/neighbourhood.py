"""A neighbourhood rating model beside ranking's network: item-based k-NN on baseline residuals.

The ranking network predicts a rating from a few dozen embedding numbers per
user and movie; a user's own ratings of the movies most like the target carry
detail those numbers lose. This is the k-NN model with baselines (Koren,
"Factor in the neighbors", 2010; Surprise's ``KNNBaseline``): a rating is
the baseline μ + b_u + b_i plus the similarity-weighted mean of the user's
residuals r_uj − b_uj on the ``k`` rated movies most similar to i. The
similarity is the Pearson correlation of the two movies' residuals over the
users who rated both, shrunk towards 0 by (n − 1) / (n − 1 + ``shrinkage``).

The two models err differently, so the served rating is
(1 − w) × network + w × neighbourhood for a user and movie that have training
ratings (the network alone otherwise), with w = ``knn_weight``
(docs/model.md, "Why these values", has the measurements).

Everything is fitted in closed form before the network trains. Nothing is
sized movies²: co-ratings are summed as sorted pairs (all of them while
they number at most ``MAX_PAIRS``, else a reweighted sample of each rating's
partners, as ``item_to_item`` counts co-ratings), and the model keeps each movie's
``LIST_PER_K`` × ``k`` most similar movies. Scoring a (user, movie) pair looks
up which of those the user rated: one binary search per neighbour over the
sorted (user, movie) keys of the training ratings. Above
``item_to_item.MAX_MOVIES`` movies the ranking stage goes without it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from train import item_to_item

# Pairs summed at most: nine 8-byte arrays each while sorting and summing (about 1.2 GB at the limit).
MAX_PAIRS = item_to_item.MAX_PAIRS // 4
LIST_PER_K = 4  # each movie keeps its 4k most similar movies, of which a user's k best rated ones count
USER_L2, MOVIE_L2 = 15.0, 10.0  # the baseline's shrinkage of user and movie means, in ratings (Surprise's defaults)
_BASELINE_ITERATIONS = 10


def baseline(indptr: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
             n_movie_rows: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(μ, b_u per user row, b_i per movie row): regularised biases, by alternating least squares."""
    users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    movies, ratings = np.asarray(movies, np.int64), np.asarray(ratings, np.float64)
    mean = float(ratings.mean()) if len(ratings) else 0.0
    user_bias, movie_bias = np.zeros(len(indptr) - 1), np.zeros(n_movie_rows)
    user_count, movie_count = np.diff(indptr), np.bincount(movies, minlength=n_movie_rows)
    for _ in range(_BASELINE_ITERATIONS):
        movie_bias = np.bincount(movies, ratings - mean - user_bias[users], n_movie_rows) / (MOVIE_L2 + movie_count)
        user_bias = np.bincount(users, ratings - mean - movie_bias[movies], len(indptr) - 1) / (USER_L2 + user_count)
    return mean, user_bias, movie_bias


def similar_movies(indptr: np.ndarray, movies: np.ndarray, residuals: np.ndarray, n_movie_rows: int,
                   shrinkage: float, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(movie rows [n_movie_rows, width] int64 0-padded, similarities float32): each movie's most similar
    movies by shrunk Pearson correlation of residuals, best first, positive ones only."""
    left, right, weight = item_to_item.co_rated_positions(indptr, item_to_item.partners_within_budget(indptr, MAX_PAIRS),
                                                          seed)
    movies = np.asarray(movies, np.int64)
    # The sums are symmetric: each unordered pair is summed once (lower movie row first), then mirrored.
    once = movies[left] < movies[right]
    left, right, weight = left[once], right[once], weight[once]
    keys = movies[left] * n_movie_rows + movies[right]
    order = np.argsort(keys, kind="stable")
    keys, left, right, weight = keys[order], left[order], right[order], weight[order]
    del order
    if not len(keys):
        return np.zeros((n_movie_rows, width), np.int64), np.zeros((n_movie_rows, width), np.float32)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    x, y = residuals[left].astype(np.float64), residuals[right].astype(np.float64)
    n, xy = np.add.reduceat(weight, starts), np.add.reduceat(weight * x * y, starts)
    xx, yy = np.add.reduceat(weight * x * x, starts), np.add.reduceat(weight * y * y, starts)
    similarity = (n - 1) / (n - 1 + shrinkage) * xy / np.sqrt(np.maximum(xx * yy, 1e-12))
    low, high = keys[starts] // n_movie_rows, keys[starts] % n_movie_rows
    first, second, similarity = np.concatenate([low, high]), np.concatenate([high, low]), np.tile(similarity, 2)
    keep = similarity > 0
    first, second, similarity = first[keep], second[keep], similarity[keep]
    order = np.lexsort((second, -similarity, first))  # by movie, most similar first
    first, second, similarity = first[order], second[order], similarity[order]
    rank = np.arange(len(first)) - np.searchsorted(first, first)
    keep = rank < width
    support, values = np.zeros((n_movie_rows, width), np.int64), np.zeros((n_movie_rows, width), np.float32)
    support[first[keep], rank[keep]] = second[keep]
    values[first[keep], rank[keep]] = similarity[keep]
    return support, values


class Neighbourhood(tf.keras.layers.Layer):
    """(user rows, movie rows) → the k-NN-with-baselines rating, [B]; every table fixed at construction."""

    def __init__(self, indptr: np.ndarray, movies: np.ndarray, ratings: np.ndarray, n_movie_rows: int, k: int,
                 shrinkage: float, seed: int = 0, fit: bool = True, **kwargs):
        """``fit`` False: zero tables of the fitted shapes, for a checkpoint to fill (a reload skips the fit)."""
        super().__init__(**kwargs)
        users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        movies = np.asarray(movies, np.int64)
        if fit:
            mean, user_bias, movie_bias = baseline(indptr, movies, ratings, n_movie_rows)
            residuals = np.asarray(ratings, np.float64) - mean - user_bias[users] - movie_bias[movies]
            support, similarity = similar_movies(indptr, movies, residuals, n_movie_rows, shrinkage, LIST_PER_K * k,
                                                 seed)
        else:
            mean, residuals = 0.0, np.zeros(len(movies))
            user_bias, movie_bias = np.zeros(len(indptr) - 1), np.zeros(n_movie_rows)
            support = np.zeros((n_movie_rows, LIST_PER_K * k), np.int64)
            similarity = np.zeros((n_movie_rows, LIST_PER_K * k), np.float32)
        self.k, self.n_movie_rows = k, n_movie_rows
        # Non-trainable variables, not constants: the SavedModel stores them once, with the other tables.
        self.mean = tf.Variable(mean, trainable=False, dtype=tf.float32, name="mean")
        self.user_bias = tf.Variable(user_bias.astype(np.float32), trainable=False, name="user_bias")
        self.movie_bias = tf.Variable(movie_bias.astype(np.float32), trainable=False, name="movie_bias")
        self.support = tf.Variable(support, trainable=False, name="support")
        self.similarity = tf.Variable(similarity, trainable=False, name="similarity")
        # CSR rows are users and movies are sorted within a row, so these keys are sorted.
        self.rating_keys = tf.Variable(users.astype(np.int64) * n_movie_rows + movies, trainable=False,
                                       name="rating_keys")
        self.residuals = tf.Variable(residuals.astype(np.float32), trainable=False, name="residuals")

    def call(self, users: tf.Tensor, movies: tf.Tensor) -> tf.Tensor:
        users, movies = tf.cast(users, tf.int64), tf.cast(movies, tf.int64)
        support = tf.gather(self.support, movies)  # [B, 4k]
        wanted = users[:, None] * self.n_movie_rows + support
        at = tf.minimum(tf.searchsorted(self.rating_keys, tf.reshape(wanted, [-1]), out_type=tf.int64),
                        tf.maximum(tf.size(self.rating_keys, out_type=tf.int64) - 1, 0))
        at = tf.reshape(at, tf.shape(support))
        rated = (tf.gather(self.rating_keys, at) == wanted) & (support > 0)
        similarity = tf.where(rated, tf.gather(self.similarity, movies), tf.zeros_like(support, tf.float32))
        best = tf.math.top_k(similarity, k=tf.minimum(self.k, tf.shape(support)[1]))  # the user's k nearest rated
        residual = tf.gather(tf.gather(self.residuals, at), best.indices, batch_dims=1)
        total = tf.reduce_sum(best.values, axis=1)
        offset = tf.math.divide_no_nan(tf.reduce_sum(best.values * residual, axis=1), total)
        return self.mean + tf.gather(self.user_bias, users) + tf.gather(self.movie_bias, movies) + offset
