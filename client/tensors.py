"""TensorProto encoding and decoding without TensorFlow ops.

The client sits on every request path, so it builds and reads ``TensorProto``
messages field by field (``string_val``/``int_val``/``float_val`` plus
``tensor_shape``) instead of calling ``tf.make_tensor_proto``/``tf.make_ndarray``:
those run eager TensorFlow machinery that costs tens of microseconds per call and
hides which proto fields the server actually sent. A tensor that cannot be decoded
raises ValueError; ``client.protocol`` reports it as ``MalformedResponse`` naming
the output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# Numeric dtypes the served signatures use, with the repeated field TF Serving fills
# when it does not use the packed ``tensor_content`` bytes.
_NUMERIC: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    types_pb2.DT_INT32: (np.dtype("<i4"), "int_val"),
    types_pb2.DT_INT64: (np.dtype("<i8"), "int64_val"),
}


def _shape(dims: Sequence[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


def string_vector(values: Sequence[str]) -> tensor_pb2.TensorProto:
    """A DT_STRING tensor of shape [len(values)], UTF-8 encoded."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=_shape([len(values)]),
        string_val=[v.encode("utf-8") for v in values],
    )


def string_matrix(rows: Sequence[Sequence[str]], width: int) -> tensor_pb2.TensorProto:
    """A DT_STRING tensor of shape [len(rows), width]; each row must hold exactly ``width`` strings."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=_shape([len(rows), width]))
    values = proto.string_val
    for row in rows:
        if len(row) != width:
            raise ValueError(f"string_matrix: a row of {len(row)} values in a matrix of width {width}")
        values.extend(v.encode("utf-8") for v in row)
    return proto


def float_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    """A DT_FLOAT tensor of ``values``' shape, packed little-endian in ``tensor_content``."""
    values = np.ascontiguousarray(values, dtype="<f4")
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=_shape(values.shape), tensor_content=values.tobytes()
    )


def int32_scalar(value: int) -> tensor_pb2.TensorProto:
    """A DT_INT32 tensor of shape [] (rank 0)."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32, tensor_shape=_shape([]), int_val=[int(value)]
    )


def int32_vector(values: Sequence[int]) -> tensor_pb2.TensorProto:
    """A DT_INT32 tensor of shape [len(values)]."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_INT32, tensor_shape=_shape([len(values)]), int_val=[int(v) for v in values]
    )


def tensor_shape(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise ValueError("tensor has unknown rank; a served output always has a known shape")
    return tuple(d.size for d in proto.tensor_shape.dim)


def decode_strings(proto: tensor_pb2.TensorProto) -> list[str]:
    """The flat values of a DT_STRING tensor as Python strings (row-major order)."""
    if proto.dtype != types_pb2.DT_STRING:
        raise ValueError(f"expected a DT_STRING tensor, got {types_pb2.DataType.Name(proto.dtype)}")
    return [v.decode("utf-8", errors="replace") for v in proto.string_val]


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a TensorProto into a numpy array (object array of ``str`` for DT_STRING).

    Follows TensorFlow's decoding rules: packed ``tensor_content`` wins when present;
    a single repeated value fills the whole shape (TF's compact encoding for a
    constant tensor); otherwise the repeated field must hold exactly one value per
    element.
    """
    shape = tensor_shape(proto)
    size = math.prod(shape)
    if proto.dtype == types_pb2.DT_STRING:
        flat = np.empty(len(proto.string_val), dtype=object)
        flat[:] = decode_strings(proto)
    elif proto.dtype in _NUMERIC:
        dtype, field = _NUMERIC[proto.dtype]
        if proto.tensor_content:
            # frombuffer views the proto's immutable bytes (a read-only array); callers get their own.
            flat = np.frombuffer(proto.tensor_content, dtype=dtype).copy()
        else:
            flat = np.asarray(getattr(proto, field), dtype=dtype)
    else:
        name = types_pb2.DataType.Name(proto.dtype)
        raise ValueError(f"unsupported tensor dtype {name}")
    if flat.size == 1 and size > 1:
        flat = np.repeat(flat, size)
    if flat.size != size:
        raise ValueError(
            f"tensor of shape {list(shape)} needs {size} values but the response holds {flat.size}"
        )
    return flat.reshape(shape)
