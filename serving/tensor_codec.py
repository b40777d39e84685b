"""TensorProto <-> numpy for the server's request path, without TensorFlow's Python helpers.

Every Predict decodes its inputs and encodes its outputs. ``tf.make_ndarray``
and ``tf.make_tensor_proto`` are general (every dtype, every spelling of a
value) and cost tens of microseconds per tensor in Python, under the GIL, which
is what bounds this server's throughput. The dtypes this project's signatures
use (string, float, int32, and the other plain numeric types) have a direct
spelling: ``string_val`` / the typed repeated field / packed ``tensor_content``
bytes. This module decodes and encodes those directly and hands anything else to
TensorFlow's own functions, so a value either decodes exactly as
``tf.make_ndarray`` would or takes the very same path (and error) it always did.

Encoding follows TF Serving's ``Tensor::AsProtoField``: the typed repeated field
(``float_val``, ``string_val``...), never ``tensor_content``, because client code
written against TF Serving often reads those fields directly.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# dtype -> (numpy dtype, the repeated field TF Serving fills / make_ndarray reads).
_NUMERIC: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
}
_OBJECT = np.dtype(object)


def decode(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """``tf.make_ndarray(proto)``: the same array (dtype, shape, values), faster for the common dtypes.

    Values shorter than the shape are filled with the last value (or zeros when
    there are none), as TensorFlow does; any other mismatch, and every dtype not
    handled here, goes to ``tf.make_ndarray`` itself so its errors stay the same.
    """
    shape = [d.size for d in proto.tensor_shape.dim]
    count = math.prod(shape)
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        if proto.tensor_content:
            return tf.make_ndarray(proto)
        values = proto.string_val
        got = len(values)
        if got == count:
            array = np.empty(count, dtype=_OBJECT)
            if count:
                array[:] = list(values)
            return array.reshape(shape)
        return tf.make_ndarray(proto)
    spec = _NUMERIC.get(dtype)
    if spec is None:
        return tf.make_ndarray(proto)
    np_dtype, field = spec
    content = proto.tensor_content
    if content:
        if len(content) != count * np_dtype.itemsize:
            return tf.make_ndarray(proto)  # its reshape error names the sizes
        return np.frombuffer(content, dtype=np_dtype).copy().reshape(shape)
    values = getattr(proto, field)
    got = len(values)
    if got == count:
        return np.array(values, dtype=np_dtype).reshape(shape)
    return tf.make_ndarray(proto)


def encode_into(proto: tensor_pb2.TensorProto, array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """Fills an empty ``proto`` (e.g. a response's ``outputs[alias]``) the way ``Tensor::AsProtoField`` does.

    Writing into the response's own map entry avoids building a second message
    and copying it. ``dtype`` is the signature's declared output dtype.
    """
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    if dtype == types_pb2.DT_STRING:
        flat = array.reshape(-1).tolist()
        if flat and not all(type(v) is bytes for v in flat):
            flat = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
        proto.string_val.extend(flat)
        return proto
    spec = _NUMERIC.get(dtype)
    if spec is None:
        proto.Clear()
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=tf.dtypes.as_dtype(dtype)))
        return proto
    np_dtype, field = spec
    getattr(proto, field).extend(np.asarray(array, dtype=np_dtype).reshape(-1).tolist())
    return proto


def encode(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """A new TensorProto holding ``array`` as ``dtype``'s typed repeated field."""
    return encode_into(tensor_pb2.TensorProto(), array, dtype)
