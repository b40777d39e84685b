"""Channel options: deadlines belong to calls, retries belong to the channel.

Retries use gRPC's own service-config retry policy, so the backoff, the attempt
cap and "retry only UNAVAILABLE" are enforced by gRPC core for the sync and the
asyncio client alike. Only UNAVAILABLE is retried: it usually means the server
could not be reached, but a connection reset or GOAWAY after the request was sent
is UNAVAILABLE too, so the model may already have run it. Retrying is safe anyway
because every method the client calls is a read (Predict, GetModelMetadata,
GetModelStatus change nothing on the server). Every other code is the server's
answer, and retrying would just repeat it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
_MIN_BACKOFF_S = 0.001


def _duration(seconds: float) -> str:
    # A JSON protobuf Duration: "0.2s" parses, but str(1e-05) gives "1e-05s", which does not.
    return f"{seconds:.3f}s"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """gRPC retryPolicy for UNAVAILABLE. gRPC caps max_attempts at 5; 1 disables retries."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be 1..5 (gRPC's cap), got {self.max_attempts}")
        # The service config carries durations as decimal seconds (see _duration); below 1 ms
        # they would round to "0.000s", which gRPC rejects.
        if self.initial_backoff_s < _MIN_BACKOFF_S or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"backoffs must satisfy {_MIN_BACKOFF_S} <= initial_backoff_s <= max_backoff_s, got "
                f"{self.initial_backoff_s} and {self.max_backoff_s}"
            )
        if self.backoff_multiplier < 1:
            raise ValueError(f"backoff_multiplier must be >= 1, got {self.backoff_multiplier}")

    def service_config(self) -> str:
        return json.dumps(
            {
                "methodConfig": [
                    {
                        "name": [{"service": s} for s in _SERVICES],
                        "retryPolicy": {
                            "maxAttempts": self.max_attempts,
                            "initialBackoff": _duration(self.initial_backoff_s),
                            "maxBackoff": _duration(self.max_backoff_s),
                            "backoffMultiplier": self.backoff_multiplier,
                            "retryableStatusCodes": ["UNAVAILABLE"],
                        },
                    }
                ]
            }
        )


NO_RETRIES = RetryPolicy(max_attempts=1)


def channel_options(retry: RetryPolicy) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        # A server that is starting up refuses connections; gRPC's default reconnect backoff
        # (1 s, growing to 120 s) would outlast every retry, so reconnect quickly instead.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
        # recommend for many users with large k can exceed the 4 MiB default.
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    if retry.max_attempts > 1:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", retry.service_config())]
    else:
        options += [("grpc.enable_retries", 0)]
    return options
