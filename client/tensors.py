"""TensorProto encoding and decoding without TensorFlow ops.

The client sits on every request path, so it builds and reads ``TensorProto``
messages field by field (``string_val``/``int_val``/``float_val`` plus
``tensor_shape``) instead of calling ``tf.make_tensor_proto``/``tf.make_ndarray``:
those run eager TensorFlow machinery that costs tens of microseconds per call and
hides which proto fields the server actually sent. A tensor that cannot be decoded
raises ValueError; ``client.protocol`` reports it as ``MalformedResponse`` naming
the output.

``encode`` and ``check_declared`` take a ``contract.TensorDecl``: requests are
built in the dtype the contract declares and responses are held to it, so a change
of a signature's dtype or rank in ``client/contract.py`` reaches the client without
editing it. The message classes come from ``client/messages.py`` (no TensorFlow).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from .contract import TensorDecl, shape_matches
from .messages import DataType, TensorProto, TensorShapeProto

# Numeric dtypes the served signatures use, with the repeated field TF Serving fills
# when it does not use the packed ``tensor_content`` bytes.
_NUMERIC: dict[int, tuple[np.dtype, str]] = {
    DataType.Value("DT_FLOAT"): (np.dtype("<f4"), "float_val"),
    DataType.Value("DT_DOUBLE"): (np.dtype("<f8"), "double_val"),
    DataType.Value("DT_INT32"): (np.dtype("<i4"), "int_val"),
    DataType.Value("DT_INT64"): (np.dtype("<i8"), "int64_val"),
}


_DT_STRING = DataType.Value("DT_STRING")


def _shape(dims: Sequence[int]) -> TensorShapeProto:
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in dims])


def _strings(values: object, rank: int, name: str) -> tuple[list[str], tuple[int, ...]]:
    """Nested sequences of str, ``rank`` deep -> (row-major values, shape); rows must be rectangular."""
    if rank == 0:
        if not isinstance(values, str):
            raise ValueError(f"{name}: expected a string, got {type(values).__name__}")
        return [values], ()
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{name}: expected a rank-{rank} sequence of strings, got {type(values).__name__}")
    if rank == 1:
        flat = list(values)
        if not all(isinstance(v, str) for v in flat):
            raise ValueError(f"{name}: expected strings, got {sorted({type(v).__name__ for v in flat})}")
        return flat, (len(flat),)
    parts = [_strings(row, rank - 1, name) for row in values]
    inner = {shape for _, shape in parts}
    if len(inner) > 1:
        raise ValueError(f"{name}: rows of different shapes {sorted(inner)}; pad them to one width")
    shape = inner.pop() if inner else (0,) * (rank - 1)
    return [v for flat, _ in parts for v in flat], (len(parts), *shape)


def encode(decl: TensorDecl, values: object) -> TensorProto:
    """``values`` as the tensor ``decl`` declares: its dtype, its rank (ValueError naming it otherwise).

    The wire fields are the ones TF Serving itself fills: ``string_val`` for strings,
    ``int_val``/``int64_val`` for integers, packed ``tensor_content`` for floats.
    """
    dtype = DataType.Value(decl.dtype)
    if decl.is_string:
        flat, shape = _strings(values, decl.rank, decl.name)
        proto = TensorProto(dtype=dtype, tensor_shape=_shape(shape), string_val=[v.encode("utf-8") for v in flat])
    else:
        array = np.asarray(values, dtype=_NUMERIC[dtype][0])  # tobytes() is row-major whatever the layout
        if array.ndim != decl.rank:
            raise ValueError(f"{decl.name}: expected rank {decl.rank} ({decl}), got shape {list(array.shape)}")
        shape = array.shape
        proto = TensorProto(dtype=dtype, tensor_shape=_shape(shape))
        if array.dtype.kind == "f":
            proto.tensor_content = array.tobytes()
        else:
            getattr(proto, _NUMERIC[dtype][1]).extend(array.reshape(-1).tolist())
    if not shape_matches(decl.shape, shape):
        raise ValueError(f"{decl.name}: shape {list(shape)} does not fit the declared {decl}")
    return proto


def check_declared(decl: TensorDecl, proto: TensorProto) -> tuple[int, ...]:
    """The shape of ``proto`` after checking it is the tensor ``decl`` declares (dtype, rank, fixed sizes)."""
    if proto.dtype != DataType.Value(decl.dtype):
        raise ValueError(f"expected {decl.dtype} (contract: {decl}), got {DataType.Name(proto.dtype)}")
    shape = tensor_shape(proto)
    if not shape_matches(decl.shape, shape):
        raise ValueError(f"expected shape {list(decl.shape)} (contract: {decl}), got {list(shape)}")
    return shape


def tensor_shape(proto: TensorProto) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise ValueError("tensor has unknown rank; a served output always has a known shape")
    return tuple(d.size for d in proto.tensor_shape.dim)


def decode_strings(proto: TensorProto) -> list[str]:
    """The flat values of a DT_STRING tensor as Python strings (row-major order)."""
    if proto.dtype != _DT_STRING:
        raise ValueError(f"expected a DT_STRING tensor, got {DataType.Name(proto.dtype)}")
    return [v.decode("utf-8", errors="replace") for v in proto.string_val]


def to_numpy(proto: TensorProto) -> np.ndarray:
    """Decode a TensorProto into a numpy array (object array of ``str`` for DT_STRING).

    Follows TensorFlow's decoding rules: packed ``tensor_content`` wins when present;
    a single repeated value fills the whole shape (TF's compact encoding for a
    constant tensor); otherwise the repeated field must hold exactly one value per
    element.
    """
    shape = tensor_shape(proto)
    size = math.prod(shape)
    if proto.dtype == _DT_STRING:
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
        name = DataType.Name(proto.dtype)
        raise ValueError(f"unsupported tensor dtype {name}")
    if flat.size == 1 and size > 1:
        flat = np.repeat(flat, size)
    if flat.size != size:
        raise ValueError(
            f"tensor of shape {list(shape)} needs {size} values but the response holds {flat.size}"
        )
    return flat.reshape(shape)
