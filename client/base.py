"""What the sync and the asyncio client share: their constructor.

``RecommenderClient`` (client/client.py) and ``AsyncRecommenderClient`` (client/aio.py)
take the same arguments and hold the same things: the options, checked before anything
is sent; the credentials, read; one gRPC channel with the retry policy; and TF Serving's
method handles on it. Only the channel's kind differs (``grpc.aio`` for the asyncio client),
so the constructor is stated once, here, and each client says which kind it opens.
"""

from __future__ import annotations

from typing import ClassVar

from . import messages, protocol
from .auth import Pem, call_metadata, security
from .channel import RetryPolicy, open_channel
from .contract import GRPC_PORT, MODEL_NAME

DEFAULT_TARGET = f"localhost:{GRPC_PORT}"
DEFAULT_TIMEOUT_S = 5.0


class ClientBase:
    """The constructor of both clients; ``RecommenderClient``'s docstring describes the arguments."""

    _AIO: ClassVar[bool] = False  # True: the channel is a grpc.aio channel, bound to the running event loop

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        model: str = MODEL_NAME,
        version: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = RetryPolicy(),
        *,
        tls_ca: Pem | None = None,
        token: str | None = None,
        client_cert: Pem | None = None,
        client_key: Pem | None = None,
        tls_server_name: str | None = None,
        label: str | None = None,
    ) -> None:
        protocol.validate_client_options(target, model, version, timeout_s)
        protocol.validate_label(version, label)
        credentials = security(tls_ca, token, client_cert, client_key, tls_server_name)
        self.target = target
        self.model = model
        # A version label (`label="canary"`, TF Serving's ModelSpec.version_label) travels where the
        # version number would: every request names the labelled version instead of the newest.
        self.label = label
        self.version = label if label is not None else version
        self.timeout_s = timeout_s
        # The token rides on each call as metadata (client/auth.py says why not call credentials).
        self._metadata = call_metadata(credentials)
        self._channel = open_channel(target, retry, credentials, aio=self._AIO)
        # Generic method handles (client/messages.py): TF Serving's generated stubs would import TensorFlow.
        self._predict = messages.PREDICT.handle(self._channel)
        self._get_metadata = messages.GET_MODEL_METADATA.handle(self._channel)
        self._get_status = messages.GET_MODEL_STATUS.handle(self._channel)
        self._closed = False
