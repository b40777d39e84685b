"""``python -m loadtest.demo``: the end of ``make demo`` — serve, query, load-test, stop.

Starts the local server on the newest exported version, shows a sample user's
top 10 and a few predicted ratings through the client (as ``python -m client``
would print them), runs a short load test, and says where its HTML report is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from common.quiet import native_stderr_silenced
from common.contract import MODEL_BASE_PATH, REPORTS_DIR

with native_stderr_silenced():
    import tensorflow  # noqa: F401  (via the client's protos; keep its native INFO lines out of the demo)

from client import RecommenderClient
from client.cli import recommendations_table
from client.table import format_table
from loadtest.local import NOT_STARTED_YET, newest_version
from loadtest.runner import EXIT_RUN_FAILED, LoadTest, run_and_report

SAMPLE_USER = "42"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=Path(MODEL_BASE_PATH))
    parser.add_argument("--user", default=SAMPLE_USER, help="sample user id (default %(default)s)")
    parser.add_argument("--users", type=int, default=16, help="load test users (default %(default)s)")
    parser.add_argument("--run-time", default="10s", help="load test duration (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(REPORTS_DIR) / "demo")
    args = parser.parse_args(argv)
    try:
        version = newest_version(args.model_base_path)
        test = LoadTest(host=NOT_STARTED_YET, out=args.out, users=args.users, spawn_rate=args.users, run_time=args.run_time)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_RUN_FAILED
    from serving.testing import start_local_server

    print(f"== starting the local server on {args.model_base_path}/{version}", flush=True)
    with start_local_server(args.model_base_path) as server:
        with RecommenderClient(server.grpc_target) as client:
            card = client.model_card()
            metrics = card.get("metrics", {})
            print(f"   {server.grpc_target}: model {card['model_name']} v{card['version']}, test RMSE {metrics.get('test_rmse', float('nan')):.3f}")
            print(f"\n== top 10 for user {args.user}   (python -m client --target {server.grpc_target} recommend --user {args.user})")
            top = client.recommend(args.user, k=10)
            print(recommendations_table(top))
            movies = [r.movie_id for r in top[:3]] + ["1", "50"]
            ratings = client.predict(args.user, movies)
            print(f"\n== predicted ratings for user {args.user}   (python -m client predict --user {args.user} --movie ...)")
            rows = [(args.user, m, f"{r:.3f}") for m, r in zip(movies, ratings)]
            print(format_table(("user_id", "movie_id", "predicted_rating"), rows, (True, True, True)))
        print(f"\n== load test ({args.run_time}, {args.users} users; takes a few seconds more to start) ...", flush=True)
        # The demo promises a clean run: any failed request, or a problem Locust reported, exits non-zero.
        code = run_and_report(replace(test, host=server.grpc_target), max_p99_ms=None, max_fail_ratio=0)
    print("== server stopped")
    return code

if __name__ == "__main__":
    sys.exit(main())
