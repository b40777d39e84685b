"""An in-process fake of TF Serving's gRPC API for tests that need a misbehaving server.

The real local server (``serving.testing``) answers correctly; tests of retries,
status-code mapping and the load test's response checks need a server that
fails on cue (UNAVAILABLE twice, then OK), starts late, returns unsorted
scores or leaves an output out. This fake speaks the same protos with canned,
deterministic answers.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common.contract import (
    K,
    MODEL_CARD,
    MODEL_CARD_SIGNATURE,
    MODEL_NAME,
    MOVIE_ID,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_METHOD,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_ID,
)

from client.tensors import string_vector, to_numpy

FAKE_VERSION = 1
FAKE_CARD = {
    "model_name": MODEL_NAME,
    "version": FAKE_VERSION,
    "max_k": 100,
    "catalogue_size": 120,
    "vocabulary": {"user_ids": [str(u) for u in range(1, 31)], "movie_ids": [str(m) for m in range(1, 121)]},
}


@dataclass
class FakeBehaviour:
    """What the fake does; tests mutate it between calls."""

    fail_with: list[grpc.StatusCode] = field(default_factory=list)  # popped, one per call, before answering
    unsorted_scores: bool = False  # recommend returns scores ascending (a broken ranking)
    drop_outputs: set[str] = field(default_factory=set)  # Predict answers without these outputs (a broken export)
    calls: int = 0


def _float_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in values.shape]
        ),
        tensor_content=np.ascontiguousarray(values, dtype="<f4").tobytes(),
    )


def _string_matrix(rows: list[list[str]]) -> tensor_pb2.TensorProto:
    proto = string_vector([v for row in rows for v in row])
    proto.tensor_shape.ClearField("dim")
    proto.tensor_shape.dim.add(size=len(rows))
    proto.tensor_shape.dim.add(size=len(rows[0]) if rows else 0)
    return proto


def _signature_map() -> get_model_metadata_pb2.SignatureDefMap:
    def info(dtype: int, dims: list[int]) -> meta_graph_pb2.TensorInfo:
        t = meta_graph_pb2.TensorInfo(dtype=dtype)
        for d in dims:
            t.tensor_shape.dim.add(size=d)
        return t

    sigs = get_model_metadata_pb2.SignatureDefMap()
    p = sigs.signature_def[PREDICT_SIGNATURE]
    p.method_name = PREDICT_METHOD
    p.inputs[USER_ID].CopyFrom(info(types_pb2.DT_STRING, [-1]))
    p.inputs[MOVIE_ID].CopyFrom(info(types_pb2.DT_STRING, [-1]))
    p.outputs[PREDICTED_RATING].CopyFrom(info(types_pb2.DT_FLOAT, [-1]))
    r = sigs.signature_def[RECOMMEND_SIGNATURE]
    r.method_name = PREDICT_METHOD
    r.inputs[USER_ID].CopyFrom(info(types_pb2.DT_STRING, [-1]))
    r.inputs[K].CopyFrom(info(types_pb2.DT_INT32, []))
    for key, dtype in ((MOVIE_IDS, types_pb2.DT_STRING), (MOVIE_TITLES, types_pb2.DT_STRING), (SCORES, types_pb2.DT_FLOAT)):
        r.outputs[key].CopyFrom(info(dtype, [-1, -1]))
    return sigs


class FakeServing(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, behaviour: FakeBehaviour) -> None:
        self.behaviour = behaviour
        self._lock = threading.Lock()

    def _maybe_fail(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.behaviour.calls += 1
            code = self.behaviour.fail_with.pop(0) if self.behaviour.fail_with else None
        if code is not None:
            context.abort(code, f"fake failure {code.name}")

    def _check_model(self, spec, context: grpc.ServicerContext) -> None:
        if spec.name != MODEL_NAME or (spec.HasField("version") and spec.version.value != FAKE_VERSION):
            version = spec.version.value if spec.HasField("version") else "Latest"
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {spec.name} {version}")

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        self._maybe_fail(context)
        self._check_model(request.model_spec, context)
        signature = request.model_spec.signature_name or PREDICT_SIGNATURE
        response = predict_pb2.PredictResponse()
        response.model_spec.name = MODEL_NAME
        response.model_spec.version.value = FAKE_VERSION
        response.model_spec.signature_name = signature
        if signature == PREDICT_SIGNATURE:
            users = to_numpy(request.inputs[USER_ID])
            movies = to_numpy(request.inputs[MOVIE_ID])
            if users.shape != movies.shape:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id and movie_id lengths differ")
            ratings = np.array([3.0 + (int(u) % 7 + int(m) % 5) / 10 for u, m in zip(users, movies)], np.float32)
            response.outputs[PREDICTED_RATING].CopyFrom(_float_tensor(ratings))
        elif signature == RECOMMEND_SIGNATURE:
            users = to_numpy(request.inputs[USER_ID])
            k = int(to_numpy(request.inputs[K]))
            if k <= 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"k must be positive, got {k}")
            k = min(k, FAKE_CARD["max_k"])
            scores = np.tile(np.linspace(5.0, 1.0, k, dtype=np.float32), (len(users), 1))
            if self.behaviour.unsorted_scores:
                scores = scores[:, ::-1].copy()
            ids = [[str(i + 1) for i in range(k)] for _ in users]
            response.outputs[MOVIE_IDS].CopyFrom(_string_matrix(ids))
            response.outputs[MOVIE_TITLES].CopyFrom(_string_matrix([[f"Movie {m}" for m in row] for row in ids]))
            response.outputs[SCORES].CopyFrom(_float_tensor(scores))
        elif signature == MODEL_CARD_SIGNATURE:
            card = string_vector([json.dumps(FAKE_CARD)])
            card.tensor_shape.ClearField("dim")
            response.outputs[MODEL_CARD].CopyFrom(card)
        else:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'Serving signature key "{signature}" not found.')
        for key in self.behaviour.drop_outputs & set(response.outputs):
            del response.outputs[key]
        return response

    def GetModelMetadata(self, request, context):
        self._maybe_fail(context)
        self._check_model(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = MODEL_NAME
        response.model_spec.version.value = FAKE_VERSION
        response.metadata["signature_def"].Pack(_signature_map())
        return response

    def GetModelStatus(self, request, context):
        self._maybe_fail(context)
        self._check_model(request.model_spec, context)
        status = get_model_status_pb2.ModelVersionStatus(
            version=FAKE_VERSION, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
        )
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=[status])


def free_port() -> int:
    """A port that was free a moment ago (for a server that must start later on a known port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fake_server(port: int = 0, behaviour: FakeBehaviour | None = None) -> Iterator[tuple[str, FakeBehaviour]]:
    """Run the fake on 127.0.0.1:port (0 = any free port); yields (target, behaviour)."""
    behaviour = behaviour or FakeBehaviour()
    servicer = FakeServing(behaviour)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        raise OSError(f"fake server could not bind 127.0.0.1:{port}")
    server.start()
    try:
        yield f"127.0.0.1:{bound}", behaviour
    finally:
        server.stop(grace=None)
