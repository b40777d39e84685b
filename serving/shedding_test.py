"""Shedding instead of queueing, over real gRPC against ``python -m serving``.

- above --grpc_max_concurrent_rpcs, calls are answered RESOURCE_EXHAUSTED at once;
- a full batch queue (max_enqueued_batches) is UNAVAILABLE at once, in TF Serving's words;
- meanwhile, and afterwards, the server keeps answering;
- a call whose caller is gone (deadline passed, cancelled) never runs its graph:
  serving_graph_runs_total does not move for it.

The model is TF Serving's half_plus_two (TF1, no warmup, so no graph run at load).
A batch timeout of 1.5 s holds calls in an open batch: long enough to flood the
server while they wait, and for their callers to give up.
"""

from __future__ import annotations

import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.batching import QUEUE_FULL_MESSAGE
from serving.cancellation import CANCELLED_MESSAGE
from serving.launcher import start_local_server
from testing.tf1_models import export_tf1_half_plus_two

BATCH_TIMEOUT_S = 1.5
MAX_RPCS = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("half_plus_two")
    export_tf1_half_plus_two(base / "1")
    batching = base.parent / "batching.config"
    batching.write_text(
        "max_batch_size { value: 8 }\n"
        f"batch_timeout_micros {{ value: {int(BATCH_TIMEOUT_S * 1e6)} }}\n"
        "max_enqueued_batches { value: 1 }\n"
        "num_batch_threads { value: 1 }\n"
    )
    with start_local_server(base, model_name="half", enable_batching=True, batching_parameters_file=batching,
                            poll_seconds=0, extra_args=["--grpc_max_concurrent_rpcs", str(MAX_RPCS)]) as running:
        yield running


def _request(rows: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.arange(rows, dtype=np.float32).reshape(rows, 1)))
    return request


def _graph_runs(server) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    match = re.search(r'^serving_graph_runs_total\{model="half",signature="serving_default"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _timed(call):
    start = time.monotonic()
    try:
        call()
        return grpc.StatusCode.OK, "", time.monotonic() - start
    except grpc.RpcError as exc:
        return exc.code(), exc.details(), time.monotonic() - start


def test_a_flood_above_the_rpc_cap_is_refused_at_once_while_admitted_calls_are_answered(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        held = [stub.Predict.future(_request(1), timeout=30) for _ in range(MAX_RPCS)]  # 4 rows: an open batch
        time.sleep(0.3)
        with ThreadPoolExecutor(16) as pool:
            flood = list(pool.map(lambda _: _timed(lambda: stub.Predict(_request(1), timeout=30)), range(32)))
        assert {code for code, _, _ in flood} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert max(seconds for _, _, seconds in flood) < BATCH_TIMEOUT_S / 2  # answered, not queued
        for future in held:
            np.testing.assert_allclose(tf.make_ndarray(future.result().outputs["y"]), [[2.0]])
        response = stub.Predict(_request(3), timeout=30)  # and it keeps serving
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]).ravel(), [2.0, 2.5, 3.0])


def test_a_full_batch_queue_is_unavailable_at_once_in_tf_servings_words(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        first = stub.Predict.future(_request(5), timeout=30)  # opens the one batch the queue may hold
        time.sleep(0.3)
        code, details, seconds = _timed(lambda: stub.Predict(_request(5), timeout=30))  # 5 + 5 > 8: needs another
        assert (code, details) == (grpc.StatusCode.UNAVAILABLE, QUEUE_FULL_MESSAGE)
        assert seconds < BATCH_TIMEOUT_S / 2
        assert first.result().outputs["y"].tensor_shape.dim[0].size == 5
        assert stub.Predict(_request(2), timeout=30).outputs["y"].tensor_shape.dim[0].size == 2


def test_a_call_whose_caller_is_gone_never_runs_its_graph(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        before = _graph_runs(server)
        code, _, _ = _timed(lambda: stub.Predict(_request(1), timeout=0.3))  # waits in its batch past the deadline
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        cancelled = stub.Predict.future(_request(2), timeout=30)
        time.sleep(0.3)
        assert cancelled.cancel()
        time.sleep(BATCH_TIMEOUT_S + 0.7)  # both batches have come due
        assert _graph_runs(server) == before, "a call nobody waits for ran its graph"
        assert stub.Predict(_request(1), timeout=30).outputs["y"].float_val == [2.0]
        assert _graph_runs(server) == before + 1
    log = server.log_text()
    assert log.count(f"-> CANCELLED: {CANCELLED_MESSAGE}") == 2, log[-3000:]


class _Runner:
    name = "serving_default"

    def __init__(self) -> None:
        self.runs = 0

    def resolve_output_filter(self, output_filter):
        return ["y"]

    def run(self, arrays):
        self.runs += 1
        return {"y": arrays["x"]}


def test_without_batching_a_gone_caller_gets_cancelled_instead_of_a_graph_run():
    from serving import cancellation
    from serving.errors import ServingError
    from serving.servable import LoadedVersion

    runner = _Runner()
    version = LoadedVersion("half", 1, None, {}, {"serving_default": runner})
    with cancellation.caller(lambda: False), pytest.raises(ServingError) as err:
        version.execute(runner, {"x": np.ones(1)})
    assert (err.value.code, err.value.message, runner.runs) == (grpc.StatusCode.CANCELLED, CANCELLED_MESSAGE, 0)
    with cancellation.caller(lambda: True):
        assert version.execute(runner, {"x": np.ones(1)})["y"].tolist() == [1.0]
    assert version.execute(runner, {"x": np.ones(1)})["y"].tolist() == [1.0]  # nobody said: it runs
    assert runner.runs == 2
