"""An in-process fake of TF Serving's gRPC API for tests that need a misbehaving server.

The real local server (``serving.testing``) answers correctly; tests of retries,
status-code mapping and the load test's response checks need a server that
fails on cue (UNAVAILABLE twice, then OK), starts late, returns unsorted
scores or leaves an output out. This fake speaks the same protos with canned,
deterministic answers.

``recommend_from_ratings`` follows the signature's contract (see README.md, "Export and
the served API") with a toy scoring, so the client and CLI are tested without a model:
inputs and dtypes checked, INVALID_ARGUMENT for what the model's in-graph asserts refuse
(k <= 0, too many users or movies per row, shapes that disagree, a rating outside 0.5-5 on
a non-padding entry), padding ("") and unknown movie ids ignored, a movie repeated in a
row counted once (first occurrence), the given movies never returned, k capped at
``max_k`` and at the catalogue size minus the row's given movies, as the model does; rows
padded past their own k with id "" and score -inf, as the model pads. A movie's
score is the sum over the given movies of ``(rating - 3) / (1 + |movie - given|)``, plus a
small profile term for a known user id; ties go to the lower movie id.
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
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common.contract import (
    SIGNATURES,
    K,
    K_PER_USER_MESSAGE,
    MAX_RATED_MOVIES,
    MAX_RECOMMEND_USERS,
    MODEL_CARD,
    MODEL_CARD_REQUEST,
    MODEL_CARD_SIGNATURE,
    MODEL_NAME,
    MOVIE_ID,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_METHOD,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RATED_MOVIE_IDS,
    RATING_MAX,
    RATING_MIN,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_ID,
)

from client.tensors import float_tensor, string_matrix, string_vector, to_numpy

FAKE_VERSION = 1
FAKE_SIGNATURES = (PREDICT_SIGNATURE, RECOMMEND_SIGNATURE, RECOMMEND_FROM_RATINGS_SIGNATURE, MODEL_CARD_SIGNATURE)
FAKE_CARD = {
    "model_name": MODEL_NAME,
    "version": FAKE_VERSION,
    "max_k": 100,
    "catalogue_size": 120,
    "vocabulary": {"user_ids": [str(u) for u in range(1, 31)], "movie_ids": [str(m) for m in range(1, 121)]},
    "signatures": sorted(FAKE_SIGNATURES),
}


@dataclass
class FakeBehaviour:
    """What the fake does; tests mutate it between calls."""

    fail_with: list[grpc.StatusCode] = field(default_factory=list)  # popped, one per call, before answering
    unsorted_scores: bool = False  # recommend returns scores ascending (a broken ranking)
    drop_outputs: set[str] = field(default_factory=set)  # Predict answers without these outputs (a broken export)
    # Signatures the served model lacks (e.g. recommend_from_ratings on a reference-preset model):
    # Predict answers FAILED_PRECONDITION as TF Serving does; metadata and the model card omit them.
    missing_signatures: set[str] = field(default_factory=set)
    calls: int = 0
    last_request: predict_pb2.PredictRequest | None = None  # the last Predict request received


_float_tensor = float_tensor


def _string_matrix(rows: list[list[str]], width: int | None = None) -> tensor_pb2.TensorProto:
    """[len(rows), width] strings; width defaults to the first row's (0 for no rows)."""
    return string_matrix(rows, (len(rows[0]) if rows else 0) if width is None else width)


def _signature_map(missing: set[str] = frozenset()) -> get_model_metadata_pb2.SignatureDefMap:
    """The signatures as ``common/contract.py`` declares them (the one declaration of the API)."""
    sigs = get_model_metadata_pb2.SignatureDefMap()
    for name, declared in SIGNATURES.items():
        if name in missing:
            continue
        sig = sigs.signature_def[name]
        sig.method_name = PREDICT_METHOD
        for side, tensors in ((sig.inputs, declared.inputs), (sig.outputs, declared.outputs)):
            for t in tensors:
                info = meta_graph_pb2.TensorInfo(name=f"{t.name}:0", dtype=types_pb2.DataType.Value(t.dtype))
                for d in t.shape:
                    info.tensor_shape.dim.add(size=d)
                side[t.name].CopyFrom(info)
    return sigs


# recommend_from_ratings' inputs and their dtypes, as common/contract.py declares them.
_FROM_RATINGS_INPUTS = {
    t.name: types_pb2.DataType.Value(t.dtype) for t in SIGNATURES[RECOMMEND_FROM_RATINGS_SIGNATURE].inputs
}


class _Refused(Exception):
    """What the model's in-graph asserts would refuse: INVALID_ARGUMENT with this message."""


def _recommend_from_ratings(request: predict_pb2.PredictRequest) -> tuple[list[list[str]], np.ndarray]:
    """(movie ids [users, k], scores [users, k]) by the toy scoring in the module docstring."""
    sent = set(request.inputs)
    if sent != set(_FROM_RATINGS_INPUTS):
        raise _Refused(f"inputs must be {sorted(_FROM_RATINGS_INPUTS)}, got {sorted(sent)}")
    for key, dtype in _FROM_RATINGS_INPUTS.items():
        if request.inputs[key].dtype != dtype:
            got = types_pb2.DataType.Name(request.inputs[key].dtype)
            raise _Refused(f"input {key!r} has dtype {got} but the signature expects {types_pb2.DataType.Name(dtype)}")
    users = to_numpy(request.inputs[USER_ID])
    k = to_numpy(request.inputs[K])
    rated = to_numpy(request.inputs[RATED_MOVIE_IDS])
    ratings = to_numpy(request.inputs[RATINGS])
    if users.ndim != 1 or k.ndim != 1 or rated.ndim != 2 or ratings.ndim != 2:
        raise _Refused("expected user_id [-1], k [-1], rated_movie_ids [-1, -1], ratings [-1, -1]")
    if len(k) != len(users):
        raise _Refused(K_PER_USER_MESSAGE)
    if (k <= 0).any():
        raise _Refused(f"k must be positive, got {k.tolist()}")
    if len(users) > MAX_RECOMMEND_USERS:
        raise _Refused(f"at most {MAX_RECOMMEND_USERS} user_ids per recommend request")
    if rated.shape != ratings.shape:
        raise _Refused(f"{RATED_MOVIE_IDS} and {RATINGS} must have the same shape")
    if rated.shape[0] != len(users):
        raise _Refused(f"{RATED_MOVIE_IDS} must have one row per {USER_ID}")
    if rated.shape[1] > MAX_RATED_MOVIES + 1 or (rated != "").sum(axis=1).max(initial=0) > MAX_RATED_MOVIES:
        raise _Refused(f"at most {MAX_RATED_MOVIES} {RATED_MOVIE_IDS} per user")
    given = rated != ""
    if not ((ratings >= RATING_MIN) & (ratings <= RATING_MAX) | ~given).all():
        raise _Refused(f"{RATINGS} must be within {RATING_MIN:g}-{RATING_MAX:g}")
    catalogue = np.array([int(m) for m in FAKE_CARD["vocabulary"]["movie_ids"]])
    in_catalogue = set(FAKE_CARD["vocabulary"]["movie_ids"])
    known_users = set(FAKE_CARD["vocabulary"]["user_ids"])
    k = np.maximum(0, np.minimum(np.minimum(k, FAKE_CARD["max_k"]), len(catalogue) - (rated != "").sum(axis=1)))
    width = int(k.max(initial=0))
    ids, scores = [], np.full((len(users), width), -np.inf, np.float32)
    for row, user in enumerate(users):
        first: dict[int, float] = {}
        for movie, rating in zip(rated[row], ratings[row]):
            if movie in in_catalogue and int(movie) not in first:  # "" pads, unknown ids are ignored
                first[int(movie)] = float(rating)
        score = np.zeros(len(catalogue), np.float64)
        for movie, rating in first.items():
            score += (rating - 3.0) / (1.0 + np.abs(catalogue - movie))
        if user in known_users:
            score += 0.05 * ((int(user) + catalogue) % 5)
        score[np.isin(catalogue, list(first))] = -np.inf
        best = np.lexsort((catalogue, -score))[: k[row]]  # descending score, then ascending id
        ids.append([str(m) for m in catalogue[best]] + [""] * (width - k[row]))  # padded as the model pads
        scores[row, : k[row]] = score[best]
    return ids, scores


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
        self.behaviour.last_request = request
        self._check_model(request.model_spec, context)
        signature = request.model_spec.signature_name or PREDICT_SIGNATURE
        if signature in self.behaviour.missing_signatures:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature}" not found.')
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
            k = to_numpy(request.inputs[K])
            if k.ndim != 1 or len(k) != len(users):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, K_PER_USER_MESSAGE)
            if (k <= 0).any():
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"k must be positive, got {k.tolist()}")
            k = np.minimum(k, FAKE_CARD["max_k"])
            width = int(k.max(initial=0))
            scores = np.full((len(users), width), -np.inf, np.float32)
            ids = []
            for row, own in enumerate(k):
                scores[row, :own] = np.linspace(5.0, 1.0, own, dtype=np.float32)
                if self.behaviour.unsorted_scores:
                    scores[row, :own] = scores[row, :own][::-1]
                ids.append([str(i + 1) for i in range(own)] + [""] * (width - own))
            self._recommendations(response, ids, scores)
        elif signature == RECOMMEND_FROM_RATINGS_SIGNATURE:
            try:
                ids, scores = _recommend_from_ratings(request)
            except _Refused as refused:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(refused))
            if self.behaviour.unsorted_scores:
                real = [sum(1 for m in row if m) for row in ids]
                ids = [row[:n][::-1] + row[n:] for row, n in zip(ids, real)]
                scores = scores.copy()
                for i, n in enumerate(real):
                    scores[i, :n] = scores[i, :n][::-1]
            self._recommendations(response, ids, scores)
        elif signature == MODEL_CARD_SIGNATURE:
            served = sorted(set(FAKE_SIGNATURES) - self.behaviour.missing_signatures)
            rows = len(to_numpy(request.inputs[MODEL_CARD_REQUEST])) if MODEL_CARD_REQUEST in request.inputs else 0
            card = string_vector([json.dumps({**FAKE_CARD, "signatures": served})] * rows)
            response.outputs[MODEL_CARD].CopyFrom(card)
        else:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature}" not found.')
        for key in self.behaviour.drop_outputs & set(response.outputs):
            del response.outputs[key]
        return response

    @staticmethod
    def _recommendations(response: predict_pb2.PredictResponse, ids: list[list[str]], scores: np.ndarray) -> None:
        width = scores.shape[1]
        response.outputs[MOVIE_IDS].CopyFrom(_string_matrix(ids, width))
        response.outputs[MOVIE_TITLES].CopyFrom(_string_matrix([[f"Movie {m}" for m in row] for row in ids], width))
        response.outputs[SCORES].CopyFrom(_float_tensor(scores))

    def GetModelMetadata(self, request, context):
        self._maybe_fail(context)
        self._check_model(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = MODEL_NAME
        response.model_spec.version.value = FAKE_VERSION
        response.metadata["signature_def"].Pack(_signature_map(self.behaviour.missing_signatures))
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
