"""The served API, declared once: signatures, their tensors, names and limits.

This module ships with the thin client (``movielens_client.contract``) and is the one
declaration every part of the project reads: ``common/contract.py`` re-exports it next
to the deployment's own names (ports, folders), so the exporter, the servers, the tests'
fake server (testing/fake_serving.py), the load test and the client cannot disagree. It
imports nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "movielens"
GRPC_PORT = 8500  # TF Serving's default gRPC port

# Signatures.
PREDICT_SIGNATURE = "serving_default"
RECOMMEND_SIGNATURE = "recommend"
# A new user's handful of ratings instead of a known user's training history.
RECOMMEND_FROM_RATINGS_SIGNATURE = "recommend_from_ratings"
PREDICT_METHOD = "tensorflow/serving/predict"

# recommend scores the whole catalogue for each user in the request (a users ×
# catalogue matrix); larger batches are refused in-graph.
MAX_RECOMMEND_USERS = 100

# Input keys.
USER_ID = "user_id"
MOVIE_ID = "movie_id"
K = "k"  # recommend, recommend_from_ratings: DT_INT32 [-1], one per user_id (a batch dimension for TF Serving's batcher)
K_PER_USER_MESSAGE = (
    f"{K} needs one value per {USER_ID} (DT_INT32 [-1], e.g. [10, 10] for two users); "
    "one scalar k for several users is no longer accepted"
)
RATED_MOVIE_IDS = "rated_movie_ids"  # recommend_from_ratings: [users, n] movie ids, "" pads
RATINGS = "ratings"  # recommend_from_ratings: [users, n] the ratings of those movies, 0.5-5
RATING_MIN, RATING_MAX = 0.5, 5.0
# recommend_from_ratings encodes and sorts every given movie of a row (a repeat
# counts once), so a row's length is bounded.
MAX_RATED_MOVIES = 1000
# A row's width may be one more: clients put "" first in the first row (the value
# TF Serving's batcher pads a merged tensor with is that tensor's first element).
MAX_RATED_WIDTH = MAX_RATED_MOVIES + 1

# What the model refuses (INVALID_ARGUMENT), worded once. The limits above and these texts are
# the one statement of the request rules: export/serving_module.py's in-graph asserts use them,
# client/protocol.py's ``request_problem`` applies them to a decoded request (the fake server
# answers with it), and the client's own argument checks take their limits from here.
PAIRS_MESSAGE = f"{USER_ID} and {MOVIE_ID} must have the same length"  # serving_default
K_POSITIVE_MESSAGE = f"{K} must be positive"
TOO_MANY_USERS_MESSAGE = f"at most {MAX_RECOMMEND_USERS} {USER_ID}s per recommend request"
RATED_SHAPE_MESSAGE = f"{RATED_MOVIE_IDS} and {RATINGS} must have the same shape"
RATED_ROWS_MESSAGE = f"{RATED_MOVIE_IDS} must have one row per {USER_ID}"
TOO_MANY_RATED_MESSAGE = f"at most {MAX_RATED_MOVIES} {RATED_MOVIE_IDS} per user"
RATING_RANGE_MESSAGE = f"{RATINGS} must be within {RATING_MIN:g}-{RATING_MAX:g}"

# Output keys: serving_default.
PREDICTED_RATING = "predicted_rating"
USER_EMBEDDING = "user_embedding"
MOVIE_EMBEDDING = "movie_embedding"

# Output keys: recommend.
MOVIE_IDS = "movie_ids"
MOVIE_TITLES = "movie_titles"
SCORES = "scores"

# A third signature returns the model card as a JSON string, because TF Serving's
# GetModelMetadata carries only signature_defs and clients have no access to the
# model's assets.extra/ folder. Like every signature it is batchable (TF Serving's
# batching session refuses input-free and rank-0 calls): input `request`
# DT_INT32 [-1] (values ignored; send [0]), output `model_card` DT_STRING [-1],
# one copy of the card per element.
MODEL_CARD_SIGNATURE = "model_card"
MODEL_CARD_REQUEST = "request"
MODEL_CARD = "model_card"


# --- The served API, declared once --------------------------------------------
# Each signature's inputs and outputs: (name, dtype, shape), -1 = any size. Every
# input has a batch dimension (dimension 0) so TF Serving's batching session can
# merge calls of every signature. Derived from this, read when used (``signature()``):
# - export/serving_module.py: the input signatures, and which outputs are served
#   in which dtype (outputs()); export/exporter.py: its samples' dtypes, and verify
#   refuses a reloaded model whose inputs or outputs disagree;
# - client/protocol.py: each request's inputs and their dtypes (tensors.encode),
#   each output's dtype and rank (tensors.check_declared), titles if declared;
# - testing/fake_serving.py (the tests' fake server): metadata, input checks and
#   answers; loadtest/checks.py: the rating's dtype and rank, titles if declared;
#   tests/conformance_test.py.
# What cannot be derived (what a value means, which values to send) is code there.
# tests/contract_derivation_test.py patches SIGNATURES and checks they all follow.

# The tensorflow.DataType names a declaration may use, with the numpy dtype each
# decodes to (strings: Python str in an object array). Names, not imports, so this
# module stays importable without numpy or TensorFlow.
NUMPY_DTYPES: dict[str, str] = {
    "DT_STRING": "object",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
}


@dataclass(frozen=True)
class TensorDecl:
    name: str
    dtype: str  # a tensorflow.DataType name, one of NUMPY_DTYPES
    shape: tuple[int, ...]  # -1: any size (dimension 0 is always the batch)

    def __post_init__(self) -> None:
        if self.dtype not in NUMPY_DTYPES:
            raise ValueError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {sorted(NUMPY_DTYPES)}")
        if any(d < -1 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: shape {self.shape} has a dimension below -1")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numpy_dtype(self) -> str:
        """The numpy dtype name the tensor decodes to ("object" for DT_STRING)."""
        return NUMPY_DTYPES[self.dtype]

    @property
    def is_string(self) -> bool:
        return self.dtype == "DT_STRING"

    def __str__(self) -> str:
        return f"{self.name} {self.dtype} [{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class SignatureDecl:
    inputs: tuple[TensorDecl, ...]  # in the serving function's argument order
    outputs: tuple[TensorDecl, ...]

    def __post_init__(self) -> None:
        for side, tensors in (("input", self.inputs), ("output", self.outputs)):
            names = [t.name for t in tensors]
            if len(set(names)) != len(names):
                raise ValueError(f"an {side} name is declared twice: {names}")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorDecl:
        return _find(self.inputs, name, "input")

    def output(self, name: str) -> TensorDecl:
        return _find(self.outputs, name, "output")

    def has_output(self, name: str) -> bool:
        return name in self.output_names


def _find(tensors: tuple[TensorDecl, ...], name: str, side: str) -> TensorDecl:
    for t in tensors:
        if t.name == name:
            return t
    raise KeyError(f"no {side} {name!r} declared (declared: {[t.name for t in tensors]})")


_RECOMMENDATIONS = (
    TensorDecl(MOVIE_IDS, "DT_STRING", (-1, -1)),  # [users, K]: K = the batch's largest k, rows padded with ""
    TensorDecl(MOVIE_TITLES, "DT_STRING", (-1, -1)),
    TensorDecl(SCORES, "DT_FLOAT", (-1, -1)),  # padding: -inf
)

SIGNATURES: dict[str, SignatureDecl] = {
    PREDICT_SIGNATURE: SignatureDecl(
        inputs=(TensorDecl(USER_ID, "DT_STRING", (-1,)), TensorDecl(MOVIE_ID, "DT_STRING", (-1,))),
        outputs=(
            TensorDecl(PREDICTED_RATING, "DT_FLOAT", (-1,)),
            # EMBEDDING_DIM for the default model, 32 for the reference presets.
            TensorDecl(USER_EMBEDDING, "DT_FLOAT", (-1, -1)),
            TensorDecl(MOVIE_EMBEDDING, "DT_FLOAT", (-1, -1)),
        ),
    ),
    RECOMMEND_SIGNATURE: SignatureDecl(
        inputs=(TensorDecl(USER_ID, "DT_STRING", (-1,)), TensorDecl(K, "DT_INT32", (-1,))),
        outputs=_RECOMMENDATIONS,
    ),
    RECOMMEND_FROM_RATINGS_SIGNATURE: SignatureDecl(
        inputs=(
            TensorDecl(USER_ID, "DT_STRING", (-1,)),
            TensorDecl(K, "DT_INT32", (-1,)),
            TensorDecl(RATED_MOVIE_IDS, "DT_STRING", (-1, -1)),
            TensorDecl(RATINGS, "DT_FLOAT", (-1, -1)),
        ),
        outputs=_RECOMMENDATIONS,
    ),
    MODEL_CARD_SIGNATURE: SignatureDecl(
        inputs=(TensorDecl(MODEL_CARD_REQUEST, "DT_INT32", (-1,)),),
        outputs=(TensorDecl(MODEL_CARD, "DT_STRING", (-1,)),),
    ),
}


def signature(name: str) -> SignatureDecl:
    """The declaration of signature ``name``, looked up when called (so a test may patch SIGNATURES)."""
    try:
        return SIGNATURES[name]
    except KeyError:
        raise KeyError(f"no signature {name!r} in client/contract.py (declared: {sorted(SIGNATURES)})") from None


def shape_matches(declared: tuple[int, ...], actual: tuple[int, ...] | None) -> bool:
    """``actual`` (-1 or None for unknown dimensions) fits the declaration (-1 matches anything)."""
    if actual is None or len(actual) != len(declared):
        return False
    return all(d == -1 or a == d for d, a in zip(declared, actual))


__all__ = [
    "MODEL_NAME",
    "GRPC_PORT",
    "PREDICT_SIGNATURE",
    "RECOMMEND_SIGNATURE",
    "RECOMMEND_FROM_RATINGS_SIGNATURE",
    "PREDICT_METHOD",
    "MAX_RECOMMEND_USERS",
    "USER_ID",
    "MOVIE_ID",
    "K",
    "K_PER_USER_MESSAGE",
    "RATED_MOVIE_IDS",
    "RATINGS",
    "RATING_MIN",
    "RATING_MAX",
    "MAX_RATED_MOVIES",
    "MAX_RATED_WIDTH",
    "PAIRS_MESSAGE",
    "K_POSITIVE_MESSAGE",
    "TOO_MANY_USERS_MESSAGE",
    "RATED_SHAPE_MESSAGE",
    "RATED_ROWS_MESSAGE",
    "TOO_MANY_RATED_MESSAGE",
    "RATING_RANGE_MESSAGE",
    "PREDICTED_RATING",
    "USER_EMBEDDING",
    "MOVIE_EMBEDDING",
    "MOVIE_IDS",
    "MOVIE_TITLES",
    "SCORES",
    "MODEL_CARD_SIGNATURE",
    "MODEL_CARD_REQUEST",
    "MODEL_CARD",
    "NUMPY_DTYPES",
    "SIGNATURES",
    "TensorDecl",
    "SignatureDecl",
    "signature",
    "shape_matches",
]
