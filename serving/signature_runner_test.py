"""Request validation names the offending input; responses use TF Serving's typed proto fields."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from common import contract as c
from serving.errors import ServingError
from serving.servable import load_version
from serving.signature_runner import MAX_INPUT_ELEMENTS


@pytest.fixture(scope="module")
def servable(exported_model):
    path = next(p for p in exported_model.iterdir() if p.name.isdigit())
    loaded = load_version(c.MODEL_NAME, int(path.name), path, warmup=False)
    yield loaded
    loaded.release()


def _request(signature: str = "", **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.model_spec.signature_name = signature
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    return request


def _strings(*values: str):
    return tf.make_tensor_proto(list(values), dtype=tf.string)


def _error(servable, request) -> ServingError:
    with pytest.raises(ServingError) as err:
        servable.predict(request)
    return err.value


def test_predict_answers_with_typed_fields_and_names_the_version(servable):
    response = servable.predict(_request(user_id=_strings("1", "2"), movie_id=_strings("10", "20")))
    assert response.model_spec.name == c.MODEL_NAME
    assert response.model_spec.version.value == servable.version
    assert response.model_spec.signature_name == c.PREDICT_SIGNATURE
    rating = response.outputs[c.PREDICTED_RATING]
    # Like TF Serving (Tensor::AsProtoField): float_val, not tensor_content.
    assert len(rating.float_val) == 2 and not rating.tensor_content
    assert [d.size for d in response.outputs[c.USER_EMBEDDING].tensor_shape.dim] == [2, c.EMBEDDING_DIM]

    recommend = servable.predict(
        _request(c.RECOMMEND_SIGNATURE, user_id=_strings("1"), k=tf.make_tensor_proto([4], dtype=tf.int32))
    )
    assert len(recommend.outputs[c.MOVIE_IDS].string_val) == 4
    scores = tf.make_ndarray(recommend.outputs[c.SCORES])[0]
    assert list(scores) == sorted(scores, reverse=True)


def test_output_filter_returns_only_the_named_outputs(servable):
    request = _request(user_id=_strings("1"), movie_id=_strings("2"))
    request.output_filter.append(c.PREDICTED_RATING)
    assert list(servable.predict(request).outputs) == [c.PREDICTED_RATING]


@pytest.mark.parametrize(
    ("inputs", "code", "fragment"),
    [
        ({"user_id": ("1",)}, grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {movie_id}"),
        ({"user_id": ("1",), "movie_id": ("2",), "rating": ("5",)}, grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {rating}"),
        ({"user_id": ("1",), "film": ("2",)}, grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found in signature: film"),
    ],
)
def test_missing_and_extra_inputs(servable, inputs, code, fragment):
    err = _error(servable, _request(**{k: _strings(*v) for k, v in inputs.items()}))
    assert err.code == code
    assert fragment in err.message


def test_wrong_dtype_names_the_input(servable):
    err = _error(servable, _request(user_id=_strings("1"), movie_id=tf.make_tensor_proto([2], dtype=tf.int64)))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message == 'input "movie_id" has dtype DT_INT64 but the signature expects DT_STRING'


def test_a_shape_the_signature_does_not_declare_reaches_the_graph(servable):
    # TF Serving does not check shapes against the signature (predict_util.cc):
    # the tensor goes to the graph, and the graph's own error comes back.
    err = _error(servable, _request(user_id=_strings("1"), movie_id=tf.make_tensor_proto([["2"]])))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "[[{{node " in err.message and "signature expects" not in err.message
    # The scalar-k API (before every input had a batch dimension) reaches the graph too, whose
    # own check says what changed.
    err = _error(
        servable,
        _request(c.RECOMMEND_SIGNATURE, user_id=_strings("1", "2"), k=tf.make_tensor_proto(3, dtype=tf.int32)),
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert c.K_PER_USER_MESSAGE in err.message and "signature expects" not in err.message


def test_in_graph_assertion_is_invalid_argument(servable):
    err = _error(servable, _request(user_id=_strings("1", "2"), movie_id=_strings("3")))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "assertion failed" in err.message and "Graph execution error" not in err.message
    err = _error(servable, _request(c.RECOMMEND_SIGNATURE, user_id=_strings("1"), k=tf.make_tensor_proto([0])))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_signature_and_output_alias(servable):
    err = _error(servable, _request("nope", user_id=_strings("1")))
    assert (err.code, err.message) == (grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
    request = _request(user_id=_strings("1"), movie_id=_strings("2"))
    request.output_filter.extend(["rating"])
    err = _error(servable, request)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message.startswith("output tensor alias not found in signature: rating")
    request.output_filter[:] = [c.PREDICTED_RATING, c.PREDICTED_RATING]
    assert _error(servable, request).message == f"duplicate output tensor alias: {c.PREDICTED_RATING}"


def test_empty_batch_gives_empty_outputs(servable):
    empty = tf.make_tensor_proto(np.array([], dtype=object), dtype=tf.string, shape=[0])
    response = servable.predict(_request(user_id=empty, movie_id=empty))
    assert tf.make_ndarray(response.outputs[c.PREDICTED_RATING]).shape == (0,)


def test_huge_declared_shape_is_refused_before_decoding(servable):
    # A few bytes on the wire: one string value, a shape claiming 3e9 of them.
    # Decoding would repeat the value 3e9 times; the size check comes first.
    huge = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"1"])
    huge.tensor_shape.dim.add(size=3_000_000_000)
    assert huge.ByteSize() < 20
    err = _error(servable, _request(user_id=huge, movie_id=_strings("2")))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message.startswith('input "user_id" declares shape [3000000000] (3000000000 elements)')
    assert str(MAX_INPUT_ELEMENTS) in err.message

    negative = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"1"])
    negative.tensor_shape.dim.add(size=-5)
    err = _error(servable, _request(user_id=negative, movie_id=_strings("2")))
    assert (err.code, err.message) == (
        grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: user_id (negative dimension in shape [-5])"
    )
