"""Validates request tensors against one SignatureDef; a subclass runs it (serving/session_bundle.py).

TF Serving checks a PredictRequest against the signature before it touches the
graph (predict_util.cc: input count, aliases, output_filter). This module does
the same, plus a dtype check naming the input; shapes are not checked, because
TF Serving hands the tensor to the graph as sent (an input of shape [1] on a
[-1,1] signature is computed, and a shape the graph cannot use fails with the
graph's own error). It also owns tensor
conversion in both directions, because the response encoding matters to
clients: TF Serving fills the typed repeated fields (``float_val``,
``string_val``...) rather than ``tensor_content``, and client code written
against it often reads those fields directly.

Decoding is guarded by a size cap: a TensorProto declares its shape separately
from its values, and decoding fills missing values by repeating the last one, so
a few bytes declaring a dimension of 3e9 would otherwise allocate gigabytes.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving import tensor_codec
from serving.errors import invalid_argument

DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
# Most elements one request tensor may declare: 40 MB of floats, far above this
# model's requests (a few hundred ids) and far below what would hurt the host.
MAX_INPUT_ELEMENTS = 10_000_000


def dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)


def shape_str(shape: Iterable[int | None] | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ",".join("-1" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorSpecInfo:
    """The parts of a SignatureDef TensorInfo a request is checked against."""

    alias: str
    dtype: int  # types_pb2.DataType
    shape: tuple[int | None, ...] | None  # None: unknown rank; None dims: any size

    @classmethod
    def from_tensor_info(cls, alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpecInfo:
        if info.tensor_shape.unknown_rank:
            shape = None
        else:
            shape = tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
        return cls(alias, info.dtype, shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return tf.dtypes.as_dtype(self.dtype).as_numpy_dtype


def _sorted_join(names: Iterable[str]) -> str:
    # TF Serving prints std::set<string>, i.e. sorted, comma-joined.
    return ",".join(sorted(names))


def array_to_proto(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """Encodes like TF Serving's Tensor::AsProtoField: typed repeated fields (serving.tensor_codec)."""
    return tensor_codec.encode(np.asarray(array), dtype)


def _check_declared_size(alias: str, proto: tensor_pb2.TensorProto) -> None:
    """Rejects a tensor declaring more than MAX_INPUT_ELEMENTS before anything is allocated for it."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid_argument(f"tensor parsing error: {alias} (negative dimension in shape {shape_str(dims)})")
    count = math.prod(dims)
    if count > MAX_INPUT_ELEMENTS:
        raise invalid_argument(
            f'input "{alias}" declares shape {shape_str(dims)} ({count} elements); '
            f"this server accepts at most {MAX_INPUT_ELEMENTS} elements per input tensor"
        )


class SignatureRunner(abc.ABC):
    """One signature of one loaded version: checks inputs, runs (in a subclass), picks and encodes outputs."""

    def __init__(self, name: str, signature_def: meta_graph_pb2.SignatureDef):
        self.name = name
        self.inputs = {a: TensorSpecInfo.from_tensor_info(a, i) for a, i in signature_def.inputs.items()}
        self.outputs = {a: TensorSpecInfo.from_tensor_info(a, i) for a, i in signature_def.outputs.items()}

    # -- request checks -----------------------------------------------------

    def check_input_names(self, names: Iterable[str]) -> None:
        """predict_util.cc VerifyRequestInputsSize, then the alias check."""
        sent = set(names)
        expected = set(self.inputs)
        if len(sent) != len(expected):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{_sorted_join(sent)}}}) != len({{{_sorted_join(expected)}}}). "
                f"Sent extra: {{{_sorted_join(sent - expected)}}}. "
                f"Missing but required: {{{_sorted_join(expected - sent)}}}."
            )
        if sent != expected:
            raise invalid_argument(
                f"input tensor alias not found in signature: {min(sent - expected)}. "
                f"Inputs expected to be in the set {{{_sorted_join(expected)}}}."
            )

    def arrays_from_protos(self, protos: Mapping[str, tensor_pb2.TensorProto]) -> dict[str, np.ndarray]:
        """Checks names and dtypes, then decodes; shapes go to the graph as sent."""
        self.check_input_names(protos.keys())
        arrays = {}
        for alias in sorted(protos):
            proto = protos[alias]
            spec = self.inputs[alias]
            if proto.dtype != spec.dtype:
                raise invalid_argument(
                    f'input "{alias}" has dtype {dtype_name(proto.dtype)} '
                    f"but the signature expects {dtype_name(spec.dtype)}"
                )
            _check_declared_size(alias, proto)
            try:
                arrays[alias] = tensor_codec.decode(proto)
            except Exception as exc:  # malformed proto: wrong value count, bad content
                raise invalid_argument(f"tensor parsing error: {alias} ({exc})") from exc
        return arrays

    def resolve_output_filter(self, output_filter: Iterable[str]) -> list[str]:
        """predict_util.cc PreProcessPrediction: unknown or repeated alias -> INVALID_ARGUMENT."""
        chosen: list[str] = []
        for alias in output_filter:
            if alias not in self.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} "
                    f"Outputs expected to be in the set {{{_sorted_join(self.outputs)}}}."
                )
            if alias in chosen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            chosen.append(alias)
        return chosen or sorted(self.outputs)

    # -- execution ------------------------------------------------------------

    @abc.abstractmethod
    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature on already-validated arrays; every output, by alias."""

    def encode_outputs(self, outputs: Mapping[str, np.ndarray]) -> dict[str, tensor_pb2.TensorProto]:
        return {alias: array_to_proto(np.asarray(value), self.outputs[alias].dtype) for alias, value in outputs.items()}

    def encode_outputs_into(self, target, outputs: Mapping[str, np.ndarray]) -> None:
        """Like encode_outputs, written straight into a response's ``outputs`` map (no message copy)."""
        for alias, value in outputs.items():
            tensor_codec.encode_into(target[alias], np.asarray(value), self.outputs[alias].dtype)
