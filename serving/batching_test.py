"""Batching: TF Serving's refusals, queueing limits, padding, and identical answers on and off."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from common import contract as c
from serving.batching import RANK0_MESSAGE, UNEQUAL_MESSAGE, BatchingOptions, BatchScheduler
from serving.errors import ServingError
from serving.servable import load_version


class _CountingModel:
    """Doubles x, adds y; records every batch it is asked to run, optionally holding it until ``gate`` opens."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[int] = []
        self.gate = gate
        self.running = threading.Event()  # set once a batch has left the queue and is being run

    def __call__(self, arrays):
        self.running.set()
        if self.gate is not None:
            self.gate.wait()
        self.batches.append(len(arrays["x"]))
        return {"out": arrays["x"] * 2 + arrays["y"]}


def _scheduler(model, **options) -> BatchScheduler:
    return BatchScheduler(BatchingOptions(**{"num_batch_threads": 1, **options}), {"sig": model}, name="test")


def test_rank0_input_is_refused_like_tf_serving():
    scheduler = _scheduler(_CountingModel())
    try:
        with pytest.raises(ServingError) as err:
            scheduler.run("sig", {"x": np.float32(1), "y": np.array([1.0], np.float32)})
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.message == RANK0_MESSAGE
        with pytest.raises(ServingError) as err:
            scheduler.run("sig", {"x": np.ones(2, np.float32), "y": np.ones(3, np.float32)})
        assert err.value.message == UNEQUAL_MESSAGE
    finally:
        scheduler.stop()


def test_concurrent_requests_share_batches_and_get_their_own_rows_back():
    model = _CountingModel()
    # 8 callers x 3 rows fill exactly one batch of 24, which runs the moment it is
    # full; the timeout is only a backstop, so the outcome does not depend on timing.
    scheduler = _scheduler(model, max_batch_size=24, batch_timeout_micros=60_000_000)
    start = threading.Barrier(8)
    try:
        def call(i: int) -> np.ndarray:
            x = np.arange(i, i + 3, dtype=np.float32)
            start.wait()
            out = scheduler.run("sig", {"x": x, "y": np.full(3, i, np.float32)})["out"]
            np.testing.assert_array_equal(out, x * 2 + i)
            return out

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(8)))
        assert model.batches == [24]
    finally:
        scheduler.stop()


def test_batches_are_padded_to_allowed_sizes_and_padding_is_dropped():
    model = _CountingModel()
    scheduler = _scheduler(model, max_batch_size=8, allowed_batch_sizes=(4, 8))
    try:
        out = scheduler.run("sig", {"x": np.array([1, 2, 3], np.float32), "y": np.zeros(3, np.float32)})["out"]
        np.testing.assert_array_equal(out, [2, 4, 6])
        assert model.batches == [4]
    finally:
        scheduler.stop()


def test_task_larger_than_max_batch_size_is_invalid_argument():
    scheduler = _scheduler(_CountingModel(), max_batch_size=4)
    try:
        with pytest.raises(ServingError) as err:
            scheduler.run("sig", {"x": np.ones(5, np.float32), "y": np.ones(5, np.float32)})
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "larger than maximum input batch size 4" in err.value.message
    finally:
        scheduler.stop()


def test_large_batch_splitting_runs_pieces_and_stitches_outputs():
    model = _CountingModel()
    scheduler = _scheduler(model, max_batch_size=10, enable_large_batch_splitting=True, max_execution_batch_size=4)
    try:
        x = np.arange(10, dtype=np.float32)
        out = scheduler.run("sig", {"x": x, "y": np.zeros(10, np.float32)})["out"]
        np.testing.assert_array_equal(out, x * 2)
        assert max(model.batches) <= 4
    finally:
        scheduler.stop()


def test_full_queue_is_unavailable():
    gate = threading.Event()
    model = _CountingModel(gate=gate)
    # One row per batch, one batch allowed to wait in the queue, one worker.
    scheduler = _scheduler(model, max_batch_size=1, max_enqueued_batches=1)
    rows = {"x": np.ones(1, np.float32), "y": np.ones(1, np.float32)}
    try:
        with ThreadPoolExecutor(4) as pool:
            running = pool.submit(scheduler.run, "sig", rows)
            assert model.running.wait(30)  # the worker holds the first batch; the queue is empty
            # Of three more, exactly one fits in the queue; the other two are refused at once.
            rest = [pool.submit(scheduler.run, "sig", rows) for _ in range(3)]
            refused = [f.exception() for f in itertools.islice(as_completed(rest, timeout=30), 2)]
            gate.set()
            assert running.result(timeout=30)["out"].tolist() == [3.0]
            assert sum(f.exception() is None for f in rest) == 1
        assert all(isinstance(e, ServingError) and e.code == grpc.StatusCode.UNAVAILABLE for e in refused)
        assert all("queue to which this task was submitted is full" in e.message for e in refused)
    finally:
        gate.set()
        scheduler.stop()


def test_a_batch_ready_in_another_queue_wakes_an_idle_worker():
    """Enqueue wakes one worker per new batch; a second batch (here in another signature's
    queue) must still reach the second worker while the first one is busy, not wait for it."""
    gate = threading.Event()
    slow = _CountingModel(gate=gate)
    fast = _CountingModel()
    scheduler = BatchScheduler(BatchingOptions(num_batch_threads=2, max_batch_size=1, batch_timeout_micros=60_000_000),
                               {"slow": slow, "fast": fast}, name="test")
    rows = {"x": np.ones(1, np.float32), "y": np.ones(1, np.float32)}
    try:
        with ThreadPoolExecutor(3) as pool:
            held = pool.submit(scheduler.run, "slow", rows)
            assert slow.running.wait(30)
            # Both batches are full at once (max_batch_size 1); the free worker runs them
            # while the other one is still held (a lost wake-up would hang here).
            done = [pool.submit(scheduler.run, "fast", rows) for _ in range(2)]
            assert [f.result(timeout=30)["out"].tolist() for f in done] == [[3.0], [3.0]]
            assert not held.done()
            gate.set()
            assert held.result(timeout=30)["out"].tolist() == [3.0]
    finally:
        gate.set()
        scheduler.stop()


def _predict_request(users: list[str], movies: list[str]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(users))
    request.inputs[c.MOVIE_ID].CopyFrom(tf.make_tensor_proto(movies))
    return request


def _request(signature: str, inputs: dict) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def mixed_requests(rng: np.random.Generator, rounds: int = 3) -> list[predict_pb2.PredictRequest]:
    """Every signature, several batch sizes, different k per row and different rated_movie_ids widths.

    recommend_from_ratings rows start with "" in the first row (what a batcher pads a merged
    tensor with is its first element); single-row requests also come without it (padding then
    repeats the row's first movie, which counts once).
    """
    requests = []
    for _ in range(rounds):
        for n in (1, 3, 7, 12):
            users = [str(u) for u in rng.integers(1, 944, n)]
            requests.append(_request(c.PREDICT_SIGNATURE, {
                c.USER_ID: users, c.MOVIE_ID: [str(m) for m in rng.integers(1, 1683, n)]}))
            requests.append(_request(c.RECOMMEND_SIGNATURE, {
                c.USER_ID: users, c.K: np.array(rng.integers(1, 30, n), np.int32)}))
            width = int(rng.integers(1, 12))
            rated = [[str(m) for m in rng.integers(1, 1683, width)] for _ in range(n)]
            ratings = np.array(rng.integers(1, 6, (n, width)), np.float32)
            if n > 1 or rng.random() < 0.5:
                rated = [[""] + rated[0]] + [row + [""] for row in rated[1:]]
                ratings = np.concatenate([np.zeros((n, 1), np.float32), ratings], axis=1)
                ratings[1:] = np.roll(ratings[1:], -1, axis=1)
            requests.append(_request(c.RECOMMEND_FROM_RATINGS_SIGNATURE, {
                c.USER_ID: [""] + users[1:], c.K: np.array(rng.integers(1, 30, n), np.int32),
                c.RATED_MOVIE_IDS: np.array(rated, dtype=object), c.RATINGS: ratings}))
        requests.append(_request(c.MODEL_CARD_SIGNATURE, {c.MODEL_CARD_REQUEST: np.zeros(int(rng.integers(1, 3)), np.int32)}))
    return requests


def assert_same_answer(request: predict_pb2.PredictRequest, want: dict, have: dict) -> None:
    """Equal outputs; recommend rows compared up to their own k (a merged batch is as wide as its largest k),
    and everything past it must be padding."""
    assert set(want) == set(have)
    if c.SCORES not in want:
        for alias in want:
            if want[alias].dtype == object:
                assert want[alias].tolist() == have[alias].tolist(), alias
            else:
                np.testing.assert_allclose(have[alias], want[alias], rtol=1e-5, atol=1e-5)
        return
    width = want[c.SCORES].shape[1]
    assert have[c.SCORES].shape[0] == want[c.SCORES].shape[0] and have[c.SCORES].shape[1] >= width
    for alias in (c.MOVIE_IDS, c.MOVIE_TITLES):
        assert have[alias][:, :width].tolist() == want[alias].tolist(), request.model_spec.signature_name
        assert (have[alias][:, width:] == b"").all()
    assert np.isneginf(have[c.SCORES][:, width:]).all()
    np.testing.assert_allclose(have[c.SCORES][:, :width], want[c.SCORES], rtol=1e-5, atol=1e-5)


def outputs(response: predict_pb2.PredictResponse) -> dict:
    return {alias: tf.make_ndarray(t) for alias, t in response.outputs.items()}


def test_batching_on_and_off_give_identical_answers(exported_model):
    """Every signature through the batcher, merged with requests of other sizes, k and widths
    (TF Serving's pad_variable_length_inputs: padded with each tensor's first element)."""
    path = next(p for p in exported_model.iterdir() if p.name.isdigit())
    plain_runs, batched_runs = [], []
    plain = load_version(c.MODEL_NAME, int(path.name), path, warmup=False,
                         on_run=lambda signature, cpu: plain_runs.append((signature, cpu)))
    batch_sizes = []
    batched = load_version(
        c.MODEL_NAME, int(path.name), path, warmup=True,
        batching=BatchingOptions(max_batch_size=64, batch_timeout_micros=50_000, num_batch_threads=2,
                                 allowed_batch_sizes=(16, 64), pad_variable_length_inputs=True),
        on_batch=lambda signature, size: batch_sizes.append(size),
        on_run=lambda signature, cpu: batched_runs.append((signature, cpu)),
    )
    requests = mixed_requests(np.random.default_rng(0))
    try:
        expected = [outputs(plain.predict(r)) for r in requests]
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda r: outputs(batched.predict(r)), requests))
        for request, want, have in zip(requests, expected, got):
            assert_same_answer(request, want, have)
        assert len(batch_sizes) < len(requests) + 20, "requests were not merged"
        # One graph run per request unbatched, one per batch (warmup's included) batched, each with its CPU time.
        assert [signature for signature, _ in plain_runs] == [r.model_spec.signature_name or "serving_default"
                                                              for r in requests]
        assert len(batched_runs) == len(batch_sizes)
        assert all(cpu >= 0 for _, cpu in plain_runs + batched_runs) and sum(cpu for _, cpu in plain_runs) > 0
        # The scalar-k API: as in TF Serving, the graph refuses it unbatched (no shape check
        # before the graph; its own check says what changed), the batching session before the graph.
        old = _request(c.RECOMMEND_SIGNATURE, {c.USER_ID: ["1", "2"], c.K: np.int32(3)})
        for servable, fragment in ((plain, c.K_PER_USER_MESSAGE), (batched, RANK0_MESSAGE)):
            with pytest.raises(ServingError) as err:
                servable.predict(old)
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in err.value.message
    finally:
        plain.release()
        batched.release()


def test_the_export_loads_with_batching_and_warmup_on(exported_model):
    """TF Serving warms up through the batching session: every warmup record has a batch dimension."""
    path = next(p for p in exported_model.iterdir() if p.name.isdigit())
    config = Path(__file__).resolve().parent / "batching.config"
    from serving.config import read_batching_parameters

    servable = load_version(c.MODEL_NAME, int(path.name), path, warmup=True,
                            batching=BatchingOptions.from_proto(read_batching_parameters(config)))
    servable.release()


def test_inner_padding_uses_the_first_element_and_refuses_empty_tensors():
    """batching_util.cc PadTensor: pad value = the tensor's first element; an empty tensor cannot be padded."""
    seen = []

    def model(arrays):
        seen.append(arrays["x"].tolist())
        return {"out": np.zeros(len(arrays["x"]), np.float32)}

    scheduler = BatchScheduler(BatchingOptions(num_batch_threads=1, batch_timeout_micros=200_000,
                                               pad_variable_length_inputs=True), {"sig": model}, name="t")
    try:
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(scheduler.run, "sig", {"x": np.array([["a", "b", "c"]], dtype=object)})
            b = pool.submit(scheduler.run, "sig", {"x": np.array([["d"], ["e"]], dtype=object)})
            a.result(timeout=30), b.result(timeout=30)
        if len(seen) != 1:
            pytest.skip("the two requests were not merged into one batch on this run")
        rows = seen[0]
        assert ["a", "b", "c"] in rows
        assert [r for r in rows if r[0] in ("d", "e")] == [["d", "d", "d"], ["e", "d", "d"]]
    finally:
        scheduler.stop()
