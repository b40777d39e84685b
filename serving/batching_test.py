"""Batching: TF Serving's refusals, queueing limits, padding, and identical answers on and off."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

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


def _predict_request(users: list[str], movies: list[str]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(users))
    request.inputs[c.MOVIE_ID].CopyFrom(tf.make_tensor_proto(movies))
    return request


def test_batching_on_and_off_give_identical_answers(exported_model):
    path = next(p for p in exported_model.iterdir() if p.name.isdigit())
    plain = load_version(c.MODEL_NAME, int(path.name), path, warmup=False)
    batched = load_version(
        c.MODEL_NAME, int(path.name), path, warmup=False,
        batching=BatchingOptions(max_batch_size=64, batch_timeout_micros=20_000, num_batch_threads=2,
                                 allowed_batch_sizes=(16, 64)),
    )
    rng = np.random.default_rng(0)
    cases = [
        ([str(u) for u in rng.integers(1, 944, n)], [str(m) for m in rng.integers(1, 1683, n)]) for n in (1, 3, 7, 12) * 4
    ]
    try:
        expected = [plain.predict(_predict_request(u, m)) for u, m in cases]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda case: batched.predict(_predict_request(*case)), cases))
        for want, have in zip(expected, got):
            assert set(want.outputs) == set(have.outputs)
            for alias in want.outputs:
                np.testing.assert_allclose(
                    tf.make_ndarray(have.outputs[alias]), tf.make_ndarray(want.outputs[alias]), rtol=1e-6, atol=1e-6
                )
        # recommend takes a scalar k: refused with batching on, exactly as TF Serving's BatchingSession does.
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = c.RECOMMEND_SIGNATURE
        request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(["1"]))
        request.inputs[c.K].CopyFrom(tf.make_tensor_proto(3, dtype=tf.int32))
        assert plain.predict(request).outputs[c.MOVIE_IDS].tensor_shape.dim[1].size == 3
        with pytest.raises(ServingError) as err:
            batched.predict(request)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.message == RANK0_MESSAGE
    finally:
        plain.release()
        batched.release()


def test_batching_with_scalar_warmup_record_fails_the_load(exported_model):
    """TF Serving warms up through the BatchingSession, so a scalar-k warmup record fails the load."""
    from serving.servable import LoadError

    path = next(p for p in exported_model.iterdir() if p.name.isdigit())
    with pytest.raises(LoadError) as err:
        load_version(c.MODEL_NAME, int(path.name), path, batching=BatchingOptions(num_batch_threads=1))
    assert c.RECOMMEND_SIGNATURE in str(err.value) and RANK0_MESSAGE in str(err.value)
