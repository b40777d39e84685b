"""Top-k evaluation protocol: Recall@k, NDCG@k, coverage@k, and RMSE.

Protocol. For each evaluated user the model's top ``k`` movies are taken after
removing the movies that user rated in the training data; the user's relevant
movies are their test ratings with rating ≥ 4 (the caller builds that table).

* ``recall_at_k`` = hits / min(k, |relevant|) — the Mult-VAE definition (Liang
  et al. 2018), so a user with more than k relevant movies can still reach 1.
* ``ndcg_at_k`` = DCG@k / IDCG@k with binary gains, DCG = Σ_{rank i=1..k}
  rel_i / log2(i + 1) and IDCG the DCG of min(k, |relevant|) hits at the top.
* Both are averaged over the evaluated users that have ≥ 1 relevant movie
  (``users_evaluated`` counts them); users without one are skipped, not
  counted as 0.
* ``coverage_at_k`` = number of distinct movies across the top-k lists of
  *all* evaluated users passed in, including those without a relevant movie.

Who is evaluated: every user of the part, or a seeded sample when there are
more than ``max_eval_users`` (``evaluation_users``). Their top ``k`` comes from
scores over the catalogue (``top_k_excluding``, the baselines) or from a served
``recommend`` (``recommend_top_k``: the trainer, the export gate, the
SavedModel evaluation).

These definitions are the ones that reproduce the ML-100K u1 figures of EASE
and most popular the project was given (``train/baselines_test.py`` checks them;
how the other candidate definitions miss is in docs/model.md, "Evaluation in
every run").

Everything works on integer indices (users ``0..n_users-1``, movies
``0..n_movies-1``) and :class:`~train.interactions.Interactions` tables; no
users × movies matrix is ever built in full — scores are computed in batches.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from common import contract
from train.interactions import Interactions

# The cut-off of every top-k quality figure (Recall@10, NDCG@10, coverage@10). Not the served
# input "k" (common/contract.py K), which each request sets.
EVAL_TOP_K = 10
DEFAULT_BATCH = 256  # users per scores_fn call: a few float arrays of batch × n_movies are alive at once
EVAL_BATCH = contract.MAX_RECOMMEND_USERS  # users per recommend call: the served signature's limit
NEW_USER_RATINGS = 5  # ratings a new user gives recommend_from_ratings, in every new-user figure

ScoresFn = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of user indices (int64 [b]) to scores, float [b, n_movies]; higher is better."""


def metric_names(k: int = EVAL_TOP_K) -> tuple[str, str, str]:
    return f"recall_at_{k}", f"ndcg_at_{k}", f"coverage_at_{k}"


def gather_rows(table: Interactions, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries of ``rows`` (in the given order) as (position in ``rows``, column) arrays."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= table.n_rows):
        raise ValueError(f"row index outside [0, {table.n_rows})")
    starts = table.indptr[rows]
    lengths = table.indptr[rows + 1] - starts
    positions = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    # Offset of every entry inside its own row, then shifted to that row's start.
    first = np.cumsum(lengths) - lengths
    offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(first, lengths)
    return positions, table.indices[np.repeat(starts, lengths) + offsets].astype(np.int64)


def dense_rows(table: Interactions, rows: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Rows of the table as a dense 0/1 matrix [len(rows), n_cols] — for a batch, never the whole table."""
    positions, cols = gather_rows(table, rows)
    out = np.zeros((len(rows), table.n_cols), dtype=dtype)
    out[positions, cols] = 1
    return out


def _check_users(users: np.ndarray, n_rows: int, what: str, distinct: bool = True) -> np.ndarray:
    users = np.asarray(users)
    if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
        raise ValueError(f"users must be a 1-d integer array, got {users.dtype} {users.shape}")
    users = users.astype(np.int64)
    if len(users) and (users.min() < 0 or users.max() >= n_rows):
        raise ValueError(f"user index outside [0, {n_rows}) of the {what} table")
    if distinct and len(np.unique(users)) != len(users):
        raise ValueError("users must be distinct: a repeated user would be counted twice")
    return users


def evaluation_users(user_rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """The distinct users of a part, or a seeded sample of ``limit`` of them (sorted) when there are more.

    Scoring a user is a pass over the whole catalogue, so on ML-25M-sized data
    the evaluation of every test user would cost more than the training; a
    sample of 20,000 users keeps the figures' standard error near 0.003 and
    leaves smaller sets (ML-100K, ML-1M) wholly evaluated.
    """
    users = np.unique(user_rows)
    if limit <= 0 or len(users) <= limit:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, limit, replace=False))


def top_k_excluding(
    scores_fn: ScoresFn,
    users: np.ndarray,
    exclude: Interactions,
    k: int = EVAL_TOP_K,
    batch: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Each user's ``k`` best-scored movies outside their ``exclude`` row, best first.

    Returns int64 [len(users), k]. Ties are broken by the lower movie index, so
    the result is deterministic. Excluded movies (and movies scored -inf) are
    never returned; a user with fewer than ``k`` candidates gets ``-1`` padding
    at the end of the row. NaN scores raise. Memory is O(batch × n_movies):
    ``scores_fn`` is called once per batch of at most ``batch`` users.
    """
    if k < 1 or batch < 1:
        raise ValueError(f"k and batch must be ≥ 1, got k={k}, batch={batch}")
    users = _check_users(users, exclude.n_rows, "exclusion", distinct=False)
    n_movies = exclude.n_cols
    out = np.full((len(users), k), -1, dtype=np.int64)
    take = min(k, n_movies)
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        scores = np.asarray(scores_fn(chunk))
        if scores.shape != (len(chunk), n_movies):
            raise ValueError(f"scores_fn returned shape {scores.shape}, expected {(len(chunk), n_movies)}")
        # A private float copy: the callback's array may be shared or read-only.
        scores = scores.astype(scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64, copy=True)
        if np.isnan(scores).any():
            raise ValueError("scores_fn returned NaN scores")
        positions, cols = gather_rows(exclude, chunk)
        scores[positions, cols] = -np.inf
        out[start : start + len(chunk), :take] = _top_k_rows(scores, take)
    return out


def _top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise top k of a [b, n] score matrix (k ≤ n), ties to the lower index, -inf → -1."""
    b, n = scores.shape
    if b == 0:
        return np.empty((0, k), dtype=np.int64)
    # The k-th largest value per row; everything above it is in, ties on it are
    # taken from the lowest index until k are chosen — exactly k per row.
    kth = np.partition(scores, n - k, axis=1)[:, n - k : n - k + 1]
    above = scores > kth
    ties = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (ties & (np.cumsum(ties, axis=1, dtype=np.int32) <= room))
    index = np.nonzero(chosen)[1].reshape(b, k)  # row-major: ascending movie index per row
    values = np.take_along_axis(scores, index, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")  # stable: equal scores keep index order
    index = np.take_along_axis(index, order, axis=1)
    index[np.take_along_axis(values, order, axis=1) == -np.inf] = -1
    return index


def earliest_ratings(rows, users: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user of ``users`` (sorted, each with ≥ ``n`` rows): their earliest ``n`` (movie, rating) entries.

    ``rows`` is a ``train.rows.Rows`` (user, movie, rating, timestamp arrays). Returns movies [U, n],
    ratings [U, n] and a mask of the chosen rows: the input of a new-user figure, a user described by
    the first ratings they gave.
    """
    order = np.lexsort((rows.timestamp, rows.user))
    starts = np.searchsorted(rows.user[order], users)
    take = order[(starts[:, None] + np.arange(n)).reshape(-1)]
    chosen = np.zeros(len(rows.user), bool)
    chosen[take] = True
    return rows.movie[take].reshape(-1, n), rows.rating[take].reshape(-1, n), chosen


def new_user_input(rows, users: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Those of ``users`` with NEW_USER_RATINGS ``rows`` or more, and their earliest that many (movies, ratings)."""
    users = users[rows.table(*shape).lengths()[users] >= NEW_USER_RATINGS]
    movies, ratings, _ = earliest_ratings(rows, users, NEW_USER_RATINGS)
    return users, movies, ratings


def recommend_top_k(recommend, users: np.ndarray, also_exclude: Interactions, k: int = EVAL_TOP_K) -> np.ndarray:
    """Top ``k`` movie rows per user from ``recommend(user_rows, k) -> movie rows``, minus ``also_exclude``.

    The served ``recommend`` removes what the user rated in training; the
    protocol also removes what they rated in validation, so each batch asks for
    ``k`` + that many more and drops them here.
    """
    out = []
    for start in range(0, len(users), EVAL_BATCH):
        batch = users[start : start + EVAL_BATCH]
        extra = int(also_exclude.lengths()[batch].max(initial=0))
        movies = np.asarray(recommend(batch, k + extra))
        rows = np.repeat(batch, movies.shape[1]).reshape(movies.shape)
        dropped = also_exclude.contains(rows.reshape(-1), movies.reshape(-1)).reshape(movies.shape)
        order = np.argsort(dropped, axis=1, kind="stable")[:, :k]  # kept movies first, in rank order
        top = np.take_along_axis(movies, order, axis=1)
        top[np.take_along_axis(dropped, order, axis=1)] = -1
        out.append(top)
    return np.concatenate(out) if out else np.empty((0, k), np.int64)


def top_k_metrics(
    top_k: np.ndarray,
    relevant: Interactions,
    users: np.ndarray,
    k: int = EVAL_TOP_K,
) -> dict[str, float | int]:
    """Recall@k, NDCG@k (means over users with a relevant movie) and coverage@k (over all ``users``).

    ``top_k`` is int [len(users), ≥ k], movie indices best first; only the
    first ``k`` columns are read, and ``-1`` marks an empty slot (no movie at
    that rank). Row ``i`` belongs to ``users[i]``, whose relevant movies are
    ``relevant.row(users[i])``. Returns ``recall_at_{k}``, ``ndcg_at_{k}``,
    ``coverage_at_{k}`` and ``users_evaluated`` (users with ≥ 1 relevant
    movie; recall and NDCG are NaN when it is 0).
    """
    users = _check_users(users, relevant.n_rows, "relevant")
    top_k = np.asarray(top_k)
    if top_k.ndim != 2 or top_k.shape[0] != len(users) or top_k.shape[1] < k:
        raise ValueError(f"top_k must be [{len(users)}, ≥{k}], got {top_k.shape}")
    if not np.issubdtype(top_k.dtype, np.integer):
        raise ValueError(f"top_k must hold integer movie indices, got {top_k.dtype}")
    top_k = top_k[:, :k].astype(np.int64)
    if top_k.size and (top_k.min() < -1 or top_k.max() >= relevant.n_cols):
        raise ValueError(f"top_k holds a movie index outside [0, {relevant.n_cols}) other than -1 padding")
    present = top_k >= 0
    ordered = np.sort(top_k, axis=1)
    if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
        raise ValueError("a top-k row lists the same movie twice")

    hits = np.zeros(top_k.shape, dtype=bool)
    rows = np.repeat(users, k).reshape(top_k.shape)
    hits[present] = relevant.contains(rows[present], top_k[present])

    n_relevant = relevant.lengths()[users]
    evaluated = n_relevant > 0
    ideal = np.minimum(n_relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg_by_count = np.concatenate([[0.0], np.cumsum(discounts)])
    recall = hits.sum(axis=1)[evaluated] / ideal[evaluated]
    ndcg = (hits @ discounts)[evaluated] / idcg_by_count[ideal[evaluated]]

    recall_key, ndcg_key, coverage_key = metric_names(k)
    n_evaluated = int(evaluated.sum())
    return {
        recall_key: float(recall.mean()) if n_evaluated else float("nan"),
        ndcg_key: float(ndcg.mean()) if n_evaluated else float("nan"),
        coverage_key: int(len(np.unique(top_k[present]))),
        "users_evaluated": n_evaluated,
    }


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error of two equally long rating arrays."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if predicted.shape != actual.shape:
        raise ValueError(f"predicted and actual differ in shape: {predicted.shape} vs {actual.shape}")
    if predicted.size == 0:
        raise ValueError("RMSE of no ratings")
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))
