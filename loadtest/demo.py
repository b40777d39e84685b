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

from common import cli
from common.contract import MODEL_BASE_PATH, REPORTS_DIR

from client import RecommenderClient, RecommenderError
from client.cli import recommendations_table
from client.table import format_table
from loadtest.local import NOT_STARTED_YET, NotServed, serve_newest
from loadtest.runner import LoadTest, run_and_report

SAMPLE_USER = "42"


@cli.interruptible
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.demo", description=cli.plain(__doc__))
    parser.add_argument("--model-base-path", type=Path, default=Path(MODEL_BASE_PATH),
                        help="integer version folders; the newest is served (default %(default)s)")
    parser.add_argument("--sample-user", default=SAMPLE_USER,
                        help="the user whose top 10 and ratings are shown (default %(default)s)")
    parser.add_argument("--users", type=int, default=16, help="concurrent Locust users of the load test (default %(default)s)")
    parser.add_argument("--run-time", default="10s", help="load test duration (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(REPORTS_DIR) / "demo", help="load test report folder (default %(default)s)")
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    cli.apply_verbose(args)
    user = args.sample_user
    try:
        test = LoadTest(target=NOT_STARTED_YET, out=args.out, users=args.users, spawn_rate=args.users, run_time=args.run_time)
    except ValueError as error:
        return cli.fail(str(error), cli.EXIT_USAGE)
    try:
        with serve_newest(args.model_base_path, "== starting the local server on {served}") as server:
            try:
                show_sample(server.grpc_target, user)
            except RecommenderError as error:
                return cli.fail(f"the sample queries failed: {error}")
            print(f"\n== load test ({args.run_time}, {args.users} users; takes a few seconds more to start) ...", flush=True)
            # The demo promises a clean run: any failed request, or a problem Locust reported, exits non-zero.
            code = run_and_report(replace(test, target=server.grpc_target), max_p99_ms=None, max_fail_ratio=0)
    except NotServed as error:
        return cli.fail(str(error))
    print("== server stopped")
    return code


def show_sample(grpc_target: str, user: str) -> None:
    """The model card's headline, the user's top 10 and a few predicted ratings, as the client CLI prints them."""
    target = f"--target {grpc_target}"
    with RecommenderClient(grpc_target) as client:
        card = client.model_card()
        metrics = card.get("metrics", {})
        print(f"   {grpc_target}: model {card['model_name']} v{card['version']}, test RMSE {metrics.get('test_rmse', float('nan')):.3f}")
        print(f"\n== top 10 for user {user}   (python -m client {target} recommend --user {user})")
        top = client.recommend(user, k=10)
        print(recommendations_table(top))
        movies = [r.movie_id for r in top[:3]] + ["1", "50"]
        ratings = client.predict(user, movies)
        print(f"\n== predicted ratings for user {user}   (python -m client {target} predict --user {user} --movie ...)")
        rows = [(user, m, f"{r:.3f}") for m, r in zip(movies, ratings)]
        print(format_table(("user_id", "movie_id", "predicted_rating"), rows, (True, True, True)))


if __name__ == "__main__":
    sys.exit(main())
