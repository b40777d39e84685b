"""tensor_codec against TensorFlow's own converters, on every dtype and shape the API uses and then some."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from common import contract
from serving import tensor_codec

SHAPES = [(0,), (1,), (3,), (2, 3), (1, 0), (4, 1, 2), ()]
NUMERIC = [np.float32, np.float64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.int64, np.uint32, np.uint64, np.bool_]


def _values(np_dtype, shape) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    if np_dtype is object:
        return np.array([f"id{i}".encode() for i in range(count)] or [], dtype=object).reshape(shape)
    if np_dtype is np.bool_:
        return (np.arange(count) % 2 == 0).reshape(shape)
    raw = np.arange(count) * 7 - 3
    if np.issubdtype(np_dtype, np.unsignedinteger):
        raw = np.abs(raw)
    if np.issubdtype(np_dtype, np.floating):
        raw = raw / 3.0
    return raw.astype(np_dtype).reshape(shape)


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("np_dtype", [object, *NUMERIC])
@pytest.mark.parametrize("shape", SHAPES)
def test_decode_matches_make_ndarray_on_make_tensor_proto(np_dtype, shape):
    """make_tensor_proto packs numbers into tensor_content and strings into string_val."""
    proto = tf.make_tensor_proto(_values(np_dtype, shape))
    _same(tensor_codec.decode(proto), tf.make_ndarray(proto))


@pytest.mark.parametrize("np_dtype", [object, *NUMERIC])
@pytest.mark.parametrize("shape", SHAPES)
def test_decode_matches_make_ndarray_on_typed_fields(np_dtype, shape):
    """What TF Serving's clients (and our encoder) send: the typed repeated field."""
    values = _values(np_dtype, shape)
    proto = tensor_codec.encode(values, tf.dtypes.as_dtype(values.dtype).as_datatype_enum)
    _same(tensor_codec.decode(proto), tf.make_ndarray(proto))
    _same(tensor_codec.decode(proto), values)


@pytest.mark.parametrize(
    "proto",
    [
        # fewer values than the shape: TensorFlow repeats the last one
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"dim": [{"size": 4}]}, float_val=[1.5]),
        tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape={"dim": [{"size": 3}]}, int_val=[1, 2]),
        tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape={"dim": [{"size": 3}]}, string_val=[b"a"]),
        # no values at all: zeros
        tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_shape={"dim": [{"size": 2}]}),
        # a rank-0 tensor
        tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, int_val=[7]),
        # a dtype this module leaves to TensorFlow
        tf.make_tensor_proto(np.array([1.5, 2.5], dtype=np.float16)),
        tf.make_tensor_proto(np.array([1 + 2j], dtype=np.complex64)),
    ],
)
def test_decode_irregular_protos_like_make_ndarray(proto):
    _same(tensor_codec.decode(proto), tf.make_ndarray(proto))


@pytest.mark.parametrize(
    "proto",
    [
        # more values than the shape holds
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"dim": [{"size": 1}]}, float_val=[1.0, 2.0]),
        # packed bytes that do not fill the shape
        tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"dim": [{"size": 2}]}, tensor_content=b"\0" * 4),
        # TensorFlow's Python helper cannot read packed strings
        tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape={"dim": [{"size": 1}]}, tensor_content=b"\x01a"),
    ],
)
def test_decode_fails_where_make_ndarray_fails(proto):
    with pytest.raises(Exception) as want:
        tf.make_ndarray(proto)
    with pytest.raises(type(want.value)) as got:
        tensor_codec.decode(proto)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("np_dtype", [object, *NUMERIC])
@pytest.mark.parametrize("shape", SHAPES)
def test_encode_fills_the_typed_field_as_tensor_as_proto_field(np_dtype, shape):
    values = _values(np_dtype, shape)
    dtype = tf.dtypes.as_dtype(values.dtype).as_datatype_enum
    proto = tensor_codec.encode(values, dtype)
    assert proto.dtype == dtype
    assert [d.size for d in proto.tensor_shape.dim] == list(shape)
    assert not proto.tensor_content
    field = "string_val" if np_dtype is object else tensor_codec._NUMERIC[dtype][1]
    assert list(getattr(proto, field)) == values.reshape(-1).tolist()
    # and TensorFlow reads back the same tensor
    _same(tf.make_ndarray(proto), values)


def test_every_tensor_the_contract_declares():
    """Each declared input and output, with 2 rows, round-trips both ways, like TensorFlow's own converters."""
    for signature in contract.SIGNATURES.values():
        for decl in (*signature.inputs, *signature.outputs):
            dtype = tf.dtypes.as_dtype(types_pb2.DataType.Value(decl.dtype))
            shape = tuple(2 if d < 0 else d for d in decl.shape)
            values = _values(object if dtype == tf.string else dtype.as_numpy_dtype, shape)
            proto = tensor_codec.encode(values, dtype.as_datatype_enum)
            _same(tf.make_ndarray(proto), values)
            _same(tensor_codec.decode(proto), values)
            _same(tensor_codec.decode(tf.make_tensor_proto(values, dtype=dtype)), values)


def test_encode_scores_keep_negative_infinity_and_nan():
    values = np.array([[1.5, -np.inf, np.nan]], dtype=np.float32)
    proto = tensor_codec.encode(values, types_pb2.DT_FLOAT)
    got = tf.make_ndarray(proto)
    assert got[0, 0] == 1.5 and got[0, 1] == -np.inf and np.isnan(got[0, 2])


def test_encode_strings_that_are_not_bytes_are_utf8_encoded():
    proto = tensor_codec.encode(np.array(["é", b"x"], dtype=object), types_pb2.DT_STRING)
    assert list(proto.string_val) == ["é".encode(), b"x"]


def test_encode_into_a_response_entry_matches_a_copied_message():
    from tensorflow_serving.apis import predict_pb2

    values = np.array([[0.25, 2.0]], dtype=np.float32)
    response = predict_pb2.PredictResponse()
    tensor_codec.encode_into(response.outputs["scores"], values, types_pb2.DT_FLOAT)
    assert response.outputs["scores"] == tensor_codec.encode(values, types_pb2.DT_FLOAT)


def test_encode_leaves_other_dtypes_to_make_tensor_proto():
    values = np.array([1.5, 2.5], dtype=np.float16)
    proto = tensor_codec.encode(values, types_pb2.DT_HALF)
    assert proto == tf.make_tensor_proto(values, dtype=tf.float16)
