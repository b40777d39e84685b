"""TF Serving's and TensorFlow's messages, without TensorFlow.

The classes below are made at import from ``tfserving_protos.binpb``: the serialized
``FileDescriptorSet`` that ``python -m client.describe_protos`` extracts at build time
from the pinned tensorflow-serving-api (its two services and every proto they import).
They are loaded into a private ``DescriptorPool`` (protobuf's default pool, which
other libraries share, is left alone) and turned into classes by ``message_factory``:
the same wire format as tensorflow-serving-api's own classes (client/messages_test.py
checks byte for byte), without importing the ``tensorflow`` package.

The RPCs are called through generic gRPC method handles (``channel.unary_unary`` with
the method's full path and these classes' serializers), taken from the services'
descriptors, instead of TF Serving's generated stubs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

DESCRIPTORS = "tfserving_protos.binpb"
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
SERVICES = (PREDICTION_SERVICE, MODEL_SERVICE)


def _pool() -> descriptor_pool.DescriptorPool:
    data = resources.files(__package__).joinpath(DESCRIPTORS).read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:  # dependencies first
        pool.Add(file)
    return pool


POOL = _pool()


def message_class(full_name: str) -> Any:
    """The class of message ``full_name`` (e.g. ``tensorflow.TensorProto``)."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


@dataclass(frozen=True)
class Method:
    """One unary RPC: its path on the wire and its request and response classes."""

    path: str  # "/tensorflow.serving.PredictionService/Predict"
    request: Any
    response: Any

    def handle(self, channel: Any) -> Any:
        """A callable for ``channel`` (sync or ``grpc.aio``): ``handle(request, timeout=...)``."""
        return channel.unary_unary(
            self.path, request_serializer=self.request.SerializeToString, response_deserializer=self.response.FromString
        )


def _method(service: str, name: str) -> Method:
    descriptor = POOL.FindServiceByName(service).methods_by_name[name]
    return Method(
        path=f"/{service}/{name}",
        request=message_factory.GetMessageClass(descriptor.input_type),
        response=message_factory.GetMessageClass(descriptor.output_type),
    )


PREDICT = _method(PREDICTION_SERVICE, "Predict")
GET_MODEL_METADATA = _method(PREDICTION_SERVICE, "GetModelMetadata")
GET_MODEL_STATUS = _method(MODEL_SERVICE, "GetModelStatus")

PredictRequest = PREDICT.request
PredictResponse = PREDICT.response
GetModelMetadataRequest = GET_MODEL_METADATA.request
GetModelMetadataResponse = GET_MODEL_METADATA.response
GetModelStatusRequest = GET_MODEL_STATUS.request
GetModelStatusResponse = GET_MODEL_STATUS.response
ModelSpec = message_class("tensorflow.serving.ModelSpec")
SignatureDefMap = message_class("tensorflow.serving.SignatureDefMap")
ModelVersionStatus = message_class("tensorflow.serving.ModelVersionStatus")
TensorProto = message_class("tensorflow.TensorProto")
TensorShapeProto = message_class("tensorflow.TensorShapeProto")
TensorInfo = message_class("tensorflow.TensorInfo")

DataType = EnumTypeWrapper(POOL.FindEnumTypeByName("tensorflow.DataType"))
"""``DataType.Value("DT_FLOAT")`` -> 1, ``DataType.Name(1)`` -> "DT_FLOAT" (as types_pb2.DataType)."""
VersionState = EnumTypeWrapper(POOL.FindEnumTypeByName("tensorflow.serving.ModelVersionStatus.State"))
