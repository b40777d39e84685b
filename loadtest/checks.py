"""What a correct answer looks like; a response that fails a check is a failed request.

A load test that only counts gRPC errors reports a server returning garbage
fast as a success. These checks run on every response in the load test (and
are unit-tested on their own), so wrong answers show up as Locust failures.

What a check knows about the API (which outputs a signature has, the dtype and
rank of a predicted rating) comes from ``common/contract.py``, so a signature
change there moves the checks with it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

from client.protocol import Recommendation
from common import contract
from common.contract import MOVIE_TITLES, PREDICT_SIGNATURE, PREDICTED_RATING, RECOMMEND_SIGNATURE


class CheckFailed(Exception):
    """The server answered, but the answer is wrong. Messages stay stable so Locust groups them."""


def check_recommendations(
    rows: Sequence[Sequence[Recommendation]], n_users: int, k: int, signature: str = RECOMMEND_SIGNATURE
) -> None:
    """Rows of ``signature``'s answer: k distinct movies per user, best first; titles when it declares them."""
    titled = contract.signature(signature).has_output(MOVIE_TITLES)
    if len(rows) != n_users:
        raise CheckFailed(f"expected {n_users} rows of recommendations, got {len(rows)}")
    for row in rows:
        if len(row) != k:
            raise CheckFailed(f"expected k={k} recommendations per user, got {len(row)}")
        scores = [r.score for r in row]
        if not all(math.isfinite(s) for s in scores):
            raise CheckFailed("non-finite score in recommendations")
        if any(a < b for a, b in zip(scores, scores[1:])):
            raise CheckFailed("recommendations not sorted by descending score")
        if len({r.movie_id for r in row}) != len(row):
            raise CheckFailed("duplicate movie ids in one user's recommendations")
        if not all(r.movie_id and (r.title or not titled) for r in row):
            raise CheckFailed("empty movie id or title in recommendations")


def check_excluded(rows: Sequence[Sequence[Recommendation]], given: Sequence[Collection[str]]) -> None:
    """recommend_from_ratings: no row recommends a movie its user just rated."""
    if len(rows) != len(given):
        raise CheckFailed(f"expected {len(given)} rows of recommendations, got {len(rows)}")
    for row, rated in zip(rows, given):
        if any(r.movie_id in rated for r in row):
            raise CheckFailed("a movie the user rated was recommended back")


def check_ratings(ratings: np.ndarray, n_pairs: int) -> None:
    declared = contract.signature(PREDICT_SIGNATURE).output(PREDICTED_RATING)
    if ratings.ndim != declared.rank or ratings.shape[:1] != (n_pairs,):
        raise CheckFailed(f"expected one rating per pair ({n_pairs}), got shape {list(ratings.shape)}")
    if ratings.dtype != np.dtype(declared.numpy_dtype):
        raise CheckFailed(f"expected {PREDICTED_RATING} as {declared.numpy_dtype} ({declared.dtype}), got {ratings.dtype}")
    if not np.isfinite(ratings).all():
        raise CheckFailed("non-finite predicted rating")
