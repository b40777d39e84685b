"""A client built from nothing but the official tensorflow_serving.apis stubs gets right answers.

This is the promise the local server makes: code written against real TF
Serving works unchanged. So the client half of this file deliberately uses no
project code -- only grpc, numpy, TensorFlow's tensor helpers and the
``tensorflow-serving-api`` stubs -- and spells the API's names itself, the way
an outside user would. (``test_names_match_the_contract`` is the one place that
imports the project, to make sure those spellings stay the contract's.)
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

MODEL = "movielens"
TIMEOUT = 30


@pytest.fixture(scope="module")
def stubs(local_server):
    channel = grpc.insecure_channel(local_server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def _rate(users, movies, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get("name", MODEL)
    if "signature" in spec:
        request.model_spec.signature_name = spec["signature"]
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(users, dtype=tf.string))
    if movies is not None:
        request.inputs["movie_id"].CopyFrom(tf.make_tensor_proto(movies))
    return request


def _recommend(users, k) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "recommend"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(users, dtype=tf.string))
    request.inputs["k"].CopyFrom(tf.make_tensor_proto([k] * len(users), dtype=tf.int32))  # one per user
    return request


def test_names_match_the_contract():
    from common import contract

    assert (MODEL, "recommend") == (contract.MODEL_NAME, contract.RECOMMEND_SIGNATURE)


def test_both_signatures_answer(stubs):
    predictions, _ = stubs
    response = predictions.Predict(_rate(["1", "2", "3"], ["1", "50", "181"]), TIMEOUT)
    assert (response.model_spec.name, response.model_spec.signature_name) == (MODEL, "serving_default")
    assert response.model_spec.version.value == 1
    ratings = np.array(response.outputs["predicted_rating"].float_val)
    assert ratings.shape == (3,) and np.all(np.isfinite(ratings))
    # The rating is a function of the two embeddings: the same pair always rates the same.
    again = predictions.Predict(_rate(["3"], ["181"]), TIMEOUT)
    assert again.outputs["predicted_rating"].float_val[0] == pytest.approx(ratings[2], abs=1e-5)

    top = predictions.Predict(_recommend(["1", "2"], 5), TIMEOUT)
    assert top.model_spec.signature_name == "recommend"
    ids = tf.make_ndarray(top.outputs["movie_ids"])
    scores = tf.make_ndarray(top.outputs["scores"])
    assert ids.shape == (2, 5) and scores.shape == (2, 5)
    assert np.all(np.diff(scores, axis=1) <= 0), "recommendations are not best-first"
    assert all(len(set(row)) == 5 for row in ids)


def test_metadata_and_status(stubs):
    predictions, models = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = predictions.GetModelMetadata(request, TIMEOUT)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    serving_default = signature_map.signature_def["serving_default"]
    assert set(serving_default.inputs) == {"user_id", "movie_id"}
    assert serving_default.outputs["user_embedding"].tensor_shape.dim[1].size == 64
    recommend = signature_map.signature_def["recommend"]
    assert recommend.inputs["k"].dtype == tf.int32.as_datatype_enum
    assert [d.size for d in recommend.inputs["k"].tensor_shape.dim] == [-1]

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    (version_status,) = models.GetModelStatus(status_request, TIMEOUT).model_version_status
    assert version_status.version == 1
    assert version_status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def _code(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, TIMEOUT)
    return err.value.code(), err.value.details()


def test_each_error_gets_tf_servings_status_code(stubs):
    predictions, models = stubs
    predict = predictions.Predict
    assert _code(predict, _rate(["1"], ["2"], name="nope"))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(predict, _rate(["1"], ["2"], version=42))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(predict, _rate(["1"], ["2"], signature="nope")) == (
        grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')

    code, message = _code(predict, _rate(["1"], None))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "movie_id" in message
    extra = _rate(["1"], ["2"])
    extra.inputs["rating"].CopyFrom(tf.make_tensor_proto([5.0]))
    code, message = _code(predict, extra)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "rating" in message
    code, message = _code(predict, _rate(["1"], np.array([2], dtype=np.int64)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "movie_id" in message
    # No shape check before the graph, as in TF Serving: the graph's own error.
    code, message = _code(predict, _rate(["1"], [["2"]]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "[[{{node " in message
    assert _code(predict, _rate(["1", "2"], ["3"]))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(predict, _recommend(["1"], 0))[0] == grpc.StatusCode.INVALID_ARGUMENT
    filtered = _rate(["1"], ["2"])
    filtered.output_filter.append("rating")
    assert _code(predict, filtered)[0] == grpc.StatusCode.INVALID_ARGUMENT

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    assert _code(models.GetModelStatus, status_request)[0] == grpc.StatusCode.NOT_FOUND
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = "nope"
    assert _code(predictions.GetModelMetadata, metadata_request)[0] == grpc.StatusCode.NOT_FOUND

    # Classify on a signature that is not a tf.Example classifier: classifier.cc's check.
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    classify.input.example_list.examples.add()
    assert _code(predictions.Classify, classify) == (grpc.StatusCode.INVALID_ARGUMENT, "Expected one input Tensor.")

    # None of that hurt the server.
    assert predictions.Predict(_rate(["1"], ["2"]), TIMEOUT).outputs["predicted_rating"].float_val
