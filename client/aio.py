"""The asyncio twin of ``RecommenderClient`` (``grpc.aio``), for async applications.

It shares its constructor with the sync client (``client.base``), and so the
arguments, credentials and the channel's retry policy (``client.channel``); it shares
validation, request building, parsing and the readiness rule too (``client.protocol``),
so only the awaiting differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, overload

import grpc
import numpy as np

from . import protocol
from .base import ClientBase
from .contract import RECOMMEND_FROM_RATINGS_SIGNATURE
from .errors import SignatureNotFound, from_rpc_error
from .protocol import Id, ModelMetadata, Recommendation, VersionStatus


class AsyncRecommenderClient(ClientBase):
    """``async with AsyncRecommenderClient(target) as client: await client.recommend(42)``.

    Same arguments, methods and errors as ``RecommenderClient``. Create it inside the
    running event loop (grpc.aio channels bind to the loop that creates them).
    """

    _AIO = True

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def __aenter__(self) -> AsyncRecommenderClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @overload
    async def recommend(self, user_ids: Id, k: int = 10, *, timeout_s: float | None = None) -> list[Recommendation]: ...
    @overload
    async def recommend(
        self, user_ids: Sequence[Id], k: int = 10, *, timeout_s: float | None = None
    ) -> list[list[Recommendation]]: ...

    async def recommend(self, user_ids, k=10, *, timeout_s=None):
        users = protocol.normalize_ids(user_ids, "user_ids")
        k = protocol.validate_k(k)
        request = protocol.recommend_request(self.model, self.version, users, k)
        response = await self._call(self._predict, request, timeout_s)
        rows = protocol.parse_recommend(response, len(users))
        return rows[0] if protocol.is_single(user_ids) else rows

    @overload
    async def recommend_from_ratings(
        self, ratings: Mapping[Id, float], k: int = 10, *, user_id: Id | None = None, timeout_s: float | None = None
    ) -> list[Recommendation]: ...
    @overload
    async def recommend_from_ratings(
        self,
        ratings: Sequence[Mapping[Id, float]],
        k: int = 10,
        *,
        user_id: Sequence[Id | None] | None = None,
        timeout_s: float | None = None,
    ) -> list[list[Recommendation]]: ...

    async def recommend_from_ratings(self, ratings, k=10, *, user_id=None, timeout_s=None):
        users, rows = protocol.ratings_batch(ratings, user_id)
        k = protocol.validate_k(k)
        request = protocol.recommend_from_ratings_request(self.model, self.version, users, rows, k)
        try:
            response = await self._call(self._predict, request, timeout_s)
        except SignatureNotFound as error:
            raise protocol.explain_missing_signature(error, self.model, self.target) from error
        recommendations = protocol.parse_recommend(response, len(users), RECOMMEND_FROM_RATINGS_SIGNATURE)
        return recommendations[0] if isinstance(ratings, Mapping) else recommendations

    async def predict(
        self, user_ids: Id | Sequence[Id], movie_ids: Id | Sequence[Id], *, timeout_s: float | None = None
    ) -> np.ndarray:
        users, movies = protocol.pair_ids(user_ids, movie_ids)
        request = protocol.predict_request(self.model, self.version, users, movies)
        return protocol.parse_predict(await self._call(self._predict, request, timeout_s), len(users))

    async def metadata(self, *, timeout_s: float | None = None) -> ModelMetadata:
        request = protocol.metadata_request(self.model, self.version)
        return protocol.parse_metadata(await self._call(self._get_metadata, request, timeout_s))

    async def model_card(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        request = protocol.model_card_request(self.model, self.version)
        return protocol.parse_model_card(await self._call(self._predict, request, timeout_s))

    async def status(self, *, timeout_s: float | None = None) -> list[VersionStatus]:
        request = protocol.status_request(self.model, self.version)
        return protocol.parse_status(await self._call(self._get_status, request, timeout_s))

    async def wait_until_ready(self, timeout_s: float = 60.0, poll_s: float = 0.1) -> list[VersionStatus]:
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                versions = await self.status(timeout_s=min(remaining, 1.0))
            except protocol.NOT_READY_YET as error:
                last = str(error)
            else:
                if protocol.is_ready(versions):
                    return versions
                last = protocol.describe_versions(versions)
            await asyncio.sleep(min(poll_s, max(deadline - time.monotonic(), 0)))
        raise protocol.not_ready(self.model, self.target, timeout_s, last)

    async def _call(self, method: Any, request: Any, timeout_s: float | None) -> Any:
        if self._closed:
            raise RuntimeError("AsyncRecommenderClient is closed")
        try:
            timeout = self.timeout_s if timeout_s is None else timeout_s
            return await method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error
