"""Channel options: deadlines belong to calls, retries belong to the channel.

Retries use gRPC's own service-config retry policy, so the backoff, the attempt
cap and "retry only UNAVAILABLE" are enforced by gRPC core for the sync and the
asyncio client alike. Only UNAVAILABLE is retried: it usually means the server
could not be reached, but a connection reset or GOAWAY after the request was sent
is UNAVAILABLE too, so the model may already have run it. Retrying is safe anyway
because every method the client calls is a read (Predict, GetModelMetadata,
GetModelStatus change nothing on the server). Every other code is the server's
answer, and retrying would just repeat it.

A target may also name several servers, comma-separated (``host1:8500,host2:8500``),
for setups without a proxy: gRPC's default ``pick_first`` policy would send every call
of a channel to one server, so such a target becomes one static ``ipv4:``/``ipv6:``
target with the ``round_robin`` policy, which keeps a connection to each address and
spreads calls over the ready ones. Host names are resolved once, when the client is
created. With TLS such a target carries no host name, so the certificate is checked
against the host name given (client/auth.py).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any

import grpc

from .auth import PLAINTEXT, Security, channel_credentials
from .messages import SERVICES

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
                        "name": [{"service": s} for s in SERVICES],
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


def channel_options(retry: RetryPolicy, *, round_robin: bool = False) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        # A server that is starting up refuses connections; gRPC's default reconnect backoff
        # (1 s, growing to 120 s) would outlast every retry, so reconnect quickly instead.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 500),
        # recommend for many users with large k can exceed the 4 MiB default.
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    service_config: dict[str, Any] = json.loads(retry.service_config()) if retry.max_attempts > 1 else {}
    if round_robin:
        service_config["loadBalancingConfig"] = [{"round_robin": {}}]
    options.append(("grpc.enable_retries", 1 if retry.max_attempts > 1 else 0))
    if service_config:
        options.append(("grpc.service_config", json.dumps(service_config)))
    return options


def grpc_target(target: str) -> tuple[str, bool]:
    """(the target to give gRPC, whether to balance with round_robin).

    One address passes through unchanged (gRPC's DNS resolver, ``pick_first``).
    Several comma-separated ``HOST:PORT`` addresses become ``ipv4:a:p,b:p`` (or
    ``ipv6:[a]:p,...``), host names resolved now to every IPv4 address they have;
    ValueError names a malformed part, an unresolvable host, or a v4/v6 mix.
    """
    if "," not in target:
        return target, False
    addresses: list[str] = []
    families: set[int] = set()
    for part in (p.strip() for p in target.split(",")):
        host, port = _split_host_port(part, target)
        for family, address in _resolve(host, port, target):
            families.add(family)
            entry = f"[{address}]:{port}" if family == 6 else f"{address}:{port}"
            if entry not in addresses:
                addresses.append(entry)
    if len(families) > 1:
        raise ValueError(f"target {target!r} mixes IPv4 and IPv6 addresses; gRPC's static resolver takes one family")
    scheme = "ipv6" if families == {6} else "ipv4"
    return f"{scheme}:{','.join(addresses)}", True


def _split_host_port(part: str, target: str) -> tuple[str, int]:
    host, sep, port = part.rpartition(":")
    if not part or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r}: each comma-separated address must be HOST:PORT, got {part!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _resolve(host: str, port: int, target: str) -> list[tuple[int, str]]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(literal.version, str(literal))]
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as error:
        raise ValueError(f"target {target!r}: cannot resolve {host!r} to an IPv4 address ({error})") from error
    return [(4, info[4][0]) for info in infos]


def open_channel(target: str, retry: RetryPolicy, security: Security = PLAINTEXT, *, aio: bool = False) -> Any:
    """A ``grpc.Channel`` (or ``grpc.aio.Channel``) to ``target``: round robin over several
    addresses, the retry policy, and TLS and a token as ``security`` asks (client/auth.py)."""
    credentials, security_options = channel_credentials(target, security)
    channel_target, round_robin = grpc_target(target)  # several addresses: round_robin
    options = channel_options(retry, round_robin=round_robin) + security_options
    module = grpc.aio if aio else grpc
    if credentials is None:
        return module.insecure_channel(channel_target, options=options)
    return module.secure_channel(channel_target, credentials, options=options)
