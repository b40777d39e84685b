"""gRPC extras: health checking, metadata request checks, Prometheus metrics."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from common import contract as c
from serving.grpc_service import MODEL_SERVICE, PREDICTION_SERVICE


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
    page = urllib.request.urlopen(local_server.metrics_url, timeout=10).read().decode()
    assert (
        'serving_requests_total{api="Predict",code="FAILED_PRECONDITION",model="movielens",'
        'signature="no-such-signature"}' in page
    )
    assert "serving_request_latency_seconds_bucket" in page
    assert 'serving_model_loaded_version{model="movielens"} 1.0' in page
