"""The thin client's messages are TF Serving's: same bytes on the wire, same answers decoded.

The client's classes come from client/tfserving_protos.binpb (client/messages.py); these
tests hold them to tensorflow-serving-api's own generated classes (installed in the
repository's environment, never in the thin wheel's): requests the client builds serialize
to exactly the bytes of the same request built with TF Serving's classes, for every
signature ``client/contract.py`` declares, and responses built with TF Serving's classes
(numeric outputs packed by ``tf.make_tensor_proto``, as the servers do) decode as meant.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from client import contract, describe_protos, messages, protocol
from client.contract import (
    K,
    MODEL_CARD,
    MODEL_CARD_REQUEST,
    MODEL_CARD_SIGNATURE,
    MODEL_NAME,
    MOVIE_ID,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RATED_MOVIE_IDS,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_EMBEDDING,
    MOVIE_EMBEDDING,
    USER_ID,
)

VERSION = 7


def test_committed_descriptors_match_the_pinned_tensorflow_serving_api():
    assert describe_protos.OUT.read_bytes() == describe_protos.describe(), (
        "client/tfserving_protos.binpb is stale: run python -m client.describe_protos"
    )


def test_method_paths_are_tf_servings():
    from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

    for method, service in (
        (messages.PREDICT, prediction_service_pb2), (messages.GET_MODEL_METADATA, prediction_service_pb2),
        (messages.GET_MODEL_STATUS, model_service_pb2),
    ):  # fmt: skip
        _, service_name, name = method.path.split("/")
        described = service.DESCRIPTOR.services_by_name[service_name.rsplit(".", 1)[1]].methods_by_name[name]
        assert (method.request.DESCRIPTOR.full_name, method.response.DESCRIPTOR.full_name) == (
            described.input_type.full_name, described.output_type.full_name,
        )  # fmt: skip


# --- requests: the same bytes ----------------------------------------------------------------


def _tf_tensor(dtype: str, values) -> tensor_pb2.TensorProto:
    """TF Serving's TensorProto, field by field, in the fields TF Serving itself fills."""
    array = np.asarray(values, dtype=object if dtype == "DT_STRING" else contract.NUMPY_DTYPES[dtype])
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DataType.Value(dtype),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        ),
    )
    flat = array.reshape(-1).tolist()
    if dtype == "DT_STRING":
        proto.string_val.extend(v.encode() for v in flat)
    elif dtype in ("DT_FLOAT", "DT_DOUBLE"):
        proto.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    else:
        getattr(proto, "int_val" if dtype == "DT_INT32" else "int64_val").extend(flat)
    return proto


def _tf_spec(version: int | None, signature: str | None = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=MODEL_NAME)
    if version is not None:
        spec.version.value = version
    if signature is not None:
        spec.signature_name = signature
    return spec


def _tf_predict(signature: str, inputs: dict, output_filter=(), version=VERSION) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=_tf_spec(version, signature), output_filter=list(output_filter))
    for decl in contract.signature(signature).inputs:
        request.inputs[decl.name].CopyFrom(_tf_tensor(decl.dtype, inputs[decl.name]))
    return request


# Each signature: (the thin client's request, the same request built with TF Serving's classes).
REQUESTS = {
    PREDICT_SIGNATURE: lambda version: (
        protocol.predict_request(MODEL_NAME, version, ["42", "7"], ["50", "172"]),
        _tf_predict(PREDICT_SIGNATURE, {USER_ID: ["42", "7"], MOVIE_ID: ["50", "172"]}, [PREDICTED_RATING], version),
    ),
    RECOMMEND_SIGNATURE: lambda version: (
        protocol.recommend_request(MODEL_NAME, version, ["42", "7", "1"], 10),
        _tf_predict(RECOMMEND_SIGNATURE, {USER_ID: ["42", "7", "1"], K: [10, 10, 10]}, version=version),
    ),
    RECOMMEND_FROM_RATINGS_SIGNATURE: lambda version: (
        protocol.recommend_from_ratings_request(
            MODEL_NAME, version, ["", "42"], [[("50", 5.0), ("172", 4.5)], [("1", 0.5)]], 5
        ),
        _tf_predict(
            RECOMMEND_FROM_RATINGS_SIGNATURE,
            {USER_ID: ["", "42"], K: [5, 5], RATED_MOVIE_IDS: [["", "50", "172"], ["1", "", ""]],
             RATINGS: [[0.0, 5.0, 4.5], [0.5, 0.0, 0.0]]},
            version=version,
        ),  # fmt: skip
    ),
    MODEL_CARD_SIGNATURE: lambda version: (
        protocol.model_card_request(MODEL_NAME, version),
        _tf_predict(MODEL_CARD_SIGNATURE, {MODEL_CARD_REQUEST: [0]}, version=version),
    ),
}


def test_every_signature_has_a_request_here():
    assert set(REQUESTS) == set(contract.SIGNATURES)


@pytest.mark.parametrize("version", [None, VERSION])
@pytest.mark.parametrize("signature", sorted(REQUESTS))
def test_predict_requests_are_byte_identical(signature, version):
    thin, reference = REQUESTS[signature](version)
    assert type(thin) is messages.PredictRequest and type(reference) is predict_pb2.PredictRequest
    assert thin.SerializeToString() == reference.SerializeToString()
    assert thin.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)
    assert predict_pb2.PredictRequest.FromString(thin.SerializeToString()) == reference


@pytest.mark.parametrize("version", [None, VERSION])
def test_metadata_and_status_requests_are_byte_identical(version):
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=_tf_spec(version), metadata_field=["signature_def"]
    )
    assert protocol.metadata_request(MODEL_NAME, version).SerializeToString() == metadata.SerializeToString()
    status = get_model_status_pb2.GetModelStatusRequest(model_spec=_tf_spec(version))
    assert protocol.status_request(MODEL_NAME, version).SerializeToString() == status.SerializeToString()


# --- responses: TF Serving's bytes, decoded by the thin client -----------------------------


def _tf_response(signature: str, outputs: dict) -> bytes:
    import tensorflow as tf

    response = predict_pb2.PredictResponse(model_spec=_tf_spec(VERSION, signature))
    for decl in contract.signature(signature).outputs:
        dtype = tf.dtypes.as_dtype(types_pb2.DataType.Value(decl.dtype))
        response.outputs[decl.name].CopyFrom(tf.make_tensor_proto(outputs[decl.name], dtype=dtype))
    return response.SerializeToString()


def _parse(cls, data: bytes):
    return cls.FromString(data)


RECOMMENDATIONS = {
    MOVIE_IDS: [["50", "172", ""], ["1", "2", "3"]],
    MOVIE_TITLES: [["Star Wars (1977)", "Empire", ""], ["Toy Story (1995)", "GoldenEye", "Four Rooms"]],
    SCORES: np.array([[4.5, 3.25, -np.inf], [2.0, 1.5, 1.0]], np.float32),
}


def test_responses_of_every_signature_decode():
    decoded = {}
    data = _tf_response(PREDICT_SIGNATURE, {
        PREDICTED_RATING: np.array([3.5, 4.25], np.float32),
        USER_EMBEDDING: np.ones((2, 4), np.float32), MOVIE_EMBEDDING: np.zeros((2, 4), np.float32),
    })  # fmt: skip
    decoded[PREDICT_SIGNATURE] = protocol.parse_predict(_parse(messages.PredictResponse, data), 2)
    assert decoded[PREDICT_SIGNATURE].tolist() == [3.5, 4.25] and decoded[PREDICT_SIGNATURE].dtype == np.float32
    for signature in (RECOMMEND_SIGNATURE, RECOMMEND_FROM_RATINGS_SIGNATURE):
        data = _tf_response(signature, RECOMMENDATIONS)
        rows = protocol.parse_recommend(_parse(messages.PredictResponse, data), 2, signature)
        decoded[signature] = rows
        assert [[(r.movie_id, r.title, r.score) for r in row] for row in rows] == [
            [("50", "Star Wars (1977)", 4.5), ("172", "Empire", 3.25)],
            [("1", "Toy Story (1995)", 2.0), ("2", "GoldenEye", 1.5), ("3", "Four Rooms", 1.0)],
        ]
    card = {"model_name": MODEL_NAME, "max_k": 100, "signatures": sorted(contract.SIGNATURES)}
    data = _tf_response(MODEL_CARD_SIGNATURE, {MODEL_CARD: [json.dumps(card)]})
    decoded[MODEL_CARD_SIGNATURE] = protocol.parse_model_card(_parse(messages.PredictResponse, data))
    assert decoded[MODEL_CARD_SIGNATURE] == card
    assert set(decoded) == set(contract.SIGNATURES)


def test_metadata_and_status_responses_decode():
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, declared in contract.SIGNATURES.items():
        sig = signatures.signature_def[name]
        sig.method_name = contract.PREDICT_METHOD
        for side, tensors in ((sig.inputs, declared.inputs), (sig.outputs, declared.outputs)):
            for t in tensors:
                info = meta_graph_pb2.TensorInfo(name=f"{t.name}:0", dtype=types_pb2.DataType.Value(t.dtype))
                for d in t.shape:
                    info.tensor_shape.dim.add(size=d)
                side[t.name].CopyFrom(info)
    signatures.signature_def["__saved_model_init_op"].method_name = ""
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=_tf_spec(VERSION))
    response.metadata["signature_def"].Pack(signatures)
    meta = protocol.parse_metadata(messages.GetModelMetadataResponse.FromString(response.SerializeToString()))
    assert meta.model == MODEL_NAME and meta.version == VERSION and set(meta.signatures) == set(contract.SIGNATURES)
    for name, declared in contract.SIGNATURES.items():
        for t in declared.inputs:
            assert meta.signatures[name].inputs[t.name].dtype == t.dtype
            assert meta.signatures[name].inputs[t.name].shape == t.shape
    state = get_model_status_pb2.ModelVersionStatus
    status = get_model_status_pb2.GetModelStatusResponse(model_version_status=[
        state(version=2, state=state.LOADING), state(version=1, state=state.AVAILABLE),
    ])  # fmt: skip
    status.model_version_status[0].status.error_code = 5
    status.model_version_status[0].status.error_message = "not yet"
    versions = protocol.parse_status(messages.GetModelStatusResponse.FromString(status.SerializeToString()))
    assert [(v.version, v.state, v.error_code, v.error_message) for v in versions] == [
        (1, "AVAILABLE", 0, ""), (2, "LOADING", 5, "not yet"),
    ]  # fmt: skip
