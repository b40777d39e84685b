"""``python -m client``: query the recommender from a shell.

    python -m client [--target HOST:PORT] recommend --user 42 [--user 7 ...] -k 10 [--json]
    python -m client recommend --rated 50=5 --rated 172=4 --rated 181=5 -k 10 [--json]
    python -m client predict --user 42 --movie 50 [--movie 51 ...] [--json]
    python -m client status | metadata | card
    python -m client --target edge:8500 --tls-ca credentials/ca.pem --token-file credentials/tokens/demo.jwt ...

Tables for people, ``--json`` for scripts. Never a traceback; exit codes:
0 done; 1 the call failed (server down, bad input, unknown model), one line on
stderr; 2 bad command line (argparse's usage message); 130 interrupted (Ctrl-C).
TLS and a bearer token (``--tls-ca``, ``--token``/``--token-file``, ``--client-cert``/
``--client-key``, ``--tls-server-name``) fall back to MOVIELENS_TLS_CA, MOVIELENS_TOKEN,
MOVIELENS_TOKEN_FILE, MOVIELENS_CLIENT_CERT, MOVIELENS_CLIENT_KEY, MOVIELENS_TLS_SERVER_NAME
(client/auth.py).
Output cut short by a closed pipe (``| head``) ends quietly with 1, as Python's
documentation recommends. Several users (``--user 1 2`` or ``--user 1 --user 2``)
are one ``recommend`` call, as in the API: a table per user, or with ``--json`` a
list of ``{"user_id", "recommendations"}`` (one user alone keeps the plain list).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Sequence

from . import auth, help_text
from .base import DEFAULT_TARGET, DEFAULT_TIMEOUT_S
from .client import RecommenderClient
from .contract import MAX_RATED_MOVIES, MAX_RECOMMEND_USERS, MODEL_NAME, RATING_MAX, RATING_MIN
from .errors import (
    DeadlineExceeded,
    PermissionDenied,
    RecommenderError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .protocol import Recommendation
from .table import format_table

# The project's exit codes (common/cli.py), spelled here because the thin client ships without common/.
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
# gRPC's words when the TLS handshake fails (wrong CA, wrong name, or a plain-text server).
_TLS_FAILURE = re.compile(r"ssl|tls|handshake|certificate", re.IGNORECASE)
VERBOSE_ENV = "MOVIELENS_VERBOSE"
VERBOSE_HELP = f"also print gRPC's own log lines (same as {VERBOSE_ENV}=1)"
PROG = "python -m client" if __package__ == "client" else "movielens-client"


def plain(docstring: str | None) -> str:
    """``help_text.plain``, with ``python -m client`` named as this package is run (``PROG``)."""
    return help_text.plain(docstring).replace("python -m client", PROG)


def recommendations_table(recs: Sequence[Recommendation]) -> str:
    rows = [(i, r.movie_id, f"{r.score:.4f}", r.title) for i, r in enumerate(recs, start=1)]
    return format_table(("rank", "movie_id", "score", "title"), rows, (True, True, True, False))


def recommendations_json(recs: Sequence[Recommendation]) -> str:
    return json.dumps([{"movie_id": r.movie_id, "title": r.title, "score": r.score} for r in recs], indent=2)


def rated_movie(text: str) -> tuple[str, float]:
    """``--rated MOVIE=RATING`` -> (movie id, rating); anything else is a usage error (exit 2)."""
    movie, sep, value = text.partition("=")
    movie = movie.strip()
    if not sep or not movie or not value.strip():
        raise argparse.ArgumentTypeError(f"expected MOVIE=RATING, e.g. 50=4.5, got {text!r}")
    try:
        rating = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the rating must be a number, e.g. 50=4.5, got {text!r}") from None
    if not (math.isfinite(rating) and RATING_MIN <= rating <= RATING_MAX):
        raise argparse.ArgumentTypeError(f"the rating must be within {RATING_MIN:g}-{RATING_MAX:g}, got {text!r}")
    return movie, rating


class _UsersAction(argparse.Action):
    """``--user 1 2`` and ``--user 1 --user 2`` add up; more than the API's per-call limit is a usage error."""

    def __call__(self, parser, namespace, values, option_string=None):
        users = list(getattr(namespace, self.dest) or []) + list(values)
        if len(users) > MAX_RECOMMEND_USERS:
            parser.error(f"argument --user: at most {MAX_RECOMMEND_USERS} users per call")
        setattr(namespace, self.dest, users)


class _RatedAction(argparse.Action):
    """Collects repeated ``--rated`` into one {movie: rating}; a movie twice or too many is a usage error."""

    def __call__(self, parser, namespace, value, option_string=None):
        rated = dict(getattr(namespace, self.dest) or {})
        movie, rating = value
        if movie in rated:
            parser.error(
                f"argument --rated: movie {movie} is given twice ({movie}={rated[movie]:g} and {movie}={rating:g})"
            )
        if len(rated) == MAX_RATED_MOVIES:
            parser.error(f"argument --rated: at most {MAX_RATED_MOVIES} rated movies")
        rated[movie] = rating
        setattr(namespace, self.dest, rated)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=plain(__doc__))
    parser.add_argument("--target", default=DEFAULT_TARGET,
                        help="gRPC HOST:PORT, or several comma-separated to round-robin over them "
                             "(default %(default)s)")
    parser.add_argument("--model", default=MODEL_NAME, help="model name (default %(default)s)")
    pinned = parser.add_mutually_exclusive_group()
    pinned.add_argument("--version", type=int, default=None, help="model version (default: newest loaded)")
    pinned.add_argument("--label", default=None,
                        help="a version label of the server's config instead, e.g. stable or canary (docs/rollouts.md)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="deadline in seconds per call (default %(default)s)")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    auth.add_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    rec = commands.add_parser("recommend", help="top-k unrated movies for a user, or for a new user's ratings")
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", nargs="+", action=_UsersAction, metavar="USER",
                     help="user id, e.g. 42, or several (--user 1 2, or --user repeated; one call, at most "
                          f"{MAX_RECOMMEND_USERS}): excludes and learns from each user's training history")
    who.add_argument("--rated", action=_RatedAction, type=rated_movie, metavar="MOVIE=RATING",
                     help=f"a movie a new user rated, e.g. 50=5 (rating {RATING_MIN:g}-{RATING_MAX:g}; repeat for "
                          "several): recommend from these ratings instead (the recommend_from_ratings signature, "
                          "default-preset models only); unknown movie ids are ignored")
    rec.add_argument("-k", type=int, default=10, help="number of movies (default %(default)s)")
    rec.add_argument("--json", action="store_true",
                     help="JSON list of {movie_id, title, score}; several users: a list of {user_id, recommendations}")

    pred = commands.add_parser("predict", help="predicted ratings for a user and movies")
    pred.add_argument("--user", required=True, help="user id")
    pred.add_argument("--movie", required=True, action="append", help="movie id (repeat for several)")
    pred.add_argument("--json", action="store_true", help="JSON list of {user_id, movie_id, predicted_rating}")

    for name, help_text in (
        ("status", "versions the server knows and their state"),
        ("metadata", "served signatures (GetModelMetadata)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="JSON instead of a table")
    card = commands.add_parser("card", help="the model card (JSON; the vocabulary shown as counts)")
    card.add_argument("--json", action="store_true", help="the whole card, vocabulary lists included")
    for sub in commands.choices.values():  # --verbose after the command works too
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def _run(args: argparse.Namespace, client: RecommenderClient) -> str:
    if args.command == "recommend":
        if args.rated is not None:
            recs = client.recommend_from_ratings(args.rated, k=args.k)
        elif len(args.user) > 1:
            rows = client.recommend(args.user, k=args.k)
            if args.json:
                return json.dumps([
                    {"user_id": user, "recommendations": [
                        {"movie_id": r.movie_id, "title": r.title, "score": r.score} for r in recs
                    ]}
                    for user, recs in zip(args.user, rows)
                ], indent=2)
            return "\n\n".join(f"user {user}\n{recommendations_table(recs)}" for user, recs in zip(args.user, rows))
        else:
            recs = client.recommend(args.user[0], k=args.k)
        return recommendations_json(recs) if args.json else recommendations_table(recs)
    if args.command == "predict":
        ratings = client.predict(args.user, args.movie)
        if args.json:
            return json.dumps(
                [{"user_id": args.user, "movie_id": m, "predicted_rating": float(r)} for m, r in zip(args.movie, ratings)],
                indent=2,
            )
        rows = [(args.user, m, f"{r:.4f}") for m, r in zip(args.movie, ratings)]
        return format_table(("user_id", "movie_id", "predicted_rating"), rows, (True, True, True))
    if args.command == "status":
        versions = client.status()
        if args.json:
            return json.dumps([dataclasses.asdict(v) for v in versions], indent=2)
        rows = [(v.version, v.state, v.error_message) for v in versions]
        return format_table(("version", "state", "error"), rows, (True, False, False))
    if args.command == "metadata":
        meta = client.metadata()
        if args.json:
            return json.dumps(
                {
                    "model": meta.model,
                    "version": meta.version,
                    "signatures": {
                        name: {
                            "method": sig.method,
                            "inputs": {k: {"dtype": t.dtype, "shape": t.shape} for k, t in sig.inputs.items()},
                            "outputs": {k: {"dtype": t.dtype, "shape": t.shape} for k, t in sig.outputs.items()},
                        }
                        for name, sig in meta.signatures.items()
                    },
                },
                indent=2,
            )
        rows = [
            (name, direction, key, t.dtype, "?" if t.shape is None else list(t.shape))
            for name, sig in meta.signatures.items()
            for direction, tensors in (("in", sig.inputs), ("out", sig.outputs))
            for key, t in tensors.items()
        ]
        header = f"{meta.model} version {meta.version}\n"
        return header + format_table(("signature", "", "tensor", "dtype", "shape"), rows, (False,) * 5)
    if args.command == "card":
        card = client.model_card()
        if not args.json and "vocabulary" in card:
            card["vocabulary"] = {name: f"{len(ids)} ids" for name, ids in card["vocabulary"].items()}
        return json.dumps(card, indent=2)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        security = auth.keywords(args)
        with RecommenderClient(
            args.target, model=args.model, version=args.version, timeout_s=args.timeout, label=args.label, **security
        ) as client:
            print(_run(args, client))
            sys.stdout.flush()  # a closed pipe fails here, inside the try, not in Python's flush at exit
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left. Point stdout at /dev/null so the interpreter's final flush
        # cannot fail on the same pipe and print a traceback after all.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Unavailable as error:
        if _TLS_FAILURE.search(error.message):
            print(f"error: no TLS connection to the recommender at {args.target} (wrong --tls-ca or "
                  f"--tls-server-name, or the server speaks plain text? {error.message})", file=sys.stderr)
        else:
            print(f"error: cannot reach the recommender at {args.target} ({error.message})", file=sys.stderr)
        return EXIT_ERROR
    except Unauthenticated as error:
        print(f"error: the server refused the credentials ({error}); give a valid token "
              "(--token-file or MOVIELENS_TOKEN_FILE)", file=sys.stderr)
        return EXIT_ERROR
    except PermissionDenied as error:
        print(f"error: the server does not allow this call ({error})", file=sys.stderr)
        return EXIT_ERROR
    except ResourceExhausted as error:
        print(f"error: the server is rate-limiting this caller or shedding load; retry later ({error})",
              file=sys.stderr)
        return EXIT_ERROR
    except DeadlineExceeded as error:
        print(
            f"error: no answer from the recommender at {args.target} within {args.timeout:g}s "
            f"(server down, starting or overloaded; {error})",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except (RecommenderError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0
