"""No batch poisoning: one caller's invalid values never fail another caller's request
merged into the same batch, and the offender still gets INVALID_ARGUMENT with the graph's message.

Unit tests on the scheduler with a stand-in model, then the acceptance over real gRPC:
the local server with ``--enable_batching --batching_parameters_file serving/batching.config``,
32 concurrent good callers and one caller sending ``k`` = 0, out-of-range ratings and a rated
list wider than the limit. ``poisoning_counts`` is also the poisoning measurement (400 good
``recommend`` calls, 50 with ``k`` = 0, 48 at a time), runnable against any server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from common import contract as c
from serving.batching import BatchingOptions, BatchScheduler
from serving.batching_test import _request, assert_same_answer, outputs
from serving.errors import ServingError, invalid_argument
from serving.launcher import start_local_server

BATCHING_CONFIG = Path(__file__).resolve().parent / "batching.config"


class _CheckingModel:
    """out = 2x, refusing the whole run (like an in-graph assert) when any x is negative."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, arrays):
        with self.lock:
            self.runs.append(len(arrays["x"]))
        if (arrays["x"] < 0).any():
            raise invalid_argument("assertion failed: [x must be non-negative]")
        return {"out": arrays["x"] * 2}


def _run_together(scheduler: BatchScheduler, values: list[np.ndarray]) -> list[np.ndarray | ServingError]:
    start = threading.Barrier(len(values))

    def call(x: np.ndarray):
        start.wait()
        try:
            return scheduler.run("sig", {"x": x})["out"]
        except ServingError as exc:
            return exc

    with ThreadPoolExecutor(len(values)) as pool:
        return list(pool.map(call, values))


def test_an_invalid_task_fails_alone_and_the_rest_of_its_batch_is_answered():
    model = _CheckingModel()
    # 8 callers x 2 rows fill exactly one batch of 16; the timeout is only a backstop.
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=16, batch_timeout_micros=60_000_000, num_batch_threads=1),
        {"sig": model}, name="test",
    )
    try:
        values = [np.array([i, i + 0.5], np.float32) for i in range(8)]
        values[5] = np.array([1, -1], np.float32)
        got = _run_together(scheduler, values)
    finally:
        scheduler.stop()
    for i, (x, answer) in enumerate(zip(values, got)):
        if i == 5:
            assert isinstance(answer, ServingError) and answer.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "x must be non-negative" in answer.message
        else:
            np.testing.assert_array_equal(answer, x * 2)
    assert model.runs[0] == 16  # one merged run first; the halves only because it failed
    assert len(model.runs) <= 1 + 2 * 3  # bisection: about 2·log2(8) extra runs, not one per task


def test_several_offenders_each_get_their_error_and_an_all_good_batch_runs_once():
    model = _CheckingModel()
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=8, batch_timeout_micros=60_000_000, num_batch_threads=1),
        {"sig": model}, name="test",
    )
    try:
        good = _run_together(scheduler, [np.array([i], np.float32) for i in range(8)])
        assert model.runs == [8]
        values = [np.array([-i if i in (0, 3, 7) else i], np.float32) for i in range(8)]
        got = _run_together(scheduler, values)
    finally:
        scheduler.stop()
    assert [a.tolist() for a in good] == [[2.0 * i] for i in range(8)]
    failed = [i for i, a in enumerate(got) if isinstance(a, ServingError)]
    assert failed == [3, 7]  # -0 is not negative
    for i in (1, 2, 4, 5, 6):
        assert got[i].tolist() == [2.0 * i]


def test_other_errors_still_fail_the_whole_batch_as_in_tf_serving():
    calls = []

    def broken(arrays):
        calls.append(len(arrays["x"]))
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, "OOM when allocating tensor")

    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=4, batch_timeout_micros=60_000_000, num_batch_threads=1),
        {"sig": broken}, name="test",
    )
    try:
        got = _run_together(scheduler, [np.array([i], np.float32) for i in range(4)])
    finally:
        scheduler.stop()
    assert all(isinstance(a, ServingError) and a.code == grpc.StatusCode.RESOURCE_EXHAUSTED for a in got)
    assert calls == [4]  # not retried: only INVALID_ARGUMENT can be one caller's fault


# -- over real gRPC --------------------------------------------------------------------------


def good_requests(rng: np.random.Generator, count: int) -> list:
    """recommend and recommend_from_ratings calls with valid values, 1-3 users each."""
    requests = []
    for i in range(count):
        n = int(rng.integers(1, 4))
        users = [str(u) for u in rng.integers(1, 944, n)]
        k = np.array(rng.integers(1, 20, n), np.int32)
        if i % 2 == 0:
            requests.append(_request(c.RECOMMEND_SIGNATURE, {c.USER_ID: users, c.K: k}))
            continue
        width = int(rng.integers(1, 6))
        rated = [[""] + [str(m) for m in rng.integers(1, 1683, width)] for _ in range(n)]
        ratings = np.concatenate([np.zeros((n, 1)), rng.integers(1, 6, (n, width))], axis=1).astype(np.float32)
        requests.append(_request(c.RECOMMEND_FROM_RATINGS_SIGNATURE, {
            c.USER_ID: [""] * n, c.K: k, c.RATED_MOVIE_IDS: np.array(rated, dtype=object), c.RATINGS: ratings}))
    return requests


def bad_requests() -> list[tuple[object, str]]:
    """(request, what its error must say, naming the input): k = 0, a rating of 9, a rated list too wide."""
    wide = c.MAX_RATED_WIDTH + 1
    k_message = f"{c.K} must be positive"
    return [
        (_request(c.RECOMMEND_SIGNATURE, {c.USER_ID: ["1"], c.K: np.array([0], np.int32)}), k_message),
        (_request(c.RECOMMEND_FROM_RATINGS_SIGNATURE, {
            c.USER_ID: [""], c.K: np.array([0], np.int32),
            c.RATED_MOVIE_IDS: np.array([["", "50"]], dtype=object),
            c.RATINGS: np.array([[0, 4]], np.float32)}), k_message),
        (_request(c.RECOMMEND_FROM_RATINGS_SIGNATURE, {
            c.USER_ID: [""], c.K: np.array([5], np.int32),
            c.RATED_MOVIE_IDS: np.array([["", "50", "172"]], dtype=object),
            c.RATINGS: np.array([[0, 9, 4]], np.float32)}), f"{c.RATINGS} must be within"),
        (_request(c.RECOMMEND_FROM_RATINGS_SIGNATURE, {
            c.USER_ID: [""], c.K: np.array([5], np.int32),
            c.RATED_MOVIE_IDS: np.array([[""] + [str(m) for m in range(1, wide)]], dtype=object),
            c.RATINGS: np.full((1, wide), 3, np.float32)}), f"{c.RATED_MOVIE_IDS} per user"),
    ]


def assert_not_poisoned(goods: list, expected: list, got: list, bads: list[tuple[object, str]],
                        bad_answers: list[tuple[grpc.StatusCode, str, str]]) -> None:
    """The verdict of a poisoning run (here and through Envoy in tests/edge_test.py): every good request
    answered as it was alone (``got`` holds its outputs or its RpcError), and every offending call
    (``bad_answers``: code, details, what the details must name) refused with INVALID_ARGUMENT naming its input."""
    failures = [f"{a.code().name}: {a.details()[:120]}" for a in got if isinstance(a, grpc.RpcError)]
    assert not failures, f"{len(failures)} of {len(goods)} good calls failed, e.g. {failures[:3]}"
    for request, want, have in zip(goods, expected, got):
        assert_same_answer(request, want, have)
    assert len(bad_answers) >= len(bads)
    for code, details, name in bad_answers:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert name in details, (name, details)


@pytest.fixture(scope="module")
def batching_server(exported_model):
    with start_local_server(exported_model, enable_batching=True, batching_parameters_file=BATCHING_CONFIG) as server:
        yield server


def test_good_callers_are_answered_correctly_next_to_a_caller_sending_invalid_values(batching_server):
    rng = np.random.default_rng(21)
    goods = good_requests(rng, 32 * 6)
    bads = bad_requests()
    with grpc.insecure_channel(batching_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        expected = [outputs(stub.Predict(r, timeout=60)) for r in goods]  # one at a time: nothing merged
        done = threading.Event()
        bad_answers: list[tuple[grpc.StatusCode, str, str]] = []

        def offender():  # keeps sending invalid values while the good callers run
            while not done.is_set():
                for request, name in bads:
                    try:
                        stub.Predict(request, timeout=60)
                        bad_answers.append((grpc.StatusCode.OK, "", name))
                    except grpc.RpcError as exc:
                        bad_answers.append((exc.code(), exc.details(), name))

        def good(request):
            try:
                return outputs(stub.Predict(request, timeout=60))
            except grpc.RpcError as exc:
                return exc

        bad_thread = threading.Thread(target=offender)
        bad_thread.start()
        try:
            with ThreadPoolExecutor(32) as pool:
                got = list(pool.map(good, goods))
        finally:
            done.set()
            bad_thread.join()
    assert_not_poisoned(goods, expected, got, bads, bad_answers)


def poisoning_counts(
    target: str,
    good: int = 400,
    bad: int = 50,
    concurrency: int = 48,
    *,
    channel: Callable[[], grpc.Channel] | None = None,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """The poisoning measurement: ``good`` recommend calls and ``bad`` with k = 0, ``concurrency`` at a time.

    Plain text to ``target`` by default; ``channel`` opens another kind (TLS to Envoy), and
    ``metadata`` goes with every call (``authorization: Bearer``).
    """
    rng = np.random.default_rng(0)
    calls = [(False, _request(c.RECOMMEND_SIGNATURE, {
        c.USER_ID: [str(rng.integers(1, 944))], c.K: np.array([10], np.int32)})) for _ in range(good)]
    calls += [(True, _request(c.RECOMMEND_SIGNATURE, {c.USER_ID: ["1"], c.K: np.array([0], np.int32)}))] * bad
    order = rng.permutation(len(calls))
    with (channel or (lambda: grpc.insecure_channel(target)))() as opened:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(opened)

        def call(index: int) -> tuple[bool, grpc.StatusCode]:
            is_bad, request = calls[index]
            try:
                stub.Predict(request, timeout=60, metadata=metadata)
                return is_bad, grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return is_bad, exc.code()

        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(call, order))
    return {
        "good": good,
        "good_failed": sum(1 for is_bad, code in results if not is_bad and code != grpc.StatusCode.OK),
        "bad": bad,
        "bad_invalid_argument": sum(
            1 for is_bad, code in results if is_bad and code == grpc.StatusCode.INVALID_ARGUMENT),
    }


def test_the_poisoning_measurement_has_no_good_call_failing(batching_server):
    counts = poisoning_counts(batching_server.grpc_target)
    assert counts == {"good": 400, "good_failed": 0, "bad": 50, "bad_invalid_argument": 50}
