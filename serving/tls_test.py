"""TLS on the local server (--ssl_config_file, TF Serving's SSLConfig) and cleartext only on loopback.

Certificates are made here (a CA, a server certificate for localhost/127.0.0.1, a
client certificate), so the tests depend on nothing outside this file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from portpicker import pick_unused_port
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from common import cli
from serving import config
from serving.launcher import REPO_ROOT
from serving.server import (
    InsecureListenerError,
    LocalModelServer,
    ServerOptions,
    check_transport_security,
    cleartext_listeners,
    is_loopback,
)
from testing.tf1_models import export_tf1_half_plus_two


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert(subject: str, key, issuer_key=None, issuer: x509.Certificate | None = None, ca: bool = False,
          sans: tuple[str, ...] = ()) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        names = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    """PEM texts: ca, server_cert, server_key, client_cert, client_key, other_ca (an unrelated CA)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "ca": _pem(ca),
        "server_cert": _pem(_cert("localhost", server_key, ca_key, ca, sans=("localhost", "127.0.0.1"))),
        "server_key": _key_pem(server_key),
        "client_cert": _pem(_cert("client", client_key, ca_key, ca)),
        "client_key": _key_pem(client_key),
        "other_ca": _pem(_cert("other CA", other_key, ca=True)),
    }


@pytest.fixture(scope="module")
def half_plus_two(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("half_plus_two")
    export_tf1_half_plus_two(base / "1")
    return base


def _write(tmp_path: Path, text: str, name: str = "ssl.config") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- the file ------------------------------------------------------------------------------------


def test_a_valid_ssl_config_is_read_as_tf_serving_writes_it(tmp_path, pki):
    text = config.ssl_config_text(pki["server_cert"], pki["server_key"], pki["ca"], client_verify=True)
    parsed = config.read_ssl_config(_write(tmp_path, text))
    assert (parsed.server_cert, parsed.server_key, parsed.custom_ca, parsed.client_verify) == (
        pki["server_cert"], pki["server_key"], pki["ca"], True)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: "server_cert: 'x'\nnot_a_field: 1\n", 'has no field named "not_a_field"'),
        (lambda p: config.ssl_config_text("", p["server_key"]), "server_cert is empty"),
        (lambda p: config.ssl_config_text(p["server_cert"], ""), "server_key is empty"),
        (lambda p: config.ssl_config_text("/etc/certs/server.pem", p["server_key"]), "server_cert is not PEM text"),
        (lambda p: config.ssl_config_text(p["client_cert"], p["server_key"]), "not a matching PEM certificate"),
        (lambda p: config.ssl_config_text(p["server_cert"], p["server_key"], client_verify=True),
         "client_verify is true but custom_ca is empty"),
        (lambda p: config.ssl_config_text(p["server_cert"], p["server_key"], "-----BEGIN CERTIFICATE-----\nxx"),
         "custom_ca is not a PEM certificate"),
    ],
)
def test_a_bad_ssl_config_is_an_error_naming_the_file_and_field(tmp_path, pki, make, fragment):
    path = _write(tmp_path, make(pki))
    with pytest.raises(config.ConfigError) as err:
        config.read_ssl_config(path)
    assert str(err.value).startswith(path) and fragment in str(err.value)


def test_a_missing_ssl_config_file_is_an_error():
    with pytest.raises(config.ConfigError, match="cannot read config file"):
        config.read_ssl_config("/nonexistent/ssl.config")


# -- gRPC over TLS -------------------------------------------------------------------------------


def _server(half_plus_two: Path, ssl_config_file: str) -> tuple[LocalModelServer, int]:
    port = pick_unused_port()
    server = LocalModelServer(ServerOptions(
        model_name="half", model_base_path=str(half_plus_two), port=port, rest_api_port=0,
        file_system_poll_wait_seconds=0, ssl_config_file=ssl_config_file, drain_seconds=5,
    ))
    server.start()
    return server, port


def _status(channel: grpc.Channel) -> int:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half"
    return stub.GetModelStatus(request, timeout=10).model_version_status[0].version


def test_grpc_is_served_over_tls_and_refuses_cleartext(tmp_path, pki, half_plus_two):
    path = _write(tmp_path, config.ssl_config_text(pki["server_cert"], pki["server_key"]))
    server, port = _server(half_plus_two, path)
    try:
        trusted = grpc.ssl_channel_credentials(root_certificates=pki["ca"].encode())
        with grpc.secure_channel(f"localhost:{port}", trusted) as channel:
            assert _status(channel) == 1
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as err:
            _status(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        untrusted = grpc.ssl_channel_credentials(root_certificates=pki["other_ca"].encode())
        with grpc.secure_channel(f"localhost:{port}", untrusted) as channel, pytest.raises(grpc.RpcError) as err:
            _status(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_client_verify_requires_a_client_certificate_signed_by_custom_ca(tmp_path, pki, half_plus_two):
    path = _write(tmp_path, config.ssl_config_text(pki["server_cert"], pki["server_key"], pki["ca"], True))
    server, port = _server(half_plus_two, path)
    try:
        with_cert = grpc.ssl_channel_credentials(pki["ca"].encode(), pki["client_key"].encode(),
                                                 pki["client_cert"].encode())
        with grpc.secure_channel(f"localhost:{port}", with_cert) as channel:
            assert _status(channel) == 1
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        without = grpc.ssl_channel_credentials(pki["ca"].encode())
        with grpc.secure_channel(f"localhost:{port}", without) as channel, pytest.raises(grpc.RpcError) as err:
            _status(channel)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


# -- the command line ----------------------------------------------------------------------------


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serving", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


def test_an_unusable_ssl_config_file_stops_the_server_before_it_listens(tmp_path, half_plus_two):
    path = _write(tmp_path, "server_key: 'k'\nserver_cert: 'c'\n")
    result = _run(["--model_base_path", str(half_plus_two), "--port", str(pick_unused_port()), "--rest_api_port=0",
                   "--ssl_config_file", path])
    assert result.returncode == cli.EXIT_FAILED
    assert f"{path}: server_cert is not PEM text" in result.stderr
    assert "Running gRPC ModelServer" not in result.stderr


def test_cleartext_on_a_non_loopback_address_is_refused_unless_allowed(half_plus_two):
    result = _run(["--model_base_path", str(half_plus_two), "--host", "0.0.0.0", "--port", "8500"])
    assert result.returncode == cli.EXIT_USAGE
    assert "refusing to serve cleartext on 0.0.0.0" in result.stderr
    assert "gRPC 0.0.0.0:8500 (no --ssl_config_file)" in result.stderr
    assert "--allow_insecure_non_loopback" in result.stderr
    result = _run(["--model_base_path", "/m", "--use_alts_credentials"])
    assert result.returncode == cli.EXIT_USAGE and "ALTS is not available" in result.stderr


def test_which_listeners_count_as_cleartext_beyond_loopback():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
        assert cleartext_listeners(ServerOptions(host=host, monitoring_port=9000)) == []
    for host in ("0.0.0.0", "::", "10.1.2.3", "name.invalid"):
        assert not is_loopback(host), host
    options = ServerOptions(host="0.0.0.0", port=8500, rest_api_port=8501, monitoring_port=9000)
    assert [text.split(" ")[0] for text in cleartext_listeners(options)] == ["gRPC", "REST", "metrics"]
    tls = ServerOptions(host="0.0.0.0", port=8500, rest_api_port=0, ssl_config_file="ssl.config")
    assert cleartext_listeners(tls) == []
    check_transport_security(tls)
    with pytest.raises(InsecureListenerError, match="REST 0.0.0.0:8501"):
        check_transport_security(ServerOptions(host="0.0.0.0", ssl_config_file="ssl.config"))
    check_transport_security(ServerOptions(host="0.0.0.0", allow_insecure_non_loopback=True))
