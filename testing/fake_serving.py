"""An in-process fake of TF Serving's gRPC API for tests that need a misbehaving server.

The real local server (``serving.launcher``) answers correctly; tests of retries,
status-code mapping and the load test's response checks need a server that
fails on cue (UNAVAILABLE twice, then OK), starts late, returns unsorted
scores or leaves an output out. This fake speaks the same protos with canned,
deterministic answers.

``recommend_from_ratings`` follows the signature's contract (see docs/api.md,
"Signatures") with a toy scoring, so the client and CLI are tested without a model:
inputs and dtypes checked, INVALID_ARGUMENT for what the model's in-graph asserts refuse
(``protocol.request_problem``: the rules and their words, stated once), padding ("") and
unknown movie ids ignored, a movie repeated in a
row counted once (first occurrence), the given movies never returned, k capped at
``max_k`` and at the catalogue size minus the row's given movies, as the model does; rows
padded past their own k with id "" and score -inf, as the model pads. A movie's
score is the sum over the given movies of ``(rating - 3) / (1 + |movie - given|)``, plus a
small profile term for a known user id; ties go to the lower movie id.

Everything the fake says about the API comes from ``client/contract.py``: its metadata,
which inputs it accepts (names, dtypes, ranks: INVALID_ARGUMENT otherwise, worded as the
servers word it) and which outputs it answers, each in its declared dtype (honouring the
request's output_filter as TF Serving does). Only the toy values are written here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np

from client import contract, messages, protocol
from client.contract import (
    K,
    K_PER_USER_MESSAGE,
    MODEL_CARD,
    MODEL_CARD_REQUEST,
    MODEL_CARD_SIGNATURE,
    MODEL_NAME,
    MOVIE_EMBEDDING,
    MOVIE_ID,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_METHOD,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RATED_MOVIE_IDS,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_EMBEDDING,
    USER_ID,
)
from client.messages import DataType, PredictRequest, PredictResponse
from client.protocol import request_problem
from client.tensors import to_numpy

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
    last_request: PredictRequest | None = None  # the last Predict request received


def _signature_map(missing: set[str] = frozenset()) -> messages.SignatureDefMap:
    """The signatures as ``client/contract.py`` declares them (the one declaration of the API)."""
    sigs = messages.SignatureDefMap()
    for name, declared in contract.SIGNATURES.items():
        if name in missing:
            continue
        sig = sigs.signature_def[name]
        sig.method_name = PREDICT_METHOD
        for side, tensors in ((sig.inputs, declared.inputs), (sig.outputs, declared.outputs)):
            for t in tensors:
                info = messages.TensorInfo(name=f"{t.name}:0", dtype=DataType.Value(t.dtype))
                for d in t.shape:
                    info.tensor_shape.dim.add(size=d)
                side[t.name].CopyFrom(info)
    return sigs


class _Refused(Exception):
    """What the model's in-graph asserts would refuse: INVALID_ARGUMENT with this message."""


def _inputs(signature: str, request: PredictRequest) -> dict[str, np.ndarray]:
    """The request's inputs as numpy arrays, refused as the servers refuse them when they are not the
    inputs ``client/contract.py`` declares (names, dtypes, ranks and fixed sizes)."""
    declared = contract.signature(signature)
    sent = set(request.inputs)
    if sent != set(declared.input_names):
        raise _Refused(f"inputs must be {sorted(declared.input_names)}, got {sorted(sent)}")
    arrays = {}
    for decl in declared.inputs:
        proto = request.inputs[decl.name]
        if proto.dtype != DataType.Value(decl.dtype):
            got = DataType.Name(proto.dtype)
            raise _Refused(f'input "{decl.name}" has dtype {got} but the signature expects {decl.dtype}')
        try:
            arrays[decl.name] = to_numpy(proto)
        except ValueError as error:
            raise _Refused(f'input "{decl.name}": {error}') from None
        shape = arrays[decl.name].shape
        if not contract.shape_matches(decl.shape, shape):
            hint = f": {K_PER_USER_MESSAGE}" if decl.name == K else ""
            raise _Refused(f'input "{decl.name}" has shape {list(shape)} but the signature expects {list(decl.shape)}{hint}')
    problem = request_problem(signature, arrays)
    if problem is not None:
        raise _Refused(problem)
    return arrays


def _recommend_from_ratings(request: PredictRequest) -> tuple[list[list[str]], np.ndarray]:
    """(movie ids [users, k], scores [users, k]) by the toy scoring in the module docstring."""
    inputs = _inputs(RECOMMEND_FROM_RATINGS_SIGNATURE, request)
    users, k, rated, ratings = (inputs[key] for key in (USER_ID, K, RATED_MOVIE_IDS, RATINGS))
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


class FakeServing:
    """TF Serving's Predict, GetModelMetadata and GetModelStatus, served with generic handlers (``handlers()``)."""

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

    def Predict(self, request: PredictRequest, context: grpc.ServicerContext) -> PredictResponse:
        self._maybe_fail(context)
        self.behaviour.last_request = request
        self._check_model(request.model_spec, context)
        signature = request.model_spec.signature_name or PREDICT_SIGNATURE
        if signature in self.behaviour.missing_signatures:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature}" not found.')
        try:
            response = protocol.response_for(request, self._values(signature, request, context), FAKE_VERSION)
        except _Refused as refused:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(refused))
        except ValueError as missing:  # a declared output the fake does not compute
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the fake server computes {missing}")
        for key in self.behaviour.drop_outputs & set(response.outputs):
            del response.outputs[key]
        return response

    def _values(self, signature: str, request: PredictRequest, context: grpc.ServicerContext) -> dict:
        """The toy answer of ``signature``, every output it computes, keyed by the contract's output names."""
        if signature not in contract.SIGNATURES or signature not in FAKE_SIGNATURES:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature}" not found.')
        if signature == RECOMMEND_FROM_RATINGS_SIGNATURE:
            ids, scores = _recommend_from_ratings(request)
            if self.behaviour.unsorted_scores:
                real = [sum(1 for m in row if m) for row in ids]
                ids = [row[:n][::-1] + row[n:] for row, n in zip(ids, real)]
                scores = scores.copy()
                for i, n in enumerate(real):
                    scores[i, :n] = scores[i, :n][::-1]
            return self._recommendations(ids, scores)
        inputs = _inputs(signature, request)
        if signature == PREDICT_SIGNATURE:
            users, movies = inputs[USER_ID], inputs[MOVIE_ID]
            ratings = np.array([3.0 + (int(u) % 7 + int(m) % 5) / 10 for u, m in zip(users, movies)], np.float32)
            return {
                PREDICTED_RATING: ratings,
                USER_EMBEDDING: np.array([[int(u) % 3, 1.0] for u in users], np.float32).reshape(-1, 2),
                MOVIE_EMBEDDING: np.array([[int(m) % 5, 1.0] for m in movies], np.float32).reshape(-1, 2),
            }
        if signature == RECOMMEND_SIGNATURE:
            users, k = inputs[USER_ID], inputs[K]
            k = np.minimum(k, FAKE_CARD["max_k"])
            width = int(k.max(initial=0))
            scores = np.full((len(users), width), -np.inf, np.float32)
            ids = []
            for row, own in enumerate(k):
                scores[row, :own] = np.linspace(5.0, 1.0, own, dtype=np.float32)
                if self.behaviour.unsorted_scores:
                    scores[row, :own] = scores[row, :own][::-1]
                ids.append([str(i + 1) for i in range(own)] + [""] * (width - own))
            return self._recommendations(ids, scores)
        served = sorted(set(FAKE_SIGNATURES) - self.behaviour.missing_signatures)  # the model card
        rows = len(inputs[MODEL_CARD_REQUEST])
        return {MODEL_CARD: [json.dumps({**FAKE_CARD, "signatures": served})] * rows}

    @staticmethod
    def _recommendations(ids: list[list[str]], scores: np.ndarray) -> dict:
        width = scores.shape[1]
        ids = [row + [""] * (width - len(row)) for row in ids]
        return {MOVIE_IDS: ids, MOVIE_TITLES: [[f"Movie {m}" if m else "" for m in row] for row in ids], SCORES: scores}

    def GetModelMetadata(self, request, context):
        self._maybe_fail(context)
        self._check_model(request.model_spec, context)
        response = messages.GetModelMetadataResponse()
        response.model_spec.name = MODEL_NAME
        response.model_spec.version.value = FAKE_VERSION
        response.metadata["signature_def"].Pack(_signature_map(self.behaviour.missing_signatures))
        return response

    def GetModelStatus(self, request, context):
        self._maybe_fail(context)
        self._check_model(request.model_spec, context)
        status = messages.ModelVersionStatus(version=FAKE_VERSION, state=messages.VersionState.Value("AVAILABLE"))
        return messages.GetModelStatusResponse(model_version_status=[status])

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The two services, with the client's own message classes (client/messages.py) on the wire."""
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for method, behaviour in (
            (messages.PREDICT, self.Predict),
            (messages.GET_MODEL_METADATA, self.GetModelMetadata),
            (messages.GET_MODEL_STATUS, self.GetModelStatus),
        ):
            service, name = method.path.strip("/").split("/")
            by_service.setdefault(service, {})[name] = grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=method.request.FromString,
                response_serializer=method.response.SerializeToString,
            )
        return [grpc.method_handlers_generic_handler(service, methods) for service, methods in by_service.items()]


@contextmanager
def fake_server(
    port: int = 0,
    behaviour: FakeBehaviour | None = None,
    *,
    server_credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    host: str = "127.0.0.1",
) -> Iterator[tuple[str, FakeBehaviour]]:
    """Run the fake on host:port (0 = any free port); yields (target, behaviour).

    ``server_credentials`` serve TLS instead of plain text; ``interceptors`` run before
    every call (e.g. testing/tls.py's token check)."""
    behaviour = behaviour or FakeBehaviour()
    servicer = FakeServing(behaviour)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=tuple(interceptors))
    server.add_generic_rpc_handlers(servicer.handlers())
    address = f"{host}:{port}"
    if server_credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, server_credentials)
    if bound == 0:
        raise OSError(f"fake server could not bind {address}")
    server.start()
    try:
        yield f"{host}:{bound}", behaviour
    finally:
        server.stop(grace=None)
