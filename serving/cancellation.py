"""Whether the caller of the request being handled is still there.

A gRPC caller that cancels, or whose deadline passes, is gone: the answer can
no longer reach it, so running its graph only takes CPU from callers who are
still waiting. The front end says how to ask (``context.is_active`` for gRPC,
the ``--rest_api_timeout_in_ms`` deadline for REST) with ``caller(alive)``
around the handler; the layers below ask ``caller_gone()`` right before
they run a graph, and the batcher drops a gone caller's rows from a pending
batch before the merged run (serving/batching.py). A context variable rather
than a parameter, because the question is asked several layers down
(servable, example APIs, batcher) and each handler runs in its own thread.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import grpc

from serving.errors import ServingError

Alive = Callable[[], bool]

# The caller is gone, so nobody reads this; it is what the server's own log and metrics record.
CANCELLED_MESSAGE = "the caller cancelled the request or its deadline passed before its graph ran; not run"

_alive: contextvars.ContextVar[Alive | None] = contextvars.ContextVar("serving_caller_alive", default=None)


@contextlib.contextmanager
def caller(alive: Alive | None) -> Iterator[None]:
    """Within the block, ``alive()`` says whether the current request's caller still waits for the answer."""
    token = _alive.set(alive)
    try:
        yield
    finally:
        _alive.reset(token)


def current() -> Alive | None:
    """The current request's liveness check (None: no front end said, e.g. warmup or a unit test)."""
    return _alive.get()


def is_gone(alive: Alive | None) -> bool:
    if alive is None:
        return False
    try:
        return not alive()
    except Exception:  # a liveness probe must never fail a request
        return False


def cancelled() -> ServingError:
    return ServingError(grpc.StatusCode.CANCELLED, CANCELLED_MESSAGE)


def check_caller() -> None:
    """Raises CANCELLED when the current request's caller is gone."""
    if is_gone(current()):
        raise cancelled()
