"""``python -m client.bench``: the client's own cost per call, in microseconds.

Times what the client adds on top of the network and the model: validating
inputs, building the PredictRequest, serializing it, parsing the response bytes
and decoding the tensors into Python results. Responses are canned (shaped like
the server's), so the numbers do not depend on a running server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import grpc

from client import protocol
from client.contract import MODEL_NAME, RECOMMEND_FROM_RATINGS_SIGNATURE
from client.fakes import FakeBehaviour, FakeServing
from client.messages import PredictRequest, PredictResponse
from client.cli import plain


class _Context:
    """Enough of grpc.ServicerContext for the fake to answer a valid request."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


def _canned(request: PredictRequest) -> bytes:
    return FakeServing(FakeBehaviour()).Predict(request, _Context()).SerializeToString()


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
        payload = _canned(protocol.recommend_request(MODEL_NAME, None, users, k))

        def call() -> object:
            ids = protocol.normalize_ids(users if n_users > 1 else users[0], "user_ids")
            protocol.recommend_request(MODEL_NAME, None, ids, protocol.validate_k(k)).SerializeToString()
            return protocol.parse_recommend(PredictResponse.FromString(payload), len(ids))

        return call

    def predict_case(n: int) -> Callable[[], object]:
        users = [str(u % 943 + 1) for u in range(n)]
        movies = [str(m % 1682 + 1) for m in range(n)]
        payload = _canned(protocol.predict_request(MODEL_NAME, None, users, movies))

        def call() -> object:
            u, m = protocol.pair_ids(users, movies)
            protocol.predict_request(MODEL_NAME, None, u, m).SerializeToString()
            return protocol.parse_predict(PredictResponse.FromString(payload), len(u))

        return call

    def from_ratings_case(n_ratings: int, k: int) -> Callable[[], object]:
        ratings = {str(m): float(m % 5 + 1) for m in range(1, n_ratings + 1)}
        users, rows = protocol.ratings_batch(ratings, None)
        payload = _canned(protocol.recommend_from_ratings_request(MODEL_NAME, None, users, rows, k))

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
    parser = argparse.ArgumentParser(prog="python -m client.bench", description=plain(__doc__))
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat (default %(default)s)")
    args = parser.parse_args()
    results = measure(args.calls)
    width = max(map(len, results))
    print("client overhead per call (build + serialize request, parse + decode response), 1 core:")
    for name, us in results.items():
        print(f"  {name:<{width}}  {us:8.1f} µs")


if __name__ == "__main__":
    main()
