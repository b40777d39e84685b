"""The client's exceptions: one small hierarchy instead of raw ``grpc.RpcError``.

Callers catch ``RecommenderError`` (or one subclass for the case they handle)
and still see the gRPC status code and the server's own message, which for TF
Serving names the missing model, version or signature.
"""

from __future__ import annotations

import re

import grpc


class RecommenderError(Exception):
    """A failed call to the recommender; ``code`` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(RecommenderError):
    """The server rejected the request's inputs (bad shapes or dtypes, k <= 0, an in-graph assertion)."""


class NotFound(RecommenderError):
    """The model or the requested version is not loaded on the server."""


class FailedPrecondition(RecommenderError):
    """The server cannot run this request in its current configuration."""


class SignatureNotFound(FailedPrecondition):
    """The served model version has no signature of that name (TF Serving's FAILED_PRECONDITION
    ``Serving signature key "NAME" not found.``), e.g. ``recommend_from_ratings`` on a model of a
    reference preset. ``signature`` is the missing name."""

    def __init__(self, code: grpc.StatusCode, message: str, signature: str) -> None:
        super().__init__(code, message)
        self.signature = signature


class Unavailable(RecommenderError):
    """The server could not be reached (after the channel's retries)."""


class DeadlineExceeded(RecommenderError):
    """The call did not finish before its deadline."""


class Unauthenticated(RecommenderError):
    """The server (the public entry) did not accept the caller's credentials: no token, or one
    that is expired, malformed or signed by a key it does not trust."""


class PermissionDenied(RecommenderError):
    """The server knows the caller but refuses this call (e.g. a method the public entry does not route)."""


class ResourceExhausted(RecommenderError):
    """The caller is over its rate limit, or the server is shedding load; retry later, more slowly."""


class MalformedResponse(RecommenderError):
    """The server answered OK, but not with what the signature promises (an output missing,
    or of the wrong dtype, shape or value count).

    No status code came from the server, so ``code`` is INTERNAL: gRPC's code for "an
    invariant of the system is broken". Retrying would most likely get the same answer.
    """

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INTERNAL, message)


_BY_CODE: dict[grpc.StatusCode, type[RecommenderError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}

# TF Serving's words for a signature the loaded version lacks (servable's signature_def lookup).
_MISSING_SIGNATURE = re.compile(r'Serving signature key "([^"]*)" not found')


def from_rpc_error(error: grpc.RpcError) -> RecommenderError:
    """Translate a ``grpc.RpcError`` (sync or aio) into the matching subclass."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else None
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    message = details or str(error)
    missing = _MISSING_SIGNATURE.search(message) if code == grpc.StatusCode.FAILED_PRECONDITION else None
    if missing:
        return SignatureNotFound(code, message, missing.group(1))
    cls = _BY_CODE.get(code, RecommenderError)
    return cls(code, message)
