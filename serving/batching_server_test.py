"""Batching end to end: with ``--enable_batching --batching_parameters_file serving/batching.config``
and warmup on, the exported model loads, every signature answers through the official
``tensorflow-serving-api`` stubs, and the answers equal the unbatched server's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from common import contract as c
from serving.batching_test import assert_same_answer, mixed_requests
from serving.launcher import start_local_server

BATCHING_CONFIG = Path(__file__).resolve().parent / "batching.config"


def _answers(target: str, requests, threads: int) -> list[dict]:
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        call = lambda r: {a: tf.make_ndarray(t) for a, t in stub.Predict(r, timeout=60).outputs.items()}  # noqa: E731
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(call, requests))


def test_batching_server_with_the_shipped_config_and_warmup_matches_the_unbatched_server(exported_model, local_server):
    requests = mixed_requests(np.random.default_rng(12), rounds=4)
    expected = _answers(local_server.grpc_target, requests, threads=1)
    with start_local_server(exported_model, enable_batching=True, batching_parameters_file=BATCHING_CONFIG) as server:
        got = _answers(server.grpc_target, requests, threads=16)
        log = server.log_text()
    assert "Number of warmup records read" in log  # replayed through the batcher at load
    for request, want, have in zip(requests, expected, got):
        assert_same_answer(request, want, have)
    signatures = {r.model_spec.signature_name for r in requests}
    assert signatures == {c.PREDICT_SIGNATURE, c.RECOMMEND_SIGNATURE, c.RECOMMEND_FROM_RATINGS_SIGNATURE, c.MODEL_CARD_SIGNATURE}
