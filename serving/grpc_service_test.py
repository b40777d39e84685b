"""gRPC extras: health checking, metadata request checks, Prometheus metrics."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from common import contract as c
from serving.errors import ServingError
from serving.grpc_service import MODEL_SERVICE, PREDICTION_SERVICE
from serving.metrics import ServingMetrics


@pytest.fixture(scope="module")
def channel(local_server):
    with grpc.insecure_channel(local_server.grpc_target) as ch:
        yield ch


def test_health_reports_serving(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_metadata_request_checks(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = c.MODEL_NAME
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelMetadata(request, timeout=10)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1


def test_metrics_count_requests_by_signature_and_code(local_server, channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.model_spec.signature_name = "no-such-signature"
    request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(["1"]))
    with pytest.raises(grpc.RpcError):
        stub.Predict(request, timeout=10)
    request.model_spec.name = "no-such-model"
    with pytest.raises(grpc.RpcError):
        stub.Predict(request, timeout=10)
    request.model_spec.name = c.MODEL_NAME
    request.model_spec.signature_name = c.PREDICT_SIGNATURE
    with pytest.raises(grpc.RpcError):  # movie_id missing
        stub.Predict(request, timeout=10)
    page = urllib.request.urlopen(local_server.metrics_url, timeout=10).read().decode()
    # Names a client made up are never labels: they count as "unknown" until found.
    assert "no-such" not in page
    assert 'serving_requests_total{api="Predict",code="FAILED_PRECONDITION",model="movielens",signature="unknown"}' in page
    assert 'serving_requests_total{api="Predict",code="NOT_FOUND",model="unknown",signature="unknown"}' in page
    assert (
        'serving_requests_total{api="Predict",code="INVALID_ARGUMENT",model="movielens",signature="serving_default"}'
        in page
    )
    assert "serving_request_latency_seconds_bucket" in page
    assert 'serving_model_loaded_version{model="movielens"} 1.0' in page


def test_observe_counts_any_escaping_exception():
    metrics = ServingMetrics()
    with pytest.raises(ServingError), metrics.observe("Predict") as observation:
        observation.model = c.MODEL_NAME
        raise ServingError(grpc.StatusCode.NOT_FOUND, "gone")
    with pytest.raises(KeyError), metrics.observe("GetModelStatus", signature=""):
        raise KeyError("a bug")
    with metrics.observe("Predict") as observation:
        observation.model, observation.signature = c.MODEL_NAME, c.PREDICT_SIGNATURE

    def count(api: str, model: str, signature: str, code: str) -> float | None:
        labels = {"api": api, "model": model, "signature": signature, "code": code}
        return metrics.registry.get_sample_value("serving_requests_total", labels)

    assert count("Predict", c.MODEL_NAME, "unknown", "NOT_FOUND") == 1
    assert count("GetModelStatus", "unknown", "", "INTERNAL") == 1
    assert count("Predict", c.MODEL_NAME, c.PREDICT_SIGNATURE, "OK") == 1
    assert metrics.registry.get_sample_value("serving_requests_in_flight", {"api": "Predict"}) == 0
