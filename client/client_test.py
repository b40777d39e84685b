"""The client against a fake server (errors, retries) and the real local server (round trips)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import grpc
import numpy as np
import pytest
from portpicker import pick_unused_port

import client as client_package
from client import (
    AsyncRecommenderClient,
    DeadlineExceeded,
    InvalidArgument,
    MalformedResponse,
    NO_RETRIES,
    NotFound,
    Recommendation,
    RecommenderClient,
    RecommenderError,
    RetryPolicy,
    SignatureNotFound,
    Unavailable,
)
from client import protocol
from client.errors import FailedPrecondition
from client.tensors import to_numpy
from common import contract
from common.contract import (
    K,
    MAX_RATED_MOVIES,
    MAX_RECOMMEND_USERS,
    MODEL_CARD_SIGNATURE,
    MODEL_NAME,
    MOVIE_TITLES,
    PREDICT_SIGNATURE,
    RATED_MOVIE_IDS,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_ID,
)
from testing.fake_serving import fake_server

# What predict() returns its ratings as: the dtype common/contract.py declares for them.
_RATING_DTYPE = np.dtype(contract.signature(PREDICT_SIGNATURE).output(contract.PREDICTED_RATING).numpy_dtype)


@pytest.fixture
def fake():
    with fake_server() as (target, behaviour):
        yield target, behaviour


# --- errors and retries (fake server) ----------------------------------------


def test_unavailable_is_retried_until_success(fake):
    target, behaviour = fake
    behaviour.fail_with = [grpc.StatusCode.UNAVAILABLE] * 2
    with RecommenderClient(target) as client:
        assert client.predict(1, 1).shape == (1,)
    assert behaviour.calls == 3


@pytest.mark.parametrize(
    "code, error_class",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.INTERNAL, RecommenderError),
    ],
)
def test_other_codes_are_not_retried_and_keep_code_and_message(fake, code, error_class):
    target, behaviour = fake
    behaviour.fail_with = [code, code]
    with RecommenderClient(target) as client, pytest.raises(error_class) as raised:
        client.recommend(1)
    assert behaviour.calls == 1
    assert raised.value.code == code
    assert raised.value.message == f"fake failure {code.name}"


def test_a_malformed_answer_is_a_recommender_error(fake):
    target, behaviour = fake
    behaviour.drop_outputs = {MOVIE_TITLES}
    with RecommenderClient(target) as client, pytest.raises(RecommenderError, match="no output 'movie_titles'") as raised:
        client.recommend(1)
    assert isinstance(raised.value, MalformedResponse) and raised.value.code == grpc.StatusCode.INTERNAL


def test_retries_give_up_after_max_attempts(fake):
    target, behaviour = fake
    behaviour.fail_with = [grpc.StatusCode.UNAVAILABLE] * 10
    quick = RetryPolicy(max_attempts=5, initial_backoff_s=0.01, max_backoff_s=0.05)
    with RecommenderClient(target, retry=quick) as client, pytest.raises(Unavailable, match="fake failure UNAVAILABLE"):
        client.status()
    assert behaviour.calls == 5
    behaviour.fail_with, behaviour.calls = [grpc.StatusCode.UNAVAILABLE] * 2, 0
    with RecommenderClient(target, retry=NO_RETRIES) as client, pytest.raises(Unavailable):
        client.status()
    assert behaviour.calls == 1


def test_retry_rides_out_a_server_that_starts_late():
    port = pick_unused_port()
    stop = threading.Event()

    def serve_a_little_later() -> None:
        time.sleep(0.3)
        with fake_server(port):
            stop.wait()

    # gRPC draws each backoff at random from [0, cap]; caps of 1, 2, 4, 5 s leave the four
    # retries far more time than the 0.3 s start plus a reconnect, whatever the draws.
    patient = RetryPolicy(max_attempts=5, initial_backoff_s=1.0, max_backoff_s=5.0)
    server = threading.Thread(target=serve_a_little_later)
    server.start()
    try:
        with RecommenderClient(f"127.0.0.1:{port}", timeout_s=30, retry=patient) as client:
            assert client.status()[0].state == "AVAILABLE"
    finally:
        stop.set()
        server.join()


def test_server_down_is_unavailable_and_names_the_cause():
    with RecommenderClient(f"127.0.0.1:{pick_unused_port()}", retry=NO_RETRIES) as client:
        with pytest.raises(Unavailable, match="Connection refused|failed to connect"):
            client.recommend(1)


def test_deadline_exceeded_on_a_server_that_never_answers():
    # A listening socket that never speaks HTTP/2: the call can only end by its deadline.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        with RecommenderClient(target, timeout_s=0.5) as client, pytest.raises(DeadlineExceeded):
            client.status()


def test_unknown_model_is_not_found(fake):
    target, _ = fake
    with RecommenderClient(target, model="no-such-model") as client, pytest.raises(NotFound, match="no-such-model"):
        client.status()


def test_bad_input_fails_before_sending(fake):
    target, behaviour = fake
    with RecommenderClient(target) as client:
        with pytest.raises(ValueError, match="k must be a positive"):
            client.recommend(1, k=0)
        with pytest.raises(ValueError, match="at least one id"):
            client.recommend([])
        with pytest.raises(ValueError, match="2 user ids and 1 movie ids"):
            client.predict([1, 2], [3])
    assert behaviour.calls == 0


def test_closed_client_refuses_calls(fake):
    target, _ = fake
    client = RecommenderClient(target)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.status()


@pytest.mark.parametrize("client_class", [RecommenderClient, AsyncRecommenderClient])
@pytest.mark.parametrize(
    "kwargs, message",
    [({"timeout_s": 0}, "timeout_s"), ({"version": -1}, "version"), ({"version": True}, "version"),
     ({"target": ""}, "target"), ({"model": ""}, "model")],
)  # fmt: skip
def test_constructors_validate_alike(client_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        client_class(**kwargs)


def test_retry_policy_durations_stay_decimal():
    config = json.loads(RetryPolicy(initial_backoff_s=0.001, max_backoff_s=1e-02).service_config())
    policy = config["methodConfig"][0]["retryPolicy"]
    assert (policy["initialBackoff"], policy["maxBackoff"]) == ("0.001s", "0.010s")
    with pytest.raises(ValueError, match="0.001 <= initial_backoff_s"):
        RetryPolicy(initial_backoff_s=1e-05)


def test_every_exported_name_resolves():
    assert all(getattr(client_package, name) is not None for name in client_package._EXPORTS)


def test_wait_until_ready_times_out_with_reason():
    with RecommenderClient(f"127.0.0.1:{pick_unused_port()}", retry=NO_RETRIES) as client:
        with pytest.raises(DeadlineExceeded, match="not AVAILABLE .* within 0.5s .*UNAVAILABLE"):
            client.wait_until_ready(timeout_s=0.5)


def test_async_wait_until_ready_and_closed_client(fake):
    target, _ = fake

    async def run():
        async with AsyncRecommenderClient(target) as client:
            versions = await client.wait_until_ready(timeout_s=5)
        with pytest.raises(RuntimeError, match="closed"):
            await client.status()
        async with AsyncRecommenderClient(f"127.0.0.1:{pick_unused_port()}", retry=NO_RETRIES) as down:
            with pytest.raises(DeadlineExceeded, match="not AVAILABLE .* within 0.5s .*UNAVAILABLE"):
                await down.wait_until_ready(timeout_s=0.5)
        return versions

    assert asyncio.run(run())[0].state == "AVAILABLE"


def test_async_client_against_fake(fake):
    target, behaviour = fake

    async def run():
        async with AsyncRecommenderClient(target) as client:
            top = await client.recommend(7, k=3)
            many = await client.recommend([7, 8], k=2)
            ratings = await client.predict(7, [1, 2])
            behaviour.fail_with = [grpc.StatusCode.NOT_FOUND]
            with pytest.raises(NotFound):
                await client.status()
            return top, many, ratings

    top, many, ratings = asyncio.run(run())
    assert [r.movie_id for r in top] == ["1", "2", "3"]
    assert len(many) == 2 and all(len(row) == 2 for row in many)
    assert ratings.dtype == _RATING_DTYPE and ratings.shape == (2,)


# --- recommend_from_ratings (fake server) -------------------------------------


def _ids(row):
    return [r.movie_id for r in row]


def test_from_ratings_one_user_excludes_the_given_movies(fake):
    target, behaviour = fake
    with RecommenderClient(target) as client:
        top = client.recommend_from_ratings({10: 5, "40": 4.5, np.int64(70): np.float32(1)}, k=5)
    assert len(top) == 5 and all(isinstance(r, Recommendation) for r in top)
    assert not {"10", "40", "70"} & set(_ids(top))
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    sent = behaviour.last_request
    assert sent.model_spec.signature_name == RECOMMEND_FROM_RATINGS_SIGNATURE
    assert to_numpy(sent.inputs[USER_ID]).tolist() == [""]  # no profile
    # The leading "" is what TF Serving's batcher would pad this tensor with (its first element).
    assert to_numpy(sent.inputs[RATED_MOVIE_IDS]).tolist() == [["", "10", "40", "70"]]
    assert to_numpy(sent.inputs[RATINGS]).tolist() == [[0.0, 5.0, 4.5, 1.0]]
    assert to_numpy(sent.inputs[K]).tolist() == [5]  # one k per user


def test_from_ratings_batch_pads_short_rows_and_matches_single_calls(fake):
    target, behaviour = fake
    long = {m: 1 + m % 5 for m in range(1, 21)}  # 20 ratings
    short = {50: 4}
    with RecommenderClient(target) as client:
        rows = client.recommend_from_ratings([short, long, short], k=4, user_id=[None, 3, "4"])
        sent = behaviour.last_request
        alone = [
            client.recommend_from_ratings(short, k=4),
            client.recommend_from_ratings(long, k=4, user_id=3),
            client.recommend_from_ratings(short, k=4, user_id="4"),
        ]
    assert rows == alone
    assert rows[0] != rows[2]  # user 4's profile counts
    movies = to_numpy(sent.inputs[RATED_MOVIE_IDS])
    ratings = to_numpy(sent.inputs[RATINGS])
    assert movies.shape == ratings.shape == (3, 20)
    assert movies[0].tolist() == ["", "50"] + [""] * 18 and ratings[0].tolist() == [0.0, 4.0] + [0.0] * 18
    assert to_numpy(sent.inputs[USER_ID]).tolist() == ["", "3", "4"]
    assert not set(map(str, long)) & set(_ids(rows[1]))


def test_from_ratings_unknown_movie_ids_are_sent_and_ignored(fake):
    target, _ = fake
    with RecommenderClient(target) as client:
        assert client.recommend_from_ratings({10: 5, "tt0111161": 4, 99999: 1}, k=5) == client.recommend_from_ratings(
            {10: 5}, k=5
        )
        # Only unknown movies: no ratings the model can use, still k answers.
        assert len(client.recommend_from_ratings({"no-such-movie": 5}, k=5)) == 5


def test_from_ratings_duplicates(fake):
    target, _ = fake
    with RecommenderClient(target) as client:
        # One movie spelled twice in a mapping is ambiguous: refused before sending.
        with pytest.raises(ValueError, match="ratings: movie '42' is given twice"):
            client.recommend_from_ratings({42: 5, "42": 1})
        # On the wire a movie repeated in one row counts once, first occurrence (the signature's rule).
        repeated = protocol.recommend_from_ratings_request(MODEL_NAME, None, [""], [[("10", 5.0), ("10", 1.0)]], 5)
        rows = protocol.parse_recommend(
            client._call(client._predict, repeated, None), 1, RECOMMEND_FROM_RATINGS_SIGNATURE
        )
        assert rows[0] == client.recommend_from_ratings({10: 5}, k=5)
        assert rows[0] != client.recommend_from_ratings({10: 1}, k=5)


def test_from_ratings_bounds_are_inclusive_and_k_is_capped(fake):
    target, _ = fake
    with RecommenderClient(target) as client:
        assert len(client.recommend_from_ratings({1: 0.5, 2: 5.0}, k=3)) == 3
        assert len(client.recommend_from_ratings({1: 3}, k=1000)) == 100  # the fake's max_k


@pytest.mark.parametrize(
    "ratings, kwargs, error, message",
    [
        ({}, {}, ValueError, "ratings: at least one rated movie is required"),
        ([], {}, ValueError, "ratings: at least one user's ratings are required"),
        ([{1: 5}, {}], {}, ValueError, r"ratings\[1\]: at least one rated movie"),
        ({1: 0.4}, {}, ValueError, r"ratings\['1'\]: a rating must be within 0.5-5, got 0.4"),
        ({1: 5.01}, {}, ValueError, "within 0.5-5"),
        ({1: float("nan")}, {}, ValueError, "must be finite"),
        ({1: float("inf")}, {}, ValueError, "must be finite"),
        ({1: "5"}, {}, TypeError, "a rating must be a number, got str"),
        ({1: True}, {}, TypeError, "a rating must be a number, got bool"),
        ({"": 5}, {}, ValueError, "ratings: movie id: ids must be non-empty"),
        ({m: 4 for m in range(MAX_RATED_MOVIES + 1)}, {}, ValueError, f"at most {MAX_RATED_MOVIES} rated movies"),
        ([{1: 5}] * (MAX_RECOMMEND_USERS + 1), {}, ValueError, f"at most {MAX_RECOMMEND_USERS} users"),
        ({1: 5}, {"k": 0}, ValueError, "k must be a positive"),
        ([{1: 5}, {2: 5}], {"user_id": [1]}, ValueError, "user_id: expected one id .* got 1 for 2 users"),
        ([{1: 5}, {2: 5}], {"user_id": 1}, TypeError, "user_id: a sequence of ratings takes a sequence"),
        ({1: 5}, {"user_id": [1]}, TypeError, "user_id: one id"),
        ([(1, 5)], {}, TypeError, r"ratings\[0\]: expected a mapping"),
        ("1=5", {}, TypeError, "ratings: expected a mapping"),
    ],
)
def test_from_ratings_bad_input_fails_before_sending(fake, ratings, kwargs, error, message):
    target, behaviour = fake
    with RecommenderClient(target) as client, pytest.raises(error, match=message):
        client.recommend_from_ratings(ratings, **kwargs)
    assert behaviour.calls == 0


def test_from_ratings_limits_are_inclusive(fake):
    target, behaviour = fake
    with RecommenderClient(target) as client:
        rows = client.recommend_from_ratings([{1: 5}] * MAX_RECOMMEND_USERS, k=2)
        assert len(rows) == MAX_RECOMMEND_USERS
        client.recommend_from_ratings({m: 3 for m in range(1, MAX_RATED_MOVIES + 1)}, k=2)
    assert to_numpy(behaviour.last_request.inputs[RATINGS]).shape == (1, MAX_RATED_MOVIES + 1)  # and the leading ""


def test_from_ratings_on_a_model_without_the_signature_says_so(fake):
    target, behaviour = fake
    behaviour.missing_signatures = {RECOMMEND_FROM_RATINGS_SIGNATURE}
    with RecommenderClient(target) as client, pytest.raises(SignatureNotFound) as raised:
        client.recommend_from_ratings({50: 5})
    error = raised.value
    assert isinstance(error, FailedPrecondition) and error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.signature == RECOMMEND_FROM_RATINGS_SIGNATURE
    assert "has no 'recommend_from_ratings' signature: only models of the default (two-stage) preset" in str(error)
    assert 'Serving signature key "recommend_from_ratings" not found.' in error.message
    assert behaviour.calls == 1  # FAILED_PRECONDITION is not retried


def test_async_recommend_from_ratings(fake):
    target, behaviour = fake

    async def run():
        async with AsyncRecommenderClient(target) as client:
            one = await client.recommend_from_ratings({10: 5, 11: 4}, k=3)
            many = await client.recommend_from_ratings([{10: 5, 11: 4}, {60: 2}], k=3, user_id=[None, 5])
            with pytest.raises(ValueError, match="at least one rated movie"):
                await client.recommend_from_ratings({})
            behaviour.missing_signatures = {RECOMMEND_FROM_RATINGS_SIGNATURE}
            with pytest.raises(SignatureNotFound, match="default \\(two-stage\\) preset"):
                await client.recommend_from_ratings({10: 5})
            return one, many

    one, many = asyncio.run(run())
    with RecommenderClient(target) as client:
        behaviour.missing_signatures = set()
        assert one == client.recommend_from_ratings({10: 5, 11: 4}, k=3)
        assert many == client.recommend_from_ratings([{10: 5, 11: 4}, {60: 2}], k=3, user_id=[None, 5])


def test_a_missing_signature_is_recognised_for_any_call(fake):
    target, behaviour = fake
    behaviour.missing_signatures = {RECOMMEND_SIGNATURE}
    with RecommenderClient(target) as client, pytest.raises(SignatureNotFound) as raised:
        client.recommend(1)
    assert raised.value.signature == RECOMMEND_SIGNATURE
    assert str(raised.value) == 'FAILED_PRECONDITION: Serving signature key "recommend" not found.'


# --- round trips (real local server on the exported model) --------------------


@pytest.fixture(scope="module")
def served(local_server):
    with RecommenderClient(local_server.grpc_target, timeout_s=30) as client:
        client.wait_until_ready(timeout_s=60)
        yield client


def test_recommend_single_and_batch(served):
    top = served.recommend(42, k=10)
    assert len(top) == 10 and all(isinstance(r, Recommendation) for r in top)
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    assert all(math.isfinite(r.score) and r.title for r in top)
    assert len({r.movie_id for r in top}) == 10
    rows = served.recommend(["42", 1], k=5)
    assert len(rows) == 2 and [r.movie_id for r in rows[0]] == [r.movie_id for r in top[:5]]


def test_predict_rates_the_recommended_movies(served):
    top = served.recommend(1, k=3)
    ratings = served.predict(1, [r.movie_id for r in top])
    assert ratings.dtype == _RATING_DTYPE and ratings.shape == (3,) and np.isfinite(ratings).all()
    if served.model_card()["config"].get("model") == "reference":
        # The reference model ranks by predicted rating; the two-stage default blends in retrieval scores.
        np.testing.assert_allclose(ratings, [r.score for r in top], rtol=1e-5, atol=1e-5)
    ratings[0] = 0.0  # the caller owns the array
    pairs = served.predict(["1", "2"], ["50", "50"])
    assert pairs.shape == (2,)


def test_metadata_lists_the_contract_signatures(served):
    meta = served.metadata()
    assert meta.model == MODEL_NAME and meta.version >= 1
    assert {PREDICT_SIGNATURE, RECOMMEND_SIGNATURE} <= set(meta.signatures)
    recommend = meta.signatures[RECOMMEND_SIGNATURE]
    declared = contract.signature(RECOMMEND_SIGNATURE)
    assert recommend.inputs[K].dtype == declared.input(K).dtype and recommend.inputs[K].shape == declared.input(K).shape
    assert recommend.outputs[SCORES].dtype == declared.output(SCORES).dtype


def test_model_card_and_status(served):
    meta = served.metadata()
    assert MODEL_CARD_SIGNATURE in meta.signatures
    card = served.model_card()
    assert card["model_name"] == MODEL_NAME and card["version"] == meta.version and card["max_k"] > 0
    versions = served.status()
    assert any(v.state == "AVAILABLE" and v.version == meta.version for v in versions)


def test_server_errors_surface_with_code(local_server):
    with RecommenderClient(local_server.grpc_target, model="no-such-model") as client:
        with pytest.raises(NotFound):
            client.recommend(1)
    with RecommenderClient(local_server.grpc_target, version=999) as client:
        with pytest.raises(NotFound):
            client.predict(1, 1)
