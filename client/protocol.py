"""Requests, responses and result types, shared by the sync and asyncio clients.

Everything here is pure (no I/O), so it is what ``python -m client.bench``
times as the client's own overhead, and what both clients call so they cannot
drift apart in validation or parsing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from common.contract import (
    K,
    MODEL_CARD,
    MODEL_CARD_SIGNATURE,
    MOVIE_ID,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_ID,
)

from client.tensors import decode_strings, int32_scalar, string_vector, tensor_shape, to_numpy

Id = Union[str, int]
"""A MovieLens id: ``42`` and ``"42"`` are the same id (the model's vocabulary is strings)."""

_SIGNATURE_DEF = "signature_def"


@dataclass(frozen=True, slots=True)
class Recommendation:
    movie_id: str
    title: str
    score: float


@dataclass(frozen=True, slots=True)
class TensorInfo:
    dtype: str  # e.g. "DT_STRING"
    shape: tuple[int, ...] | None  # -1 for an unknown dimension; None for unknown rank


@dataclass(frozen=True, slots=True)
class Signature:
    method: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    model: str
    version: int
    signatures: dict[str, Signature]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: str  # "AVAILABLE", "LOADING", ... (TF Serving's ModelVersionStatus.State)
    error_code: int  # google.rpc code of the last load error, 0 = OK
    error_message: str


# --- validation -------------------------------------------------------------


def is_single(value: object) -> bool:
    """True for one id (str or integer), False for a sequence of ids."""
    return isinstance(value, (str, int, np.integer))


def normalize_id(value: Id, field: str) -> str:
    # bool is an int subclass; True as an id is always a bug in the caller.
    if isinstance(value, bool) or not is_single(value):
        raise TypeError(f"{field}: ids must be str or int, got {type(value).__name__} {value!r}")
    text = str(int(value)) if isinstance(value, np.integer) else str(value).strip()
    if not text:
        raise ValueError(f"{field}: ids must be non-empty, got {value!r}")
    return text


def normalize_ids(values: Id | Sequence[Id], field: str) -> list[str]:
    """One id or a sequence of ids -> a non-empty list of id strings."""
    if is_single(values):
        return [normalize_id(values, field)]
    if not isinstance(values, Sequence):
        raise TypeError(f"{field}: expected an id or a sequence of ids, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{field}: at least one id is required, got an empty sequence")
    return [normalize_id(v, f"{field}[{i}]") for i, v in enumerate(values)]


def validate_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}")
    if k <= 0:
        raise ValueError(f"k must be a positive number of recommendations, got {k}")
    if k > np.iinfo(np.int32).max:
        raise ValueError(f"k must fit in int32, got {k}")
    return int(k)


def pair_ids(user_ids: Id | Sequence[Id], movie_ids: Id | Sequence[Id]) -> tuple[list[str], list[str]]:
    """Pair users with movies; a single id on either side is repeated to match the other."""
    users = normalize_ids(user_ids, "user_ids")
    movies = normalize_ids(movie_ids, "movie_ids")
    if is_single(user_ids) and len(movies) > 1:
        users = users * len(movies)
    elif is_single(movie_ids) and len(users) > 1:
        movies = movies * len(users)
    if len(users) != len(movies):
        raise ValueError(
            f"user_ids and movie_ids must pair up one to one: got {len(users)} user ids "
            f"and {len(movies)} movie ids"
        )
    return users, movies


# --- requests ---------------------------------------------------------------


def model_spec(model: str, version: int | None, signature: str | None = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=model)
    if version is not None:
        spec.version.value = version
    if signature is not None:
        spec.signature_name = signature
    return spec


def predict_request(model: str, version: int | None, users: list[str], movies: list[str]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(
        model_spec=model_spec(model, version, PREDICT_SIGNATURE),
        output_filter=[PREDICTED_RATING],  # the embeddings are 32x bigger and unused here
    )
    request.inputs[USER_ID].CopyFrom(string_vector(users))
    request.inputs[MOVIE_ID].CopyFrom(string_vector(movies))
    return request


def recommend_request(model: str, version: int | None, users: list[str], k: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_spec(model, version, RECOMMEND_SIGNATURE))
    request.inputs[USER_ID].CopyFrom(string_vector(users))
    request.inputs[K].CopyFrom(int32_scalar(k))
    return request


def model_card_request(model: str, version: int | None) -> predict_pb2.PredictRequest:
    return predict_pb2.PredictRequest(model_spec=model_spec(model, version, MODEL_CARD_SIGNATURE))


def metadata_request(model: str, version: int | None) -> get_model_metadata_pb2.GetModelMetadataRequest:
    return get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=model_spec(model, version), metadata_field=[_SIGNATURE_DEF]
    )


def status_request(model: str, version: int | None) -> get_model_status_pb2.GetModelStatusRequest:
    return get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(model, version))


# --- responses --------------------------------------------------------------


class MalformedResponse(ValueError):
    """The server answered, but not with what the signature promises."""


def _output(response: predict_pb2.PredictResponse, key: str) -> np.ndarray:
    if key not in response.outputs:
        raise MalformedResponse(f"response has no output {key!r} (got {sorted(response.outputs)})")
    return to_numpy(response.outputs[key])


def parse_predict(response: predict_pb2.PredictResponse, n: int) -> np.ndarray:
    ratings = _output(response, PREDICTED_RATING).astype(np.float32, copy=False)
    if ratings.shape != (n,):
        raise MalformedResponse(f"{PREDICTED_RATING}: expected shape [{n}], got {list(ratings.shape)}")
    return ratings


def parse_recommend(response: predict_pb2.PredictResponse, n_users: int) -> list[list[Recommendation]]:
    for key in (MOVIE_IDS, MOVIE_TITLES, SCORES):
        if key not in response.outputs:
            raise MalformedResponse(f"response has no output {key!r} (got {sorted(response.outputs)})")
    outputs = response.outputs
    shapes = [tensor_shape(outputs[key]) for key in (MOVIE_IDS, MOVIE_TITLES, SCORES)]
    if not (len(shapes[0]) == 2 and shapes[0][0] == n_users and shapes[0] == shapes[1] == shapes[2]):
        raise MalformedResponse(
            f"expected {MOVIE_IDS}, {MOVIE_TITLES}, {SCORES} of one shape [{n_users}, k]; got "
            + ", ".join(str(list(s)) for s in shapes)
        )
    k = shapes[0][1]
    # Plain lists, not numpy object arrays: this runs on every call and k is small.
    ids = decode_strings(outputs[MOVIE_IDS])
    titles = decode_strings(outputs[MOVIE_TITLES])
    scores = to_numpy(outputs[SCORES]).reshape(-1).tolist()
    if not len(ids) == len(titles) == len(scores) == n_users * k:
        raise MalformedResponse(
            f"recommend outputs of shape [{n_users}, {k}] hold {len(ids)} ids, {len(titles)} titles, {len(scores)} scores"
        )
    return [
        [Recommendation(ids[i], titles[i], scores[i]) for i in range(row * k, (row + 1) * k)]
        for row in range(n_users)
    ]


def parse_model_card(response: predict_pb2.PredictResponse) -> dict:
    text = _output(response, MODEL_CARD)
    if text.size != 1:
        raise MalformedResponse(f"{MODEL_CARD}: expected one string, got shape {list(text.shape)}")
    try:
        return json.loads(text.reshape(()).item())
    except json.JSONDecodeError as error:
        raise MalformedResponse(f"{MODEL_CARD}: not valid JSON ({error})") from None


def _tensor_info(info) -> TensorInfo:
    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
    return TensorInfo(dtype=types_pb2.DataType.Name(info.dtype), shape=shape)


def parse_metadata(response: get_model_metadata_pb2.GetModelMetadataResponse) -> ModelMetadata:
    if _SIGNATURE_DEF not in response.metadata:
        raise MalformedResponse(f"metadata response has no {_SIGNATURE_DEF!r} field")
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata[_SIGNATURE_DEF].Unpack(sig_map):
        raise MalformedResponse(f"metadata {_SIGNATURE_DEF!r} is not a SignatureDefMap")
    signatures = {
        name: Signature(
            method=sig.method_name,
            inputs={k: _tensor_info(v) for k, v in sorted(sig.inputs.items())},
            outputs={k: _tensor_info(v) for k, v in sorted(sig.outputs.items())},
        )
        # TF Serving also lists "__saved_model_init_op", which is not callable.
        for name, sig in sorted(sig_map.signature_def.items())
        if not name.startswith("__")
    }
    return ModelMetadata(
        model=response.model_spec.name, version=response.model_spec.version.value, signatures=signatures
    )


def parse_status(response: get_model_status_pb2.GetModelStatusResponse) -> list[VersionStatus]:
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return sorted(
        (
            VersionStatus(
                version=s.version,
                state=state_name(s.state),
                error_code=s.status.error_code,
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ),
        key=lambda s: s.version,
    )
