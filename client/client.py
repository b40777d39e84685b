"""The synchronous recommender client: the API applications call.

One ``RecommenderClient`` owns one gRPC channel that every call reuses (HTTP/2
multiplexes calls over it, so there is no per-call connection cost). Inputs are
validated before anything is sent, every call carries a deadline, UNAVAILABLE
is retried by the channel, and failures surface as ``RecommenderError``
subclasses that keep the gRPC code and the server's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

import grpc
import numpy as np

from . import protocol
from .base import ClientBase
from .contract import RECOMMEND_FROM_RATINGS_SIGNATURE
from .errors import SignatureNotFound, from_rpc_error
from .protocol import Id, ModelMetadata, Recommendation, VersionStatus

_Response = TypeVar("_Response")


class RecommenderClient(ClientBase):
    """Client for the movielens model behind a TF Serving gRPC API.

    >>> with RecommenderClient("localhost:8500") as client:
    ...     top = client.recommend(42, k=5)          # list[Recommendation]
    ...     many = client.recommend([1, 2], k=5)     # list[list[Recommendation]]
    ...     ratings = client.predict(42, [50, 172])  # np.ndarray float32, shape [2]
    ...     new = client.recommend_from_ratings({50: 5, 172: 4, 181: 5}, k=5)  # a new user

    ``target`` is ``HOST:PORT`` or several comma-separated (``h1:8500,h2:8500``), which
    spreads calls over them with gRPC's round_robin policy (see client/channel.py).
    ``version=None`` asks for the newest loaded version; ``label="canary"`` (keyword) for the
    version the server's config labels so (docs/rollouts.md). ``timeout_s`` is the default
    deadline of each call (retries included); every method also takes its own.

    TLS and credentials (client/auth.py): ``tls_ca`` (a CA certificate's path or
    PEM bytes) turns TLS on; ``token`` (a JWT) is sent as ``authorization: Bearer`` on
    every call and needs TLS unless the target is loopback; ``client_cert`` and
    ``client_key`` add mutual TLS; ``tls_server_name`` is the name the server's
    certificate is checked against when it is not the target's host name.
    """

    # --- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> RecommenderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        version = "newest" if self.version is None else self.version
        return f"RecommenderClient(target={self.target!r}, model={self.model!r}, version={version})"

    # --- calls --------------------------------------------------------------

    @overload
    def recommend(self, user_ids: Id, k: int = 10, *, timeout_s: float | None = None) -> list[Recommendation]: ...
    @overload
    def recommend(
        self, user_ids: Sequence[Id], k: int = 10, *, timeout_s: float | None = None
    ) -> list[list[Recommendation]]: ...

    def recommend(self, user_ids, k=10, *, timeout_s=None):
        """Top-k unrated movies, best first: one id -> one list; a sequence of ids -> one list per id.

        The server caps k at the model's ``max_k`` (see ``model_card()``), so a row can be
        shorter than k when k is very large.
        """
        users = protocol.normalize_ids(user_ids, "user_ids")
        k = protocol.validate_k(k)
        request = protocol.recommend_request(self.model, self.version, users, k)
        rows = protocol.parse_recommend(self._call(self._predict, request, timeout_s), len(users))
        return rows[0] if protocol.is_single(user_ids) else rows

    @overload
    def recommend_from_ratings(
        self, ratings: Mapping[Id, float], k: int = 10, *, user_id: Id | None = None, timeout_s: float | None = None
    ) -> list[Recommendation]: ...
    @overload
    def recommend_from_ratings(
        self,
        ratings: Sequence[Mapping[Id, float]],
        k: int = 10,
        *,
        user_id: Sequence[Id | None] | None = None,
        timeout_s: float | None = None,
    ) -> list[list[Recommendation]]: ...

    def recommend_from_ratings(self, ratings, k=10, *, user_id=None, timeout_s=None):
        """Top-k for a user described by the movies they rated, ``{movie_id: rating}`` (0.5-5), best first.

        For new users: their training history (if any) is not used, the given ratings replace
        it, and the given movies are never recommended. ``user_id`` (optional) adds a known
        user's profile; an unknown id is no profile. Unknown movie ids are ignored by the model.
        One mapping -> one list; a sequence of mappings (a batch of users, with ``user_id``
        None or one id-or-None per mapping) -> one list per mapping. Rows can be shorter than
        ``k`` when k is very large (the model caps it, as for ``recommend``).

        Raises ``SignatureNotFound`` (a ``FailedPrecondition``) when the served model has no
        ``recommend_from_ratings`` signature: only default-preset models serve it.
        """
        users, rows = protocol.ratings_batch(ratings, user_id)
        k = protocol.validate_k(k)
        request = protocol.recommend_from_ratings_request(self.model, self.version, users, rows, k)
        try:
            response = self._call(self._predict, request, timeout_s)
        except SignatureNotFound as error:
            raise protocol.explain_missing_signature(error, self.model, self.target) from error
        recommendations = protocol.parse_recommend(response, len(users), RECOMMEND_FROM_RATINGS_SIGNATURE)
        return recommendations[0] if isinstance(ratings, Mapping) else recommendations

    def predict(self, user_ids: Id | Sequence[Id], movie_ids: Id | Sequence[Id], *, timeout_s: float | None = None) -> np.ndarray:
        """Predicted ratings (float32, one per pair). A single id on either side pairs with every id on the other."""
        users, movies = protocol.pair_ids(user_ids, movie_ids)
        request = protocol.predict_request(self.model, self.version, users, movies)
        return protocol.parse_predict(self._call(self._predict, request, timeout_s), len(users))

    def metadata(self, *, timeout_s: float | None = None) -> ModelMetadata:
        """The served version and its signatures (GetModelMetadata's signature_def)."""
        request = protocol.metadata_request(self.model, self.version)
        return protocol.parse_metadata(self._call(self._get_metadata, request, timeout_s))

    def model_card(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The model card (metrics, config, data hashes, max_k) via the export's ``model_card`` signature."""
        request = protocol.model_card_request(self.model, self.version)
        return protocol.parse_model_card(self._call(self._predict, request, timeout_s))

    def status(self, *, timeout_s: float | None = None) -> list[VersionStatus]:
        """Every version the server knows for the model, with its state, oldest first."""
        request = protocol.status_request(self.model, self.version)
        return protocol.parse_status(self._call(self._get_status, request, timeout_s))

    def wait_until_ready(self, timeout_s: float = 60.0, poll_s: float = 0.1) -> list[VersionStatus]:
        """Block until the model (or the pinned version) is AVAILABLE; returns its status.

        Raises ``DeadlineExceeded`` naming the last thing seen (server down, model not
        loaded yet, or a version's load error) when ``timeout_s`` passes first.
        """
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                versions = self.status(timeout_s=min(remaining, 1.0))
            except protocol.NOT_READY_YET as error:
                last = str(error)
            else:
                if protocol.is_ready(versions):
                    return versions
                last = protocol.describe_versions(versions)
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0)))
        raise protocol.not_ready(self.model, self.target, timeout_s, last)

    def _call(self, method: Callable[..., _Response], request: Any, timeout_s: float | None) -> _Response:
        if self._closed:
            raise RuntimeError("RecommenderClient is closed")
        try:
            return method(request, timeout=self.timeout_s if timeout_s is None else timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

