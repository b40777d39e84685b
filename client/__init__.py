"""Python SDK and command line for the movielens recommender's gRPC API.

    from client import RecommenderClient
    with RecommenderClient("localhost:8500") as client:
        for rec in client.recommend(42, k=10):
            print(rec.movie_id, rec.title, rec.score)
        new_user = client.recommend_from_ratings({50: 5, 172: 4, 181: 5}, k=10)

    # The public entry: TLS and a bearer token (client/auth.py)
    RecommenderClient("edge.example:8500", tls_ca="ca.pem", token=open("demo.jwt").read())

The same package is the repository's ``client/`` and the thin distribution's
``movielens_client`` (``make client-wheel``; docs/client.md): it needs grpcio,
protobuf and numpy, never TensorFlow (TF Serving's messages come from
``client/messages.py``), and importing it changes nothing in the host process (no
environment variables, logging or import hooks). Modules import each other relatively
so that both names work. The names below load on first use, so ``import`` alone stays
cheap.
"""

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AsyncRecommenderClient": ".aio",
    "NO_RETRIES": ".channel",
    "RetryPolicy": ".channel",
    "DEFAULT_TARGET": ".base",
    "RecommenderClient": ".client",
    "DeadlineExceeded": ".errors",
    "FailedPrecondition": ".errors",
    "InvalidArgument": ".errors",
    "MalformedResponse": ".errors",
    "NotFound": ".errors",
    "PermissionDenied": ".errors",
    "RecommenderError": ".errors",
    "ResourceExhausted": ".errors",
    "SignatureNotFound": ".errors",
    "Unauthenticated": ".errors",
    "Unavailable": ".errors",
    "ModelMetadata": ".protocol",
    "Recommendation": ".protocol",
    "Signature": ".protocol",
    "TensorInfo": ".protocol",
    "VersionStatus": ".protocol",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .aio import AsyncRecommenderClient
    from .channel import NO_RETRIES, RetryPolicy
    from .base import DEFAULT_TARGET
    from .client import RecommenderClient
    from .errors import (
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
    from .protocol import ModelMetadata, Recommendation, Signature, TensorInfo, VersionStatus


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
