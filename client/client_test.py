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
    Unavailable,
)
from client.fakes import fake_server, free_port
from common.contract import MODEL_CARD_SIGNATURE, MODEL_NAME, MOVIE_TITLES, PREDICT_SIGNATURE, RECOMMEND_SIGNATURE


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
    port = free_port()
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
    with RecommenderClient(f"127.0.0.1:{free_port()}", retry=NO_RETRIES) as client:
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
    with RecommenderClient(f"127.0.0.1:{free_port()}", retry=NO_RETRIES) as client:
        with pytest.raises(DeadlineExceeded, match="not AVAILABLE .* within 0.5s .*UNAVAILABLE"):
            client.wait_until_ready(timeout_s=0.5)


def test_async_wait_until_ready_and_closed_client(fake):
    target, _ = fake

    async def run():
        async with AsyncRecommenderClient(target) as client:
            versions = await client.wait_until_ready(timeout_s=5)
        with pytest.raises(RuntimeError, match="closed"):
            await client.status()
        async with AsyncRecommenderClient(f"127.0.0.1:{free_port()}", retry=NO_RETRIES) as down:
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
    assert ratings.dtype == np.float32 and ratings.shape == (2,)


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


def test_predict_matches_recommend_scores_order(served):
    top = served.recommend(1, k=3)
    ratings = served.predict(1, [r.movie_id for r in top])
    assert ratings.dtype == np.float32 and ratings.shape == (3,)
    np.testing.assert_allclose(ratings, [r.score for r in top], rtol=1e-5, atol=1e-5)
    ratings[0] = 0.0  # the caller owns the array
    pairs = served.predict(["1", "2"], ["50", "50"])
    assert pairs.shape == (2,)


def test_metadata_lists_the_contract_signatures(served):
    meta = served.metadata()
    assert meta.model == MODEL_NAME and meta.version >= 1
    assert {PREDICT_SIGNATURE, RECOMMEND_SIGNATURE} <= set(meta.signatures)
    recommend = meta.signatures[RECOMMEND_SIGNATURE]
    assert recommend.inputs["k"].dtype == "DT_INT32" and recommend.inputs["k"].shape == ()
    assert recommend.outputs["scores"].dtype == "DT_FLOAT"


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
