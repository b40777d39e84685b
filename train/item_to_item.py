"""A sparse item-to-item model beside retrieval's towers: EASE restricted to each movie's nearest movies.

The two towers score a user through one ``retrieval_dim``-wide query, so every
movie a user rated is squeezed into a few dozen numbers; EASE (Steck 2019),
a regression of each movie on all the others, keeps the item-to-item detail
and beats the towers alone on MovieLens. Their errors differ, so retrieval
adds the two: each user's tower scores and item-to-item scores are
standardised over the catalogue and summed, the latter times ``item_weight``
(docs/model.md, "Why these values", has the measurements).

EASE itself is a dense movies × movies inverse; this is the same regression
with each movie's weights restricted to its ``neighbours`` most co-rated
movies (cosine of co-rating counts), solved in closed form one movie at a time:
w_j = (G[S, S] + λI)⁻¹ G[S, j], with G the co-rating counts and S the
neighbours of j (never j itself, EASE's zero diagonal). Nothing is sized
movies²: co-ratings are counted as sorted pairs (every pair of a user's
ratings while they number at most ``MAX_PAIRS``, else a sample of each
rating's partners, reweighted), the model is movies × ``neighbours`` weights,
and fitting solves one ``neighbours``-square system per movie. Scoring a user
is one sparse × dense product over those weights. Above ``MAX_MOVIES`` movies
the per-movie solves dominate a run, and retrieval goes without it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MAX_PAIRS = 1 << 26  # co-rating pairs counted at most (three 8-byte arrays while sorting)
MAX_MOVIES = 10_000  # catalogues above this train without the item-to-item model
_SOLVE_BATCH = 256  # movies solved at once: [batch, neighbours, neighbours] float64


def co_rated_positions(indptr: np.ndarray, partners: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rating, other rating, weight): positions in the CSR history of pairs rated by the same user (vectorised).

    Each rating is paired with every other rating of its user when the user
    has at most ``partners`` + 1, with weight 1; else with ``partners`` of them
    drawn at random, weighted (ratings − 1) / ``partners`` so that summed
    weights estimate sums over every pair.
    """
    lengths = np.diff(indptr)
    user = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(int(indptr[-1])) - indptr[user]
    length = lengths[user]
    small = length <= partners + 1
    # Every pair of a small user's ratings: entry e meets offsets 1 .. L-1 from it, wrapping round.
    per_entry = np.where(small, length - 1, 0)
    left = np.repeat(np.arange(len(user)), per_entry)
    offset = 1 + np.arange(len(left)) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    right = indptr[user[left]] + (position[left] + offset) % length[left]
    # A large user's rating meets ``partners`` others drawn uniformly, itself excluded.
    large = np.flatnonzero(~small)
    draws = np.random.default_rng(seed).integers(0, length[large, None] - 1, size=(len(large), partners))
    others = np.where(draws >= position[large, None], draws + 1, draws) + indptr[user[large], None]
    return (np.concatenate([left, np.repeat(large, partners)]).astype(np.int64),
            np.concatenate([right, others.reshape(-1)]).astype(np.int64),
            np.concatenate([np.ones(len(left)), np.repeat((length[large] - 1) / partners, partners)]))


def co_rated_pairs(indptr: np.ndarray, movies: np.ndarray, partners: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(movie, other movie, weight) for pairs rated by the same user: ``co_rated_positions``' movies."""
    movies = np.asarray(movies, np.int64)
    left, right, weight = co_rated_positions(indptr, partners, seed)
    return movies[left], movies[right], weight


def partners_within_budget(indptr: np.ndarray, budget: int | None = None) -> int:
    """Partners per rating: all of them while every pair fits ``budget`` (``MAX_PAIRS``), else a share of it."""
    budget = MAX_PAIRS if budget is None else budget
    lengths = np.diff(indptr).astype(np.int64)
    all_pairs = int(np.sum(lengths * (lengths - 1)))
    return int(lengths.max(initial=1)) if all_pairs <= budget else max(1, budget // max(int(indptr[-1]), 1))


def co_rating_counts(indptr: np.ndarray, movies: np.ndarray, n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pair keys ``movie · n_rows + other`` and their co-rating counts (exact while they fit ``MAX_PAIRS``)."""
    left, right, weight = co_rated_pairs(indptr, movies, partners_within_budget(indptr), seed)
    keys = left * n_rows + right
    order = np.argsort(keys, kind="stable")
    keys, weight = keys[order], weight[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1]))) if len(keys) else np.empty(0, np.int64)
    return keys[starts], (np.add.reduceat(weight, starts) if len(keys) else np.empty(0))


def nearest(keys: np.ndarray, counts: np.ndarray, movie_count: np.ndarray, neighbours: int) -> np.ndarray:
    """int64 [movie rows, ``neighbours``]: each movie's most co-rated movies by cosine, 0-padded.

    Cosine is count / √(ratings of one × ratings of the other), so a
    blockbuster is not everyone's neighbour; ties go to the lower movie row.
    """
    n_rows = len(movie_count)
    first, second = keys // n_rows, keys % n_rows
    cosine = counts / np.sqrt(movie_count[first].astype(np.float64) * movie_count[second])
    order = np.lexsort((second, -cosine, first))  # by movie, best neighbour first
    first, second = first[order], second[order]
    rank = np.arange(len(first)) - np.searchsorted(first, first)
    keep = rank < neighbours
    table = np.zeros((n_rows, neighbours), np.int64)
    table[first[keep], rank[keep]] = second[keep]
    return table


def fit(indptr: np.ndarray, movies: np.ndarray, movie_count: np.ndarray, catalogue: np.ndarray, neighbours: int,
        l2: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The closed-form weights: (support, weights), [catalogue, ``neighbours``] movie rows (0: none) and float32.

    Catalogue movie ``c``'s score for a user is the sum of ``weights[c]`` over
    the ``support[c]`` movies the user rated.
    """
    n_rows = len(movie_count)
    keys, counts = co_rating_counts(indptr, movies, n_rows, seed)
    support = nearest(keys, counts, movie_count, neighbours)[catalogue]

    def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # co-rating counts of movie rows a and b; ratings if a == b
        wanted = a * n_rows + b
        at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        found = keys[at] == wanted if len(keys) else np.zeros(wanted.shape, bool)
        return np.where(a == b, movie_count[a], np.where(found, counts[at] if len(keys) else 0.0, 0.0))

    weights = np.zeros(support.shape, np.float32)
    eye = np.eye(neighbours)
    for start in range(0, len(catalogue), _SOLVE_BATCH):
        s = support[start : start + _SOLVE_BATCH]
        real = (s > 0).astype(np.float64)
        a = gram(s[:, :, None], s[:, None, :]) * real[:, :, None] * real[:, None, :] + l2 * eye
        b = gram(s, np.asarray(catalogue[start : start + _SOLVE_BATCH], np.int64)[:, None]) * real
        weights[start : start + len(s)] = np.linalg.solve(a, b[..., None])[..., 0] * real
    return support, weights


class ItemToItem(tf.keras.layers.Layer):
    """Rated movies → a score for every catalogue movie: the fitted weights of the rated movies, summed."""

    def __init__(self, support: np.ndarray, weights: np.ndarray, n_movie_rows: int, **kwargs):
        super().__init__(**kwargs)
        rows, slots = np.nonzero(support)
        # Non-trainable variables, not constants: the SavedModel stores them once, with the other tables.
        self.indices = tf.Variable(np.stack([rows, support[rows, slots]], axis=1).astype(np.int64), trainable=False,
                                   name="indices")
        self.values = tf.Variable(weights[rows, slots], trainable=False, name="values")
        self.dense_shape = (len(support), n_movie_rows)

    def call(self, movies: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """[B, catalogue] from [B, L] movie rows; ``mask`` marks the real entries (a repeat counts once)."""
        where = tf.where(mask)
        rated = tf.stack([where[:, 0], tf.cast(tf.gather_nd(movies, where), tf.int64)], axis=1)
        batch = tf.shape(movies, out_type=tf.int64)[0]
        x = tf.tensor_scatter_nd_max(tf.zeros(tf.stack([batch, self.dense_shape[1]])), rated, tf.ones(tf.shape(rated)[:1]))
        weights = tf.sparse.SparseTensor(self.indices, self.values, self.dense_shape)
        return tf.transpose(tf.sparse.sparse_dense_matmul(weights, x, adjoint_b=True))


def standardised(scores: tf.Tensor) -> tf.Tensor:
    """Each row minus its mean, over its standard deviation (a constant row becomes zeros)."""
    mean, variance = tf.nn.moments(scores, axes=[1], keepdims=True)
    return (scores - mean) / tf.maximum(tf.sqrt(variance), 1e-6)


def with_item_scores(scores: tf.Tensor, item_to_item: ItemToItem | None, weight: float, movies: tf.Tensor,
                     mask: tf.Tensor) -> tf.Tensor:
    """The towers' [B, catalogue] scores plus ``weight`` × the item-to-item model's, both standardised;
    the towers' scores alone when there is no item-to-item model."""
    if item_to_item is None:
        return scores
    return standardised(scores) + weight * standardised(item_to_item(movies, mask))
