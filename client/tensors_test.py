"""TensorProto encoding/decoding matches TensorFlow's own, field by field."""

import numpy as np
import pytest
from client.messages import DataType, PredictResponse, TensorProto

from client.tensors import check_declared, decode_strings, encode, to_numpy
from common.contract import TensorDecl

STRINGS = TensorDecl("ids", "DT_STRING", (-1,))
STRING_MATRIX = TensorDecl("ids", "DT_STRING", (-1, -1))
SCALAR = TensorDecl("k", "DT_INT32", ())
FLOATS = TensorDecl("x", "DT_FLOAT", (-1, -1))


def test_string_vector_round_trip_with_unicode():
    proto = encode(STRINGS, ["42", "Amélie (2001)"])
    assert proto.dtype == DataType.DT_STRING
    assert [d.size for d in proto.tensor_shape.dim] == [2]
    assert to_numpy(proto).tolist() == ["42", "Amélie (2001)"]


def test_int32_scalar_is_rank_zero():
    proto = encode(SCALAR, 10)
    assert proto.dtype == DataType.DT_INT32
    assert len(proto.tensor_shape.dim) == 0
    assert to_numpy(proto).shape == () and int(to_numpy(proto)) == 10


def test_matches_tensorflow_make_tensor_proto():
    import tensorflow as tf

    for values in (np.array([[1.5, -2.0], [3.25, 4.0]], np.float32), np.array([1, 2, 3], np.int32)):
        proto = tf.make_tensor_proto(values)  # uses tensor_content
        decoded = to_numpy(proto)
        np.testing.assert_array_equal(decoded, values)
        assert decoded.dtype == values.dtype and decoded.flags.writeable
    strings = tf.make_tensor_proto(np.array([[b"a", b"b"], [b"c", b"d"]]))
    assert to_numpy(strings).tolist() == [["a", "b"], ["c", "d"]]


def test_float_val_and_single_value_fill():
    proto = TensorProto(dtype=DataType.DT_FLOAT, float_val=[0.5, 1.5])
    proto.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(to_numpy(proto), np.array([0.5, 1.5], np.float32))
    filled = TensorProto(dtype=DataType.DT_FLOAT, float_val=[7.0])
    filled.tensor_shape.dim.add(size=3)
    np.testing.assert_array_equal(to_numpy(filled), [7.0, 7.0, 7.0])


def test_empty_tensor():
    proto = TensorProto(dtype=DataType.DT_FLOAT)
    proto.tensor_shape.dim.add(size=0)
    assert to_numpy(proto).shape == (0,)


def test_wrong_value_count_names_shape():
    proto = TensorProto(dtype=DataType.DT_FLOAT, float_val=[1.0, 2.0])
    proto.tensor_shape.dim.add(size=3)
    with pytest.raises(ValueError, match=r"shape \[3\] needs 3 values but the response holds 2"):
        to_numpy(proto)


def test_unsupported_dtype_and_decode_strings_type_check():
    with pytest.raises(ValueError, match="DT_BOOL"):
        to_numpy(TensorProto(dtype=DataType.DT_BOOL, bool_val=[True]))
    with pytest.raises(ValueError, match="expected a DT_STRING"):
        decode_strings(encode(SCALAR, 1))


def test_string_matrix_and_float_tensor_match_tensorflow():
    import tensorflow as tf

    strings = encode(STRING_MATRIX, [["50", "Amélie"], ["", "7"]])
    assert [d.size for d in strings.tensor_shape.dim] == [2, 2]
    assert tf.make_ndarray(strings).tolist() == [[b"50", "Amélie".encode()], [b"", b"7"]]
    assert to_numpy(encode(STRING_MATRIX, [])).shape == (0, 0)
    with pytest.raises(ValueError, match="ids: rows of different shapes"):
        encode(STRING_MATRIX, [["a"], ["b", "c"]])
    with pytest.raises(ValueError, match="ids: expected strings"):
        encode(STRINGS, ["a", 1])
    values = np.array([[5.0, 0.5], [4.25, 0.0]])  # float64 in, DT_FLOAT out
    floats = encode(FLOATS, values)
    assert floats.dtype == DataType.DT_FLOAT and floats.tensor_content  # packed, as TF Serving sends floats
    np.testing.assert_array_equal(tf.make_ndarray(floats), values.astype(np.float32))
    ints = encode(TensorDecl("k", "DT_INT32", (-1,)), [3, 4])
    assert list(ints.int_val) == [3, 4] and tf.make_ndarray(ints).dtype == np.int32


def test_encode_and_check_declared_follow_the_declaration():
    import tensorflow as tf

    ints = encode(TensorDecl("k", "DT_INT64", (-1,)), [3, 4])
    assert ints.dtype == DataType.DT_INT64 and list(ints.int64_val) == [3, 4]
    doubles = encode(TensorDecl("x", "DT_DOUBLE", (-1, 2)), [[0.5, 1.0]])
    assert doubles.dtype == DataType.DT_DOUBLE
    np.testing.assert_array_equal(tf.make_ndarray(doubles), np.array([[0.5, 1.0]]))
    assert check_declared(TensorDecl("x", "DT_DOUBLE", (-1, 2)), doubles) == (1, 2)
    with pytest.raises(ValueError, match=r"k: expected rank 1 .* got shape \[\]"):
        encode(TensorDecl("k", "DT_INT32", (-1,)), 5)
    with pytest.raises(ValueError, match=r"x: shape \[1, 3\] does not fit"):
        encode(TensorDecl("x", "DT_FLOAT", (-1, 2)), [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"expected DT_INT32 .* got DT_INT64"):
        check_declared(TensorDecl("k", "DT_INT32", (-1,)), ints)
    with pytest.raises(ValueError, match=r"expected shape \[-1, 2\] .* got \[2\]"):
        check_declared(TensorDecl("x", "DT_INT64", (-1, 2)), ints)
