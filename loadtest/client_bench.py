"""``python -m loadtest.client_bench``: the client's own cost per call, in microseconds.

Times what the client adds on top of the network and the model: validating
inputs, building the PredictRequest, serializing it, parsing the response bytes
and decoding the tensors into Python results. Responses are canned (shaped like
the server's), so the numbers do not depend on a running server. ``make bench``
reports these figures as its section (e).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from client import protocol
from client.cli import plain
from client.contract import MODEL_NAME, MOVIE_IDS, MOVIE_TITLES, PREDICTED_RATING, RECOMMEND_FROM_RATINGS_SIGNATURE, SCORES
from client.messages import PredictRequest, PredictResponse

CANNED_VERSION = 1


def _canned(request: PredictRequest, values: dict[str, object]) -> bytes:
    """The serialized answer to ``request`` (``protocol.response_for``, as the test fake answers): as
    long on the wire as the fake's answer to the same request (loadtest/client_bench_test.py checks it)."""
    return protocol.response_for(request, values, CANNED_VERSION).SerializeToString()


def _recommendations(rows: int, k: int, first_movie: int = 1) -> dict[str, object]:
    """k movies per row from ``first_movie`` on, with titles and descending scores."""
    ids = [[str(m) for m in range(first_movie, first_movie + k)] for _ in range(rows)]
    scores = np.tile(np.linspace(5.0, 1.0, k, dtype=np.float32), (rows, 1))
    return {MOVIE_IDS: ids, MOVIE_TITLES: [[f"Movie {m}" for m in row] for row in ids], SCORES: scores}


def _time_us(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean µs per call (median rejects a noisy repeat)."""
    fn()  # warm caches and lazy imports
    means = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(means)


def measure(calls: int = 2000) -> dict[str, float]:
    """µs per call for each case: request build + serialize + response parse + decode."""
    results: dict[str, float] = {}

    def recommend_case(n_users: int, k: int) -> Callable[[], object]:
        users = [str(u) for u in range(1, n_users + 1)]
        payload = _canned(protocol.recommend_request(MODEL_NAME, None, users, k), _recommendations(n_users, k))

        def call() -> object:
            ids = protocol.normalize_ids(users if n_users > 1 else users[0], "user_ids")
            protocol.recommend_request(MODEL_NAME, None, ids, protocol.validate_k(k)).SerializeToString()
            return protocol.parse_recommend(PredictResponse.FromString(payload), len(ids))

        return call

    def predict_case(n: int) -> Callable[[], object]:
        users = [str(u % 943 + 1) for u in range(n)]
        movies = [str(m % 1682 + 1) for m in range(n)]
        ratings = np.full(n, 3.5, np.float32)
        payload = _canned(protocol.predict_request(MODEL_NAME, None, users, movies), {PREDICTED_RATING: ratings})

        def call() -> object:
            u, m = protocol.pair_ids(users, movies)
            protocol.predict_request(MODEL_NAME, None, u, m).SerializeToString()
            return protocol.parse_predict(PredictResponse.FromString(payload), len(u))

        return call

    def from_ratings_case(n_ratings: int, k: int) -> Callable[[], object]:
        ratings = {str(m): float(m % 5 + 1) for m in range(1, n_ratings + 1)}
        users, rows = protocol.ratings_batch(ratings, None)
        request = protocol.recommend_from_ratings_request(MODEL_NAME, None, users, rows, k)
        # Three-digit ids, none of them rated: the catalogue's tail, which the fake's toy scoring returns.
        payload = _canned(request, _recommendations(len(users), k, first_movie=111))

        def call() -> object:
            users, rows = protocol.ratings_batch(ratings, None)
            request = protocol.recommend_from_ratings_request(MODEL_NAME, None, users, rows, protocol.validate_k(k))
            request.SerializeToString()
            return protocol.parse_recommend(
                PredictResponse.FromString(payload), len(users), RECOMMEND_FROM_RATINGS_SIGNATURE
            )

        return call

    results["recommend 1 user, k=10"] = _time_us(recommend_case(1, 10), calls)
    results["recommend 8 users, k=10"] = _time_us(recommend_case(8, 10), calls // 4)
    results["recommend_from_ratings 1 user, 20 ratings, k=10"] = _time_us(from_ratings_case(20, 10), calls)
    results["predict batch 1"] = _time_us(predict_case(1), calls)
    results["predict batch 50"] = _time_us(predict_case(50), calls // 4)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.client_bench", description=plain(__doc__))
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat (default %(default)s)")
    args = parser.parse_args()
    results = measure(args.calls)
    width = max(map(len, results))
    print("client overhead per call (build + serialize request, parse + decode response), 1 core:")
    for name, us in results.items():
        print(f"  {name:<{width}}  {us:8.1f} µs")


if __name__ == "__main__":
    main()
