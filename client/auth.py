"""TLS and bearer tokens: how the client proves who it is and checks whom it talks to.

The public entry (Envoy) speaks TLS with a server certificate from the deployment's CA
and wants ``authorization: Bearer <JWT>`` on every call (see docs/security.md
and docs/client.md). The client takes the same five values everywhere (Python keywords, CLI
flags, environment variables):

- ``tls_ca``: the CA certificate to trust (a path, or PEM bytes). Giving it, or a
  client certificate, turns TLS on; without it (but with a client certificate) the
  system's trusted roots are used.
- ``token``: the raw JWT, sent as ``authorization: Bearer <token>`` metadata on every
  call (``call_metadata``; the clients add it next to each call's deadline).
- ``client_cert`` / ``client_key``: a client certificate for mutual TLS (paths or PEM
  bytes), both or neither.
- ``tls_server_name``: the name to verify the server's certificate against, when it is
  not the host name in the target (``grpc.ssl_target_name_override``).

Rules, all checked before anything is sent (ValueError otherwise):

- A token without TLS is refused, except on loopback (``localhost``, ``127.0.0.0/8``,
  ``::1``): over plain text anyone on the path could read and replay it. On loopback the
  channel uses gRPC's local credentials (``grpc.local_channel_credentials``, plain TCP
  that gRPC only connects when the peer is on this host), so a local test server that
  checks tokens can be called without certificates.
- The token is plain call metadata, not gRPC call credentials
  (``grpc.access_token_call_credentials``): gRPC runs a call-credentials plugin on a
  thread of its own per call, and under gevent (the Locust user) that is gevent's hub
  thread pool, 10 threads by default; 16 Locust users through Envoy then saw 44 of 49
  calls end DEADLINE_EXCEEDED waiting for a thread. Metadata is added inline, so there
  is nothing to wait for. The rules above are what keeps it off plain text.
- Several comma-separated targets (round robin) become one ``ipv4:``/``ipv6:`` target
  of resolved addresses (client/channel.py), which carries no host name to verify the
  certificate against, so the host name given is verified instead: ``tls_server_name``
  if set, else the one host name all addresses share (``localhost:8500,localhost:8501``
  verifies ``localhost``). Different host names need ``tls_server_name`` (one
  certificate must then cover all of them, as it does behind a load-balanced name).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import grpc

Pem = Union[str, os.PathLike, bytes]
"""A PEM file's path, or its contents as bytes."""

# Environment fallbacks of the CLI and the load test (the Python API reads no environment).
ENV_TLS_CA = "MOVIELENS_TLS_CA"
ENV_TOKEN = "MOVIELENS_TOKEN"
ENV_TOKEN_FILE = "MOVIELENS_TOKEN_FILE"
ENV_CLIENT_CERT = "MOVIELENS_CLIENT_CERT"
ENV_CLIENT_KEY = "MOVIELENS_CLIENT_KEY"
ENV_TLS_SERVER_NAME = "MOVIELENS_TLS_SERVER_NAME"

_BEARER = "bearer "


@dataclass(frozen=True)
class Security:
    """Resolved credentials: PEM bytes read, the token checked. Build it with ``security()``."""

    tls_ca: bytes | None = None
    token: str | None = field(default=None, repr=False)
    client_cert: bytes | None = None
    client_key: bytes | None = field(default=None, repr=False)
    tls_server_name: str | None = None

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None or self.client_cert is not None


PLAINTEXT = Security()


def _pem(value: Pem | None, what: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        path = Path(value)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read the {what} file {str(path)!r} ({error.strerror or error})") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"the {what} is not PEM (no '-----BEGIN' line)")
    return data


def _token(token: str | None) -> str | None:
    if token is None:
        return None
    token = token.strip()
    if token[: len(_BEARER)].lower() == _BEARER:  # "Bearer eyJ...": the scheme is added on the wire
        token = token[len(_BEARER):].strip()
    if not token:
        raise ValueError("the token is empty")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("the token must be one line without spaces (a JWT: header.payload.signature)")
    return token


def security(
    tls_ca: Pem | None = None,
    token: str | None = None,
    client_cert: Pem | None = None,
    client_key: Pem | None = None,
    tls_server_name: str | None = None,
) -> Security:
    """The client's keywords, read and checked; ValueError names what is wrong."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together: give both for mutual TLS, or neither")
    result = Security(
        tls_ca=_pem(tls_ca, "tls_ca (CA certificate)"),
        token=_token(token),
        client_cert=_pem(client_cert, "client_cert (client certificate)"),
        client_key=_pem(client_key, "client_key (client private key)"),
        tls_server_name=tls_server_name.strip() if tls_server_name else None,
    )
    if result.tls_server_name is not None and not result.tls:
        raise ValueError("tls_server_name needs TLS: give tls_ca (or a client certificate) too")
    return result


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def target_hosts(target: str) -> list[str] | None:
    """The host names in a ``HOST:PORT[,HOST:PORT...]`` target; None for other gRPC target forms."""
    hosts = []
    for part in (p.strip() for p in target.split(",")):
        if "://" in part or part.startswith(("unix:", "ipv4:", "ipv6:", "dns:")):
            return None
        host, sep, port = part.rpartition(":")
        if not sep or not host:
            return None
        hosts.append(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    return hosts


def channel_credentials(target: str, sec: Security) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    """(credentials for a secure channel, or None for an insecure one; extra channel options).

    ``target`` is what the caller gave (before client/channel.py resolves several
    addresses), so the host names are still there to verify and to judge "loopback".
    """
    hosts = target_hosts(target)
    options: list[tuple[str, Any]] = []
    if sec.tls:
        channel = grpc.ssl_channel_credentials(
            root_certificates=sec.tls_ca, private_key=sec.client_key, certificate_chain=sec.client_cert
        )
        name = sec.tls_server_name
        if name is None and "," in target:
            names = sorted(set(hosts or ()))
            if len(names) != 1:
                raise ValueError(
                    f"target {target!r} names several hosts; with TLS over several addresses give tls_server_name "
                    "(the name on the servers' certificate)"
                )
            name = names[0]
        if name is not None:
            options.append(("grpc.ssl_target_name_override", name))
    elif sec.token is not None:
        if not hosts or not all(is_loopback(h) for h in hosts):
            raise ValueError(
                f"a token needs TLS (give tls_ca) unless the target is loopback; {target!r} is not: "
                "over plain text the token could be read and replayed"
            )
        channel = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        return None, options
    return channel, options


def call_metadata(sec: Security) -> tuple[tuple[str, str], ...] | None:
    """The metadata every call carries: ``authorization: Bearer <token>``, or None without a token.

    Only send it on a channel from ``channel_credentials`` (client/channel.py's
    ``open_channel``): that is where a token off loopback without TLS is refused.
    """
    if sec.token is None:
        return None
    return (("authorization", f"Bearer {sec.token}"),)


# --- command lines (python -m client, python -m loadtest) ----------------------------------


def add_arguments(parser) -> None:
    """``--tls-ca``, ``--token``/``--token-file``, ``--client-cert``/``--client-key``, ``--tls-server-name``."""
    group = parser.add_argument_group(
        "TLS and credentials",
        f"each falls back to an environment variable ({ENV_TLS_CA}, {ENV_TOKEN}, {ENV_TOKEN_FILE}, "
        f"{ENV_CLIENT_CERT}, {ENV_CLIENT_KEY}, {ENV_TLS_SERVER_NAME}); plain text without them",
    )
    group.add_argument("--tls-ca", metavar="PATH", help="CA certificate to trust (PEM); turns TLS on")
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument("--token", metavar="TOKEN",
                        help="bearer token (JWT) sent with every call; needs TLS except on loopback "
                             "(prefer --token-file: a command line is visible to other users)")
    tokens.add_argument("--token-file", metavar="PATH", help="file holding the bearer token")
    group.add_argument("--client-cert", metavar="PATH", help="client certificate (PEM) for mutual TLS")
    group.add_argument("--client-key", metavar="PATH", help="client private key (PEM) for mutual TLS")
    group.add_argument("--tls-server-name", metavar="NAME",
                       help="name to verify the server certificate against (default: the target's host name)")


def read_token_file(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ValueError(f"cannot read the token file {str(path)!r} ({error.strerror or error})") from None


def keywords(
    args: Any = None, environ: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """The client keywords from parsed flags, else the environment; ValueError for an unreadable token file.

    ``names`` maps each keyword (and ``token_file``) to the environment variables to try, in
    order; the default is the MOVIELENS_* names above.
    """
    environ = os.environ if environ is None else environ
    names = names or ENV_NAMES

    def pick(key: str) -> str | None:
        value = getattr(args, key, None) if args is not None else None
        if value:
            return value
        for variable in names.get(key, ()):
            if environ.get(variable):
                return environ[variable]
        return None

    values = {key: pick(key) for key in ("tls_ca", "client_cert", "client_key", "tls_server_name")}
    flag_token = getattr(args, "token", None) if args is not None else None
    flag_file = getattr(args, "token_file", None) if args is not None else None
    if flag_token:
        values["token"] = flag_token
    elif flag_file:
        values["token"] = read_token_file(flag_file)
    else:
        token = next((environ[v] for v in names.get("token", ()) if environ.get(v)), None)
        token_file = next((environ[v] for v in names.get("token_file", ()) if environ.get(v)), None)
        values["token"] = token if token else read_token_file(token_file) if token_file else None
    return values


ENV_NAMES: dict[str, tuple[str, ...]] = {
    "tls_ca": (ENV_TLS_CA,),
    "token": (ENV_TOKEN,),
    "token_file": (ENV_TOKEN_FILE,),
    "client_cert": (ENV_CLIENT_CERT,),
    "client_key": (ENV_CLIENT_KEY,),
    "tls_server_name": (ENV_TLS_SERVER_NAME,),
}
