"""Requests, responses and result types, shared by the sync and asyncio clients.

Everything here is pure (no I/O), so it is what ``python -m loadtest.client_bench``
times as the client's own overhead, and what both clients call so they cannot
drift apart in validation, parsing or what "ready" means.

Inputs and outputs are built and read as ``client/contract.py`` declares them
(``contract.SIGNATURES``, looked up on every call): each input is encoded in its
declared dtype and rank, each output is checked against its declared dtype and
rank before it is decoded, and an output a signature does not declare (e.g.
``movie_titles``) is not asked for. What the client cannot derive (which values
to send, what a row of recommendations means) stays here as code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, Union

import grpc
import numpy as np
from . import contract, messages
from .contract import (
    K,
    K_PER_USER_MESSAGE,
    K_POSITIVE_MESSAGE,
    MAX_RATED_MOVIES,
    MAX_RATED_WIDTH,
    MAX_RECOMMEND_USERS,
    MODEL_CARD,
    MODEL_CARD_REQUEST,
    MODEL_CARD_SIGNATURE,
    MOVIE_ID,
    MOVIE_IDS,
    MOVIE_TITLES,
    PAIRS_MESSAGE,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RATED_MOVIE_IDS,
    RATED_ROWS_MESSAGE,
    RATED_SHAPE_MESSAGE,
    RATING_MAX,
    RATING_MIN,
    RATING_RANGE_MESSAGE,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    TOO_MANY_RATED_MESSAGE,
    TOO_MANY_USERS_MESSAGE,
    USER_ID,
)

from .errors import DeadlineExceeded, MalformedResponse, NotFound, SignatureNotFound, Unavailable
from .messages import (
    GetModelMetadataRequest,
    GetModelMetadataResponse,
    GetModelStatusRequest,
    GetModelStatusResponse,
    ModelSpec,
    PredictRequest,
    PredictResponse,
    TensorProto,
)
from .tensors import check_declared, decode_strings, encode, to_numpy

Id = Union[str, int]
"""A MovieLens id: ``42`` and ``"42"`` are the same id (the model's vocabulary is strings)."""

RatedMovies = list[tuple[str, float]]
"""One user's ratings after validation: (movie id, rating) in the caller's order, no movie twice."""

_SIGNATURE_DEF = "signature_def"
_T = TypeVar("_T")


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


def validate_rating(value: object, field: str) -> float:
    """A finite number within RATING_MIN..RATING_MAX (MovieLens' half-star scale), as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{field}: a rating must be a number, got {type(value).__name__} {value!r}")
    rating = float(value)
    if not math.isfinite(rating):
        raise ValueError(f"{field}: a rating must be finite, got {rating}")
    if not RATING_MIN <= rating <= RATING_MAX:
        raise ValueError(f"{field}: a rating must be within {RATING_MIN:g}-{RATING_MAX:g}, got {value!r}")
    return rating


def normalize_ratings(ratings: Mapping[Id, float], field: str) -> RatedMovies:
    """One user's ``{movie_id: rating}`` -> [(movie id string, rating)], checked before sending.

    Unknown movie ids pass (the model ignores them); a movie spelled twice (``42`` and
    ``"42"``) is refused, since it would be unclear which rating counts.
    """
    if not isinstance(ratings, Mapping):
        raise TypeError(f"{field}: expected a mapping of movie id to rating, got {type(ratings).__name__}")
    if not ratings:
        raise ValueError(f"{field}: at least one rated movie is required, got an empty mapping")
    if len(ratings) > MAX_RATED_MOVIES:
        raise ValueError(f"{field}: at most {MAX_RATED_MOVIES} rated movies per user, got {len(ratings)}")
    rated: dict[str, float] = {}
    for movie, value in ratings.items():
        movie_id = normalize_id(movie, f"{field}: movie id")
        if movie_id in rated:
            raise ValueError(f"{field}: movie {movie_id!r} is given twice")
        rated[movie_id] = validate_rating(value, f"{field}[{movie_id!r}]")
    return list(rated.items())


def _profile_id(value: Id | None, field: str) -> str:
    """A user id for the profile, or "" (no profile) for None."""
    return "" if value is None else normalize_id(value, field)


def ratings_batch(
    ratings: Mapping[Id, float] | Sequence[Mapping[Id, float]], user_id: Id | Sequence[Id | None] | None
) -> tuple[list[str], list[RatedMovies]]:
    """(user ids, one validated row per user) for recommend_from_ratings.

    One mapping is one user, with ``user_id`` one id or None; a sequence of mappings is a
    batch, with ``user_id`` None (no profiles) or a sequence of ids or Nones, one per mapping.
    """
    if isinstance(ratings, Mapping):
        if user_id is not None and not is_single(user_id):
            raise TypeError(f"user_id: one id (or None) goes with one mapping of ratings, got {type(user_id).__name__}")
        return [_profile_id(user_id, "user_id")], [normalize_ratings(ratings, "ratings")]
    if not isinstance(ratings, Sequence) or isinstance(ratings, (str, bytes)):
        raise TypeError(
            f"ratings: expected a mapping of movie id to rating, or a sequence of them, got {type(ratings).__name__}"
        )
    if len(ratings) == 0:
        raise ValueError("ratings: at least one user's ratings are required, got an empty sequence")
    if len(ratings) > MAX_RECOMMEND_USERS:
        raise ValueError(f"ratings: at most {MAX_RECOMMEND_USERS} users per call, got {len(ratings)}")
    if user_id is None:
        users = [""] * len(ratings)
    elif is_single(user_id) or not isinstance(user_id, Sequence):
        raise TypeError("user_id: a sequence of ratings takes a sequence of user ids (or Nones), one per user")
    elif len(user_id) != len(ratings):
        raise ValueError(f"user_id: expected one id (or None) per user, got {len(user_id)} for {len(ratings)} users")
    else:
        users = [_profile_id(u, f"user_id[{i}]") for i, u in enumerate(user_id)]
    return users, [normalize_ratings(r, f"ratings[{i}]") for i, r in enumerate(ratings)]


# --- the model's request rules, on a decoded request ------------------------


def request_problem(signature: str, inputs: Mapping[str, np.ndarray]) -> str | None:
    """What the served model refuses in ``inputs`` (decoded, as declared), in its words; None if nothing.

    The rules of the model's in-graph checks, stated once outside the graph: the limits and
    messages are ``client/contract.py``'s, as are export/serving_module.py's asserts; the tests'
    fake server (testing/fake_serving.py) answers INVALID_ARGUMENT with this. A row's ``""``
    entries are padding: not counted as rated movies, their ratings not checked.
    """
    if signature == PREDICT_SIGNATURE:
        return PAIRS_MESSAGE if len(inputs[USER_ID]) != len(inputs[MOVIE_ID]) else None
    if signature not in (RECOMMEND_SIGNATURE, RECOMMEND_FROM_RATINGS_SIGNATURE):
        return None
    users, k = inputs[USER_ID], inputs[K]
    if len(k) != len(users):
        return K_PER_USER_MESSAGE
    if (k <= 0).any():
        return K_POSITIVE_MESSAGE
    if len(users) > MAX_RECOMMEND_USERS:
        return TOO_MANY_USERS_MESSAGE
    if signature == RECOMMEND_SIGNATURE:
        return None
    rated, ratings = inputs[RATED_MOVIE_IDS], inputs[RATINGS]
    if rated.shape != ratings.shape:
        return RATED_SHAPE_MESSAGE
    if rated.shape[0] != len(users):
        return RATED_ROWS_MESSAGE
    given = rated != ""
    if rated.shape[1] > MAX_RATED_WIDTH or given.sum(axis=1).max(initial=0) > MAX_RATED_MOVIES:
        return TOO_MANY_RATED_MESSAGE
    if not (((ratings >= RATING_MIN) & (ratings <= RATING_MAX)) | ~given).all():
        return RATING_RANGE_MESSAGE
    return None


# --- client options and readiness -------------------------------------------


def validate_client_options(target: str, model: str, version: int | None, timeout_s: float) -> None:
    """The constructor arguments of both clients, checked before a channel is opened."""
    if not target:
        raise ValueError("target must be HOST:PORT, got an empty string")
    if not model:
        raise ValueError("model must be a model name, got an empty string")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ValueError(f"version must be a non-negative int or None (newest), got {version!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")


# What a status call raises while the server or the model is still coming up: keep polling.
NOT_READY_YET = (Unavailable, NotFound, DeadlineExceeded)


def validate_label(version: int | None, label: str | None) -> None:
    if label is None:
        return
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty str (a version label such as 'canary') or None, got {label!r}")
    if version is not None:
        raise ValueError(f"pass a version or a label, not both (version={version!r}, label={label!r})")


def is_ready(versions: list[VersionStatus]) -> bool:
    return any(v.state == "AVAILABLE" for v in versions)


def describe_versions(versions: list[VersionStatus]) -> str:
    """Each version's state and load error, for a readiness timeout that says why."""
    return ", ".join(f"v{v.version} {v.state} {v.error_message}".strip() for v in versions) or "no versions"


def not_ready(model: str, target: str, timeout_s: float, last: str) -> DeadlineExceeded:
    return DeadlineExceeded(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"model {model!r} not AVAILABLE at {target} within {timeout_s:g}s (last: {last})",
    )


# --- requests ---------------------------------------------------------------


def model_spec(model: str, version: int | str | None, signature: str | None = None) -> ModelSpec:
    """``version``: a number, a version label (a str: ModelSpec.version_label, e.g. "canary"), or None (newest)."""
    spec = ModelSpec(name=model)
    if isinstance(version, str):
        spec.version_label = version
    elif version is not None:
        spec.version.value = version
    if signature is not None:
        spec.signature_name = signature
    return spec


def _predict_request(
    model: str, version: int | None, signature: str, inputs: dict[str, object], output_filter: Sequence[str] = ()
) -> PredictRequest:
    """A Predict request carrying exactly the inputs ``client/contract.py`` declares, each in its declared dtype."""
    declared = contract.signature(signature)
    if set(inputs) != set(declared.input_names):
        # The contract gained or lost an input this client does not know how to fill: a code change, not bad input.
        raise RuntimeError(
            f"{signature}: the client sends inputs {sorted(inputs)} but client/contract.py declares "
            f"{list(declared.input_names)}; client/protocol.py needs the new input's values"
        )
    request = PredictRequest(
        model_spec=model_spec(model, version, signature),
        output_filter=[name for name in output_filter if declared.has_output(name)],
    )
    for decl in declared.inputs:
        try:
            request.inputs[decl.name].CopyFrom(encode(decl, inputs[decl.name]))
        except ValueError as error:
            raise ValueError(f"{signature} input {error}") from None
    return request


def predict_request(model: str, version: int | None, users: list[str], movies: list[str]) -> PredictRequest:
    return _predict_request(
        model, version, PREDICT_SIGNATURE, {USER_ID: users, MOVIE_ID: movies},
        output_filter=[PREDICTED_RATING],  # the embeddings are 32x bigger and unused here
    )


def recommend_request(model: str, version: int | None, users: list[str], k: int) -> PredictRequest:
    if len(users) > MAX_RECOMMEND_USERS:
        raise ValueError(f"user_ids: at most {MAX_RECOMMEND_USERS} users per recommend call, got {len(users)}")
    # One k per user: a batch dimension.
    return _predict_request(model, version, RECOMMEND_SIGNATURE, {USER_ID: users, K: [k] * len(users)})


def recommend_from_ratings_request(
    model: str, version: int | None, users: list[str], rows: list[RatedMovies], k: int
) -> PredictRequest:
    """Rows padded to the longest with "" (movie) and 0.0 (rating), which the model ignores.

    The first row starts with an extra ``""`` (rating 0.0): TF Serving's batcher,
    when it merges requests of different widths (``pad_variable_length_inputs``),
    pads each request's tensor with that tensor's first element, and the model
    must see the padding as "no movie", not as the first user's first movie.
    """
    if len(users) > MAX_RECOMMEND_USERS:
        raise ValueError(f"ratings: at most {MAX_RECOMMEND_USERS} users per call, got {len(users)}")
    if len(rows) != len(users):
        raise ValueError(f"ratings: one row per user: got {len(rows)} rows for {len(users)} users")
    longest = max((len(row) for row in rows), default=0)
    if longest > MAX_RATED_MOVIES:
        raise ValueError(f"ratings: at most {MAX_RATED_MOVIES} rated movies per user, got {longest}")
    rows = [[("", 0.0), *rows[0]], *rows[1:]] if rows else rows
    width = max((len(row) for row in rows), default=0)
    movie_ids = [[movie for movie, _ in row] + [""] * (width - len(row)) for row in rows]
    values = np.zeros((len(rows), width), dtype=np.float64)  # encode() casts to the declared dtype
    for i, row in enumerate(rows):
        values[i, : len(row)] = [rating for _, rating in row]
    return _predict_request(
        model, version, RECOMMEND_FROM_RATINGS_SIGNATURE,
        {USER_ID: users, K: [k] * len(users), RATED_MOVIE_IDS: movie_ids, RATINGS: values},
    )


def model_card_request(model: str, version: int | None) -> PredictRequest:
    return _predict_request(model, version, MODEL_CARD_SIGNATURE, {MODEL_CARD_REQUEST: [0]})  # one card back


def metadata_request(model: str, version: int | None) -> GetModelMetadataRequest:
    return GetModelMetadataRequest(
        model_spec=model_spec(model, version), metadata_field=[_SIGNATURE_DEF]
    )


def status_request(model: str, version: int | None) -> GetModelStatusRequest:
    return GetModelStatusRequest(model_spec=model_spec(model, version))


# --- responses --------------------------------------------------------------


def response_for(request: PredictRequest, values: Mapping[str, object], version: int) -> PredictResponse:
    """The PredictResponse a server keeping the contract sends for ``request``: ``values`` as the
    outputs its signature declares (only those in the request's output_filter, if it has one, as TF
    Serving answers), each encoded in its declared dtype. For stand-ins of the server (the test
    fake, the client bench); raises ValueError naming a declared output missing from ``values``."""
    signature = request.model_spec.signature_name or PREDICT_SIGNATURE
    response = PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature
    wanted = set(request.output_filter)
    for decl in contract.signature(signature).outputs:
        if wanted and decl.name not in wanted:
            continue
        if decl.name not in values:
            raise ValueError(f"no {signature} output {decl.name!r}, which client/contract.py declares")
        response.outputs[decl.name].CopyFrom(encode(decl, values[decl.name]))
    return response


def _tensor(response: PredictResponse, key: str) -> TensorProto:
    if key not in response.outputs:
        raise MalformedResponse(f"response has no output {key!r} (got {sorted(response.outputs)})")
    return response.outputs[key]


def _decode(response: PredictResponse, key: str, decode: Callable[[TensorProto], _T]) -> _T:
    """``decode`` applied to output ``key``; a tensor it cannot decode is the server's fault, not the caller's."""
    try:
        return decode(_tensor(response, key))
    except ValueError as error:
        raise MalformedResponse(f"output {key!r}: {error}") from None


def _declared(response: PredictResponse, signature: str, key: str) -> tuple[int, ...]:
    """The shape of output ``key`` after checking its dtype and rank against ``client/contract.py``."""
    decl = contract.signature(signature).output(key)
    return _decode(response, key, lambda proto: check_declared(decl, proto))


def _numbers(response: PredictResponse, signature: str, key: str) -> np.ndarray:
    """A numeric output in its declared dtype (float32 for DT_FLOAT, float64 for DT_DOUBLE, ...)."""
    _declared(response, signature, key)
    decl = contract.signature(signature).output(key)
    return _decode(response, key, to_numpy).astype(decl.numpy_dtype, copy=False)


def parse_predict(response: PredictResponse, n: int) -> np.ndarray:
    """One predicted rating per pair, in the dtype the contract declares for it."""
    ratings = _numbers(response, PREDICT_SIGNATURE, PREDICTED_RATING)
    if ratings.shape[:1] != (n,):
        raise MalformedResponse(f"{PREDICTED_RATING}: expected {n} rows (one per pair), got shape {list(ratings.shape)}")
    return ratings


def recommendation_outputs(signature: str) -> tuple[str, ...]:
    """The outputs a row of recommendations is read from: ids and scores, and titles when the signature has them."""
    declared = contract.signature(signature)
    return tuple(key for key in (MOVIE_IDS, MOVIE_TITLES, SCORES) if key != MOVIE_TITLES or declared.has_output(key))


def parse_recommend(
    response: PredictResponse, n_users: int, signature: str = RECOMMEND_SIGNATURE
) -> list[list[Recommendation]]:
    """Rows of ``signature``'s answer (recommend or recommend_from_ratings: the same outputs), padding dropped."""
    keys = recommendation_outputs(signature)
    shapes = [_declared(response, signature, key) for key in keys]
    if not (len(shapes[0]) == 2 and shapes[0][0] == n_users and all(s == shapes[0] for s in shapes)):
        raise MalformedResponse(
            f"expected {', '.join(keys)} of one shape [{n_users}, k]; got " + ", ".join(str(list(s)) for s in shapes)
        )
    k = shapes[0][1]
    # Plain lists, not numpy object arrays: this runs on every call and k is small.
    ids = _decode(response, MOVIE_IDS, decode_strings)
    titles = _decode(response, MOVIE_TITLES, decode_strings) if MOVIE_TITLES in keys else [""] * len(ids)
    scores = _numbers(response, signature, SCORES).reshape(-1).tolist()
    if not len(ids) == len(titles) == len(scores) == n_users * k:
        raise MalformedResponse(
            f"recommend outputs of shape [{n_users}, {k}] hold {len(ids)} ids, {len(titles)} titles, {len(scores)} scores"
        )
    # Outputs are [users, K] with K the largest k in the (possibly server-merged)
    # batch; a row's entries past its own k are padding: id "", score -inf.
    return [
        [Recommendation(ids[i], titles[i], scores[i]) for i in range(row * k, (row + 1) * k) if ids[i]]
        for row in range(n_users)
    ]


def explain_missing_signature(error: SignatureNotFound, model: str, target: str) -> SignatureNotFound:
    """A model without ``recommend_from_ratings``: say which models have it and what to do instead."""
    if error.signature != RECOMMEND_FROM_RATINGS_SIGNATURE:
        return error
    return SignatureNotFound(
        error.code,
        f"the model {model!r} served at {target} has no {RECOMMEND_FROM_RATINGS_SIGNATURE!r} signature: only "
        "models of the default (two-stage) preset serve it, not the reference model "
        "(presets reference-basic, reference-tuned). "
        f"Serve a default-preset export, or recommend for a known user id instead (server: {error.message})",
        error.signature,
    )


def parse_model_card(response: PredictResponse) -> dict:
    _declared(response, MODEL_CARD_SIGNATURE, MODEL_CARD)
    texts = _decode(response, MODEL_CARD, decode_strings)
    if len(texts) != 1:
        raise MalformedResponse(f"{MODEL_CARD}: expected one string, got {len(texts)}")
    try:
        card = json.loads(texts[0])
    except json.JSONDecodeError as error:
        raise MalformedResponse(f"{MODEL_CARD}: not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise MalformedResponse(f"{MODEL_CARD}: expected a JSON object, got {type(card).__name__}")
    return card


def _tensor_info(info) -> TensorInfo:
    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
    return TensorInfo(dtype=messages.DataType.Name(info.dtype), shape=shape)


def parse_metadata(response: GetModelMetadataResponse) -> ModelMetadata:
    if _SIGNATURE_DEF not in response.metadata:
        raise MalformedResponse(f"metadata response has no {_SIGNATURE_DEF!r} field")
    sig_map = messages.SignatureDefMap()
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


def parse_status(response: GetModelStatusResponse) -> list[VersionStatus]:
    state_name = messages.VersionState.Name
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
