"""Python SDK and command line for the movielens recommender's gRPC API.

    from client import RecommenderClient
    with RecommenderClient("localhost:8500") as client:
        for rec in client.recommend(42, k=10):
            print(rec.movie_id, rec.title, rec.score)
        new_user = client.recommend_from_ratings({50: 5, 172: 4, 181: 5}, k=10)

The names below load on first use: TF Serving's protos import TensorFlow
(seconds, plus native log lines on stderr), and ``python -m client`` wants to
import them itself with those lines silenced.
"""

import importlib
from typing import TYPE_CHECKING, Any

import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

_EXPORTS = {
    "AsyncRecommenderClient": "client.aio",
    "NO_RETRIES": "client.channel",
    "RetryPolicy": "client.channel",
    "DEFAULT_TARGET": "client.client",
    "RecommenderClient": "client.client",
    "DeadlineExceeded": "client.errors",
    "FailedPrecondition": "client.errors",
    "InvalidArgument": "client.errors",
    "MalformedResponse": "client.errors",
    "NotFound": "client.errors",
    "PermissionDenied": "client.errors",
    "RecommenderError": "client.errors",
    "ResourceExhausted": "client.errors",
    "SignatureNotFound": "client.errors",
    "Unauthenticated": "client.errors",
    "Unavailable": "client.errors",
    "ModelMetadata": "client.protocol",
    "Recommendation": "client.protocol",
    "Signature": "client.protocol",
    "TensorInfo": "client.protocol",
    "VersionStatus": "client.protocol",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from client.aio import AsyncRecommenderClient
    from client.channel import NO_RETRIES, RetryPolicy
    from client.client import DEFAULT_TARGET, RecommenderClient
    from client.errors import (
        DeadlineExceeded,
        FailedPrecondition,
        InvalidArgument,
        MalformedResponse,
        NotFound,
        PermissionDenied,
        RecommenderError,
        ResourceExhausted,
        SignatureNotFound,
        Unauthenticated,
        Unavailable,
    )
    from client.protocol import ModelMetadata, Recommendation, Signature, TensorInfo, VersionStatus


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
