"""Baselines reported next to the model in every run: global mean, most-popular, EASE.

* ``global_mean`` predicts the mean training rating for every test rating (RMSE).
* Most-popular scores each movie by its number of training interactions (every
  rating value counts) and recommends the same list to everyone, minus the
  movies each user already rated.
* EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"):
  B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, so diag(B) = 0; X is the binary
  users × movies training matrix and a user's scores are their row of X times B.
  It holds a dense movies × movies float64 matrix (the inversion briefly holds
  about three), so it is skipped above ``EASE_MAX_MOVIES`` with a reason the
  trainer writes into metrics.json.

Neither X nor any users × movies score matrix is built in full: XᵀX is summed
over batches of users (0/1 products in float32 are exact below 2²⁴ users) and
scores are computed a batch at a time by :func:`train.evaluation.top_k_excluding`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from train.evaluation import DEFAULT_BATCH, EVAL_TOP_K, dense_rows, gather_rows, rmse, top_k_excluding, top_k_metrics
from train.interactions import Interactions

EASE_L2 = 300.0
EASE_MAX_MOVIES = 20_000
_GRAM_BATCH_BYTES = 64 * 2**20  # size of one dense float32 batch of X while summing XᵀX


def global_mean(train_ratings: np.ndarray) -> float:
    train_ratings = np.asarray(train_ratings, dtype=np.float64)
    if train_ratings.size == 0:
        raise ValueError("global mean of no ratings")
    return float(train_ratings.mean())


def popularity_scores(train: Interactions) -> np.ndarray:
    """Number of training interactions per movie, int64 [n_movies]."""
    return np.bincount(train.indices, minlength=train.n_cols).astype(np.int64)


def top_k_of_ranking(order: np.ndarray, users: np.ndarray, exclude: Interactions, k: int = EVAL_TOP_K) -> np.ndarray:
    """Each user's first ``k`` movies of one shared ranking ``order`` (movie indices, best first) outside their ``exclude`` row.

    What :func:`train.evaluation.top_k_excluding` returns for scores that are
    the same for every user, in O(excluded entries · log) instead of a dense
    users × movies pass, which is slow at scale (docs/training.md, "Large data"). With the user's
    excluded ranks sorted, e_0 < e_1 < …, the j-th free rank is j + #{i : e_i − i ≤ j}
    (e_i − i never decreases, so a binary search counts it). ``-1`` pads a row
    with fewer than ``k`` free movies.
    """
    n = exclude.n_cols
    order = np.asarray(order, dtype=np.int64)
    if order.shape != (n,):
        raise ValueError(f"order must rank all {n} movies, got shape {order.shape}")
    users = np.asarray(users, dtype=np.int64)
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(n)
    positions, cols = gather_rows(exclude, users)
    stride = n + 1
    keys = np.sort(positions * stride + rank_of[cols])  # by user, then rank
    first = np.searchsorted(keys, np.arange(len(users)) * stride)  # each user's first entry
    index_in_row = np.arange(len(keys)) - first[keys // stride]
    shifted = keys - index_in_row  # user · stride + (e_i − i): still ascending
    j = np.arange(min(k, n))  # a probe past n - 1 would count the next user's entries
    probes = (np.arange(len(users)) * stride)[:, None] + j[None, :]
    free = j[None, :] + np.searchsorted(shifted, probes, side="right") - first[:, None]
    out = np.full((len(users), k), -1, dtype=np.int64)
    out[:, : len(j)] = np.where(free < n, order[np.minimum(free, n - 1)], -1)
    return out


class EaseTooLarge(ValueError):
    """The catalogue is above the EASE size limit; ``str(error)`` is the skip reason."""


def ease_skip_reason(n_movies: int, max_movies: int = EASE_MAX_MOVIES) -> str | None:
    """Why EASE would not be fitted on ``n_movies`` movies, or None if it would."""
    if n_movies <= max_movies:
        return None
    gigabytes = n_movies * n_movies * 8 / 1e9
    return (
        f"skipped: EASE inverts a {n_movies} × {n_movies} matrix ({gigabytes:.1f} GB); "
        f"limit {max_movies} movies"
    )


def gram(train: Interactions) -> np.ndarray:
    """XᵀX of the binary table, float64 [n_cols, n_cols], summed over batches of rows."""
    n = train.n_cols
    out = np.zeros((n, n), dtype=np.float64)
    block = np.empty((n, n), dtype=np.float32)
    rows_per_batch = max(1, _GRAM_BATCH_BYTES // (4 * max(n, 1)))
    for start in range(0, train.n_rows, rows_per_batch):
        x = dense_rows(train, np.arange(start, min(start + rows_per_batch, train.n_rows)))
        np.matmul(x.T, x, out=block)
        out += block
    return out


@dataclasses.dataclass(frozen=True)
class EASE:
    """A fitted EASE model: ``weights`` is B, float64 [n_movies, n_movies] with a zero diagonal."""

    weights: np.ndarray
    train: Interactions
    l2: float

    @classmethod
    def fit(cls, train: Interactions, l2: float = EASE_L2, max_movies: int = EASE_MAX_MOVIES) -> "EASE":
        """Closed-form fit; raises :class:`EaseTooLarge` above ``max_movies`` movies."""
        reason = ease_skip_reason(train.n_cols, max_movies)
        if reason is not None:
            raise EaseTooLarge(reason)
        if l2 <= 0:
            raise ValueError(f"EASE needs λ > 0, got {l2}")
        g = gram(train)
        g[np.diag_indices_from(g)] += l2
        p = np.linalg.inv(g)
        del g
        # B = I − P·diag(1/diag P): off the diagonal B_ij = −P_ij / P_jj; diag(B) = 0.
        p /= -np.diag(p).copy()[None, :]
        np.fill_diagonal(p, 0.0)
        return cls(p, train, float(l2))

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of a batch of users, float64 [len(users), n_movies]: their training rows times B."""
        return dense_rows(self.train, users, dtype=np.float64) @ self.weights


def evaluate_baselines(
    train: Interactions,
    exclude: Interactions,
    relevant: Interactions,
    users: np.ndarray,
    train_mean: float,
    test_ratings: np.ndarray,
    k: int = EVAL_TOP_K,
    ease_l2: float = EASE_L2,
    ease_max_movies: int = EASE_MAX_MOVIES,
    batch: int = DEFAULT_BATCH,
) -> dict[str, dict[str, Any]]:
    """All baselines under the protocol of :mod:`train.evaluation`, each with its wall ``seconds``.

    ``train`` is what the baselines learn from, ``exclude`` the movies removed
    from each user's list, ``relevant`` the test movies rated ≥ 4 and
    ``users`` the evaluated users. Returns::

        {"global_mean": {"test_rmse", "seconds"},
         "popularity": {"recall_at_k", "ndcg_at_k", "coverage_at_k", "users_evaluated", "seconds"},
         "ease": {..., "l2", "fit_seconds", "seconds"} or {"skipped": reason}}
    """
    results: dict[str, dict[str, Any]] = {}

    start = time.perf_counter()
    test_ratings = np.asarray(test_ratings, dtype=np.float64)
    results["global_mean"] = {"test_rmse": rmse(np.full(test_ratings.shape, train_mean), test_ratings)}
    results["global_mean"]["seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    # One ranking for everyone: most interactions first, ties to the lower movie index (as top_k_excluding).
    top = top_k_of_ranking(np.argsort(-popularity_scores(train), kind="stable"), users, exclude, k)
    results["popularity"] = {**top_k_metrics(top, relevant, users, k), "seconds": time.perf_counter() - start}

    reason = ease_skip_reason(train.n_cols, ease_max_movies)
    if reason is not None:
        results["ease"] = {"skipped": reason}
        return results
    start = time.perf_counter()
    model = EASE.fit(train, ease_l2, ease_max_movies)
    fit_seconds = time.perf_counter() - start
    top = top_k_excluding(model.scores, users, exclude, k, batch)
    results["ease"] = {
        **top_k_metrics(top, relevant, users, k),
        "l2": model.l2,
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - start,
    }
    return results
