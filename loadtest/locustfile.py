"""Locust users for the recommender's gRPC API (``locust -f loadtest/locustfile.py --host HOST:PORT``).

Each task is one line of business logic; timing, response checks and Locust's
``request`` event live once in ``GrpcUser.call``. Requests are named after the
signature they hit (``recommend``, ``recommend_from_ratings``, ``serving_default``),
so Locust's table reads as the API's. Ids are sampled from the served model's
vocabulary, read once from its ``model_card`` signature, so a Locust container needs
no access to the model files.

Users:
- ``RecommenderUser`` (the default mix): recommend : recommend_from_ratings : predict
  = 3 : 1 : 1. Known users asking for their list are the bulk of a recommender's
  traffic; people who signed up since the model was trained get theirs from the 3-20
  movies they have rated so far (whole stars): a steady minority. One from-ratings call
  per predict call keeps recommend : predict at the 3 : 1 of earlier runs, so those
  figures stay comparable. A model without the ``recommend_from_ratings`` signature (the
  reference presets: its model card's ``signatures`` lacks it) skips that task without
  a request, leaving recommend : predict = 3 : 1.
- ``PredictUser``: predict only (many small requests: what server-side batching is for;
  docs/serving.md, "Server-side batching").
Knobs: Locust options added by this file (also in the web UI's custom parameters; ``python -m
loadtest`` passes them from its ``-k`` and ``--predict-batch``), each also read from
its environment variable as Locust reads its own: ``--recommend-k`` (LOADTEST_K, default 10,
capped at the model's max_k), ``--predict-batch`` (LOADTEST_PREDICT_BATCH, "1-50" or "1"),
``--samples-dir`` (LOADTEST_SAMPLES_DIR: write raw per-request timings there for exact
percentiles; unset, none are kept) and ``--default-user-class`` (LOADTEST_USER_CLASS, default
RecommenderUser: the one class run when the command line names none, so a plain ``locust -f``
runs the intended mix instead of splitting users between both classes).
TLS and a bearer token (client/auth.py): LOADTEST_TLS_CA, LOADTEST_TOKEN,
LOADTEST_TOKEN_FILE, LOADTEST_CLIENT_CERT, LOADTEST_CLIENT_KEY, LOADTEST_TLS_SERVER_NAME
(``python -m loadtest``'s ``--tls-ca`` … flags set them), each falling back to the
client's MOVIELENS_* name (MOVIELENS_TLS_CA, MOVIELENS_TOKEN, …), so a plain
``locust -f loadtest/locustfile.py`` (compose) takes them from its environment.
"""

from __future__ import annotations

# gRPC's blocking calls must yield to gevent, or one Locust user blocks all others.
# This must run before any channel exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TypeVar  # noqa: E402

import gevent.lock  # noqa: E402
from locust import User, constant, events, task  # noqa: E402
from locust.exception import StopUser  # noqa: E402

# `locust -f loadtest/locustfile.py` runs this file as a top-level module; make the repo importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import NO_RETRIES, RecommenderClient, RecommenderError  # noqa: E402
from client import auth  # noqa: E402
from common.contract import (  # noqa: E402
    PREDICT_SIGNATURE,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
)
from loadtest.checks import check_excluded, check_ratings, check_recommendations  # noqa: E402
from loadtest.traffic import (  # noqa: E402
    DEFAULT_K, DEFAULT_PREDICT_BATCH, USER_CLASSES, ServedModel, fallback, predict_batch_range, sample_ratings,
    served_from_card,
)

CALL_TIMEOUT_S = 10.0
# LOADTEST_TLS_CA etc., else MOVIELENS_TLS_CA etc.: the keywords every user's client gets.
CREDENTIAL_ENV = {
    key: (f"LOADTEST_{names[0].removeprefix('MOVIELENS_')}", *names) for key, names in auth.ENV_NAMES.items()
}
SECURITY = auth.keywords(names=CREDENTIAL_ENV)
auth.security(**SECURITY)  # an unreadable file stops Locust at start, not in every user

_T = TypeVar("_T")


@dataclass
class Settings:
    """This file's Locust options, as parsed (``_configure``); the defaults until then."""

    k: int = DEFAULT_K
    predict_batch: tuple[int, int] = predict_batch_range(DEFAULT_PREDICT_BATCH)
    samples_dir: str = ""


settings = Settings()


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    group = parser.add_argument_group("MovieLens recommender (loadtest/locustfile.py)")
    group.add_argument("--recommend-k", type=int, default=DEFAULT_K, env_var="LOADTEST_K",
                       help="movies per recommend call, capped at the model's max_k (default %(default)s)")
    group.add_argument("--predict-batch", default=DEFAULT_PREDICT_BATCH, env_var="LOADTEST_PREDICT_BATCH",
                       metavar="N[-M]", help="pairs per predict call, uniform in N-M (default %(default)s)")
    group.add_argument("--samples-dir", default="", env_var="LOADTEST_SAMPLES_DIR",
                       help="write raw per-request timings and Locust's final counts there (default: none kept)")
    group.add_argument("--default-user-class", choices=USER_CLASSES, default=USER_CLASSES[0],
                       env_var="LOADTEST_USER_CLASS",
                       help="the user class run when none is named on the command line (default %(default)s)")

# Raw timings of this process: (name, start unix s, response ms, ok). Locust's own
# percentiles bucket response times to whole milliseconds, too coarse for ~2 ms calls.
_samples: list[tuple[str, float, float, bool]] = []


def _record(request_type, name, response_time, response_length, exception=None, context=None, **_):
    if context and "start" in context:
        _samples.append((name, context["start"], response_time, exception is None))


def _write_samples(environment, **_):
    if _samples:
        Path(settings.samples_dir).mkdir(parents=True, exist_ok=True)
        (Path(settings.samples_dir) / f"samples-{os.getpid()}.json").write_text(json.dumps(_samples))


_environment = None


def _keep_environment(environment, **_):
    global _environment
    _environment = environment


def _write_final_counts(**_):
    """Locust's own final counts, failures and exceptions, as Locust shuts down (``quit``).

    Its ``*_stats.csv``, ``*_failures.csv`` and ``*_exceptions.csv`` are snapshots it rewrites
    once a second and does not write again at the end, so they can miss the last second of a
    run; loadtest/summary.py reads this file instead when it is there.
    """
    from locust.runners import WorkerRunner

    runner = getattr(_environment, "runner", None)
    if runner is None or isinstance(runner, WorkerRunner):  # the master's stats hold the workers'
        return
    stats = runner.stats
    counts = {e.name: {"requests": e.num_requests, "failures": e.num_failures} for e in stats.entries.values()}
    counts["Aggregated"] = {"requests": stats.total.num_requests, "failures": stats.total.num_failures}
    final = {
        "counts": counts,
        "failures": [{"name": e.name, "error": str(e.error), "occurrences": e.occurrences} for e in stats.errors.values()],
        "exceptions": sum(int(e.get("count", 0)) for e in runner.exceptions.values()),
    }
    Path(settings.samples_dir).mkdir(parents=True, exist_ok=True)
    (Path(settings.samples_dir) / "locust-final.json").write_text(json.dumps(final))


@events.init.add_listener
def _configure(environment, **_) -> None:
    """This file's options into ``settings``, the default user class, and the samples' listeners."""
    options = environment.parsed_options
    if options is None:  # an Environment made in code, without Locust's command line
        return
    if options.recommend_k < 1:
        raise SystemExit(f"--recommend-k (LOADTEST_K) must be >= 1, got {options.recommend_k}")
    try:
        settings.predict_batch = predict_batch_range(options.predict_batch)
    except ValueError as error:
        raise SystemExit(f"--predict-batch (LOADTEST_PREDICT_BATCH): {error}") from None
    settings.k, settings.samples_dir = options.recommend_k, options.samples_dir
    # Exactly one user class is active unless the command line names classes.
    default = [c for c in environment.user_classes if c.__name__ == options.default_user_class]
    if not options.user_classes and default:
        environment.user_classes[:] = default
    # Only a run that asked for raw timings keeps them: compose's Locust runs for as long as
    # its web UI says, and a list of every request would grow without bound.
    if settings.samples_dir:
        _keep_environment(environment)
        environment.events.request.add_listener(_record)
        environment.events.test_stop.add_listener(_write_samples)
        environment.events.quit.add_listener(_write_final_counts)


_served: ServedModel | None = None
_served_lock = gevent.lock.Semaphore()


def served_model(client: RecommenderClient, host: str) -> ServedModel:
    """Read once per process: the first user asks the model card, the users spawned meanwhile wait for it."""
    global _served
    with _served_lock:
        if _served is None:
            _served = _read_model_card(client, host)
        return _served


def _read_model_card(client: RecommenderClient, host: str) -> ServedModel:
    try:
        card = client.model_card()  # not timed: discovering the served model is set-up, not load
    except RecommenderError:
        # Server down or odd: fall back to MovieLens 100K's ids and let the timed requests
        # report the problem as failures.
        return fallback(settings.k)
    return served_from_card(card, settings.k, host)


class GrpcUser(User):
    """A Locust user holding one RecommenderClient (one channel) to ``--host``."""

    abstract = True
    wait_time = constant(0)  # closed loop: each user sends its next request as soon as one returns
    client: RecommenderClient | None = None  # set in on_start, once --host is known
    served: ServedModel

    def on_start(self) -> None:
        if not self.host:
            raise StopUser("no --host given (expected HOST:PORT of the gRPC API)")
        # No retries: a load test must see every UNAVAILABLE, not hide it in latency.
        self.client = RecommenderClient(self.host, timeout_s=CALL_TIMEOUT_S, retry=NO_RETRIES, **SECURITY)
        self.served = served_model(self.client, self.host)

    def on_stop(self) -> None:
        # Locust calls on_stop after a StopUser from on_start too, before any client exists.
        if self.client is not None:
            self.client.close()

    def call(self, name: str, request: Callable[[], _T], check: Callable[[_T], None]) -> None:
        """Time ``request``, run ``check`` on its result, and report one Locust request named ``name``."""
        context = {"start": time.time()}
        start = time.perf_counter()
        exception: Exception | None = None
        # Anything that stops a good answer, an unparsable response included, is a failed
        # request: left to Locust, it would be an uncounted task exception instead.
        try:
            result = request()
        except Exception as error:
            exception = error
        response_ms = (time.perf_counter() - start) * 1000
        if exception is None:
            try:
                check(result)
            except Exception as error:
                exception = error
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=response_ms,
            response_length=0,
            exception=exception,
            context=context,
        )

    def recommend(self) -> None:
        user = random.choice(self.served.user_ids)
        k = self.served.k
        self.call(
            RECOMMEND_SIGNATURE,
            lambda: [self.client.recommend(user, k=settings.k)],
            lambda rows: check_recommendations(rows, 1, k, RECOMMEND_SIGNATURE),
        )

    def recommend_from_ratings(self) -> None:
        if not self.served.from_ratings:
            return  # no request: Locust picks the next task at once
        ratings = sample_ratings(self.served.movie_ids)
        k = self.served.k

        def check(rows) -> None:
            check_recommendations(rows, 1, k, RECOMMEND_FROM_RATINGS_SIGNATURE)
            check_excluded(rows, [ratings])

        self.call(
            RECOMMEND_FROM_RATINGS_SIGNATURE, lambda: [self.client.recommend_from_ratings(ratings, k=settings.k)], check
        )

    def predict(self) -> None:
        n = random.randint(*settings.predict_batch)
        users = random.choices(self.served.user_ids, k=n)
        movies = random.choices(self.served.movie_ids, k=n)
        self.call(PREDICT_SIGNATURE, lambda: self.client.predict(users, movies), lambda ratings: check_ratings(ratings, n))


class RecommenderUser(GrpcUser):
    """The default mix: recommend : recommend_from_ratings : predict = 3 : 1 : 1 (why: module docstring)."""

    @task(3)
    def recommend_task(self) -> None:
        self.recommend()

    @task(1)
    def recommend_from_ratings_task(self) -> None:
        self.recommend_from_ratings()

    @task(1)
    def predict_task(self) -> None:
        self.predict()


class PredictUser(GrpcUser):
    """Predict only (batchable by TF Serving), for batching on/off comparisons."""

    @task
    def predict_task(self) -> None:
        self.predict()
