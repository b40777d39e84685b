"""Test support: a throw-away CA, server and client certificates, and a token-checking server.

Tests of TLS and bearer tokens (client/auth_test.py, loadtest/runner_test.py) run
the fake server (testing/fake_serving.py) with ``grpc.ssl_server_credentials`` from these files
and ``BearerTokenInterceptor``, which answers UNAUTHENTICATED as Envoy's ``jwt_authn``
does for a missing or wrong token. Needs the ``cryptography`` package (the dev extra).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TestPki:
    ca: Path  # the CA certificate clients trust
    server_cert: Path
    server_key: Path
    client_cert: Path  # signed by the same CA, for mutual TLS
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail the handshake

    def server_credentials(self, require_client_cert: bool = False) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.server_key.read_bytes(), self.server_cert.read_bytes())],
            root_certificates=self.ca.read_bytes() if require_client_cert else None,
            require_client_auth=require_client_cert,
        )


def write_test_pki(folder: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> TestPki:
    """A CA and a server certificate for ``names`` (DNS names or IP addresses), in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def ca(common_name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        return key, cert

    def leaf(ca_key, ca_cert, common_name: str, sans, usage):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )  # fmt: skip
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    sans = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    ca_key, ca_cert = ca("movielens test CA")
    server_key, server_cert = leaf(ca_key, ca_cert, names[0], sans, ExtendedKeyUsageOID.SERVER_AUTH)
    client_key, client_cert = leaf(ca_key, ca_cert, "test-client", [], ExtendedKeyUsageOID.CLIENT_AUTH)
    _, other_cert = ca("some other CA")
    pem = serialization.Encoding.PEM
    files = {
        "ca.pem": ca_cert.public_bytes(pem),
        "server.pem": server_cert.public_bytes(pem),
        "server.key": key_pem(server_key),
        "client.pem": client_cert.public_bytes(pem),
        "client.key": key_pem(client_key),
        "other-ca.pem": other_cert.public_bytes(pem),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return TestPki(
        ca=folder / "ca.pem", server_cert=folder / "server.pem", server_key=folder / "server.key",
        client_cert=folder / "client.pem", client_key=folder / "client.key", other_ca=folder / "other-ca.pem",
    )  # fmt: skip


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Answers UNAUTHENTICATED unless the call carries ``authorization: Bearer <one of tokens>``."""

    def __init__(self, *tokens: str) -> None:
        self._accepted = {f"Bearer {t}" for t in tokens}
        self.refused = 0

    def intercept_service(self, continuation, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = metadata.get("authorization")
        if header in self._accepted:
            return continuation(handler_call_details)
        self.refused += 1
        message = "Jwt is missing" if header is None else "Jwt verification fails"

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(refuse)
