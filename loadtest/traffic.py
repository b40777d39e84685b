"""What the simulated users send, derived from the served model's card.

Kept out of ``locustfile.py`` so it can be unit-tested: importing the locustfile
patches the process for gevent (Locust's import and ``grpc_gevent.init_gevent``),
which a test process must not do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from common.contract import RECOMMEND_FROM_RATINGS_SIGNATURE

USER_CLASSES = ("RecommenderUser", "PredictUser")  # the locustfile's user classes, the default mix first
DEFAULT_K = 10  # recommendations per recommend call (the server caps it at max_k)
DEFAULT_PREDICT_BATCH = "1-50"  # pairs per predict call: "N" or "N-M" (uniform)

RATED_MOVIES = (3, 20)  # how many movies a new user rated, per recommend_from_ratings call
RATING_VALUES = (1.0, 2.0, 3.0, 4.0, 5.0)  # whole stars, as most people rate

# MovieLens 100K's ids: what the load falls back to when the model card cannot be read.
MOVIELENS_USERS = [str(u) for u in range(1, 944)]
MOVIELENS_MOVIES = [str(m) for m in range(1, 1683)]


def predict_batch_range(text: str) -> tuple[int, int]:
    """``"1-50"`` -> (1, 50), ``"1"`` -> (1, 1); ValueError otherwise."""
    parts = text.strip().split("-")
    try:
        low, high = int(parts[0]), int(parts[-1])
    except ValueError:
        low = high = 0
    if len(parts) > 2 or not 1 <= low <= high:
        raise ValueError(f"predict_batch must be N or N-M with 1 <= N <= M, got {text!r}")
    return low, high


@dataclass(frozen=True)
class ServedModel:
    """What the load needs to know about the served model, from its model card."""

    user_ids: list[str]
    movie_ids: list[str]
    k: int  # recommendations per user to expect: --recommend-k, capped by the server at max_k
    from_ratings: bool = True  # the model serves recommend_from_ratings


def fallback(k: int) -> ServedModel:
    """No model card (server down or odd): MovieLens' ids and every task on, so the timed
    requests report the problem as failures."""
    return ServedModel(MOVIELENS_USERS, MOVIELENS_MOVIES, k)


def served_from_card(card: dict[str, Any], k: int, host: str) -> ServedModel:
    missing = sorted({"vocabulary", "max_k"} - set(card))
    if missing:
        raise RuntimeError(f"the model served at {host} has no {', '.join(missing)} in its model card: re-export it")
    vocabulary = card["vocabulary"]
    # A card without a signature list predates recommend_from_ratings, so that model has none.
    from_ratings = RECOMMEND_FROM_RATINGS_SIGNATURE in card.get("signatures", [])
    return ServedModel(vocabulary["user_ids"], vocabulary["movie_ids"], min(k, card["max_k"]), from_ratings)


def sample_ratings(movie_ids: list[str], rng: random.Random | None = None) -> dict[str, float]:
    """A new user's ratings: 3-20 distinct movies of the served catalogue, each rated 1-5 stars."""
    rng = rng or _rng
    n = min(rng.randint(*RATED_MOVIES), len(movie_ids))
    return {movie: rng.choice(RATING_VALUES) for movie in rng.sample(movie_ids, n)}


_rng = random.Random()
