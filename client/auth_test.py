"""TLS and bearer tokens: the client, the async client, the CLI and the Locust user against a
fake server that speaks TLS with a throw-away CA and checks ``authorization: Bearer``."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from client import (
    AsyncRecommenderClient,
    PermissionDenied,
    RecommenderClient,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from client import auth
from client.channel import NO_RETRIES
from client.cli import main
from client.errors import DeadlineExceeded
from testing.fake_serving import FakeBehaviour, fake_server
from testing.tls import BearerTokenInterceptor, write_test_pki

TOKEN = "header.payload.signature"
CREDENTIAL_ENV = [
    "MOVIELENS_TLS_CA", "MOVIELENS_TOKEN", "MOVIELENS_TOKEN_FILE", "MOVIELENS_CLIENT_CERT", "MOVIELENS_CLIENT_KEY",
    "MOVIELENS_TLS_SERVER_NAME",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_inherited_credentials(monkeypatch):
    for name in CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_test_pki(tmp_path_factory.mktemp("pki"), ("localhost", "127.0.0.1", "recommender.test"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "demo.jwt"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def tls_server(pki):
    """(target, behaviour, interceptor): TLS with the test CA's server certificate, token required."""
    checker = BearerTokenInterceptor(TOKEN)
    with fake_server(server_credentials=pki.server_credentials(), interceptors=[checker]) as (target, behaviour):
        yield target, behaviour, checker


# --- the Python API -------------------------------------------------------------------------


def test_sync_client_with_ca_and_token(tls_server, pki):
    target, behaviour, checker = tls_server
    with RecommenderClient(target, tls_ca=pki.ca, token=TOKEN) as client:
        assert len(client.recommend(1, k=3)) == 3
        assert client.status()[0].state == "AVAILABLE"
    # PEM bytes work as well as a path, and "Bearer " in front of the token is tolerated.
    with RecommenderClient(target, tls_ca=pki.ca.read_bytes(), token=f"Bearer {TOKEN}") as client:
        assert len(client.recommend_from_ratings({5: 5, 9: 4}, k=2)) == 2
    assert checker.refused == 0 and behaviour.calls == 3


@pytest.mark.parametrize("token, message", [(None, "Jwt is missing"), ("wrong.token.value", "Jwt verification fails")])
def test_missing_or_wrong_token_is_unauthenticated(tls_server, pki, token, message):
    target, behaviour, _ = tls_server
    with RecommenderClient(target, tls_ca=pki.ca, token=token, retry=NO_RETRIES) as client:
        with pytest.raises(Unauthenticated, match=message) as raised:
            client.recommend(1)
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert behaviour.calls == 0  # refused before the service


def test_untrusted_ca_wrong_name_or_plain_text_never_connect(tls_server, pki):
    target, behaviour, _ = tls_server
    attempts = [
        {"tls_ca": pki.other_ca, "token": TOKEN},  # the server's certificate is not from this CA
        {"tls_ca": pki.ca, "token": TOKEN, "tls_server_name": "elsewhere.test"},  # not a name on the certificate
        {},  # plain text to a TLS port
    ]
    for keywords in attempts:
        with RecommenderClient(target, timeout_s=1.0, retry=NO_RETRIES, **keywords) as client:
            with pytest.raises((Unavailable, DeadlineExceeded)):
                client.status()
    assert behaviour.calls == 0


def test_tls_server_name_overrides_the_host_checked(tls_server, pki):
    target, _, _ = tls_server
    with RecommenderClient(target, tls_ca=pki.ca, token=TOKEN, tls_server_name="recommender.test") as client:
        assert client.status()


def test_mutual_tls(pki):
    with fake_server(server_credentials=pki.server_credentials(require_client_cert=True)) as (target, behaviour):
        with RecommenderClient(target, tls_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key) as client:
            assert client.status()
        with RecommenderClient(target, tls_ca=pki.ca, timeout_s=1.0, retry=NO_RETRIES) as client:
            with pytest.raises((Unavailable, DeadlineExceeded)):
                client.status()  # no client certificate: the handshake fails
    assert behaviour.calls == 1


def test_several_targets_round_robin_over_tls(pki):
    checker = BearerTokenInterceptor(TOKEN)
    kwargs = {"server_credentials": pki.server_credentials(), "interceptors": [checker]}
    with fake_server(**kwargs) as (first, a), fake_server(**kwargs) as (second, b):
        for target in (f"{first},{second}", f"{first},{second}".replace("127.0.0.1", "localhost")):
            a.calls = b.calls = 0
            with RecommenderClient(target, tls_ca=pki.ca, token=TOKEN) as client:
                client.wait_until_ready(timeout_s=10)
                for _ in range(20):
                    client.recommend(1, k=2)
            assert a.calls > 0 and b.calls > 0, target


def test_async_client_with_and_without_token(tls_server, pki):
    target, _, _ = tls_server

    async def run():
        async with AsyncRecommenderClient(target, tls_ca=pki.ca, token=TOKEN) as client:
            recs = await client.recommend(1, k=2)
        async with AsyncRecommenderClient(target, tls_ca=pki.ca, retry=NO_RETRIES) as client:
            with pytest.raises(Unauthenticated):
                await client.recommend(1, k=2)
        return recs

    assert len(asyncio.run(run())) == 2


def test_token_on_loopback_without_tls(pki):
    """Plain text on loopback may carry a token (gRPC's local credentials); the checker sees it."""
    checker = BearerTokenInterceptor(TOKEN)
    with fake_server(interceptors=[checker]) as (target, _):
        with RecommenderClient(target, token=TOKEN) as client:
            assert client.status()
        with RecommenderClient(target.replace("127.0.0.1", "localhost"), token=TOKEN) as client:
            assert client.status()
    assert checker.refused == 0


@pytest.mark.parametrize(
    "target, keywords, message",
    [
        ("recommender.example:8500", {"token": TOKEN}, "a token needs TLS"),
        ("10.0.0.1:8500,10.0.0.2:8500", {"token": TOKEN}, "a token needs TLS"),
        ("localhost:8500", {"tls_server_name": "x"}, "tls_server_name needs TLS"),
        ("localhost:8500", {"client_cert": b"-----BEGIN CERTIFICATE-----"}, "client_cert and client_key go together"),
        ("localhost:8500", {"tls_ca": "/no/such/ca.pem"}, "cannot read the tls_ca"),
        ("localhost:8500", {"tls_ca": b"not a certificate"}, "is not PEM"),
        ("localhost:8500", {"token": "  "}, "the token is empty"),
        ("localhost:8500", {"token": "two words"}, "one line without spaces"),
    ],
)
def test_bad_credentials_are_refused_before_connecting(target, keywords, message):
    with pytest.raises(ValueError, match=message):
        RecommenderClient(target, **keywords)


def test_several_host_names_over_tls_need_a_server_name(pki):
    with pytest.raises(ValueError, match="give tls_server_name"):
        RecommenderClient("localhost:8500,127.0.0.1:8501", tls_ca=pki.ca)
    RecommenderClient("localhost:8500,127.0.0.1:8501", tls_ca=pki.ca, tls_server_name="localhost").close()


@pytest.mark.parametrize(
    "code, error",
    [
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
    ],
)
def test_edge_status_codes_become_typed_errors(code, error):
    with fake_server(behaviour=FakeBehaviour(fail_with=[code])) as (target, _):
        with RecommenderClient(target, retry=NO_RETRIES) as client:
            with pytest.raises(error) as raised:
                client.recommend(1)
    assert raised.value.code == code


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_with_flags(tls_server, pki, token_file, capsys):
    target, _, _ = tls_server
    tls = ["--target", target, "--tls-ca", str(pki.ca)]
    assert main([*tls, "--token-file", str(token_file), "recommend", "--user", "42", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main([*tls, "--token", TOKEN, "recommend", "--rated", "50=5", "--rated", "7=4", "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_cli_with_environment(tls_server, pki, token_file, capsys, monkeypatch):
    target, _, _ = tls_server
    monkeypatch.setenv("MOVIELENS_TLS_CA", str(pki.ca))
    monkeypatch.setenv("MOVIELENS_TOKEN_FILE", str(token_file))
    assert main(["--target", target, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "AVAILABLE"
    monkeypatch.delenv("MOVIELENS_TOKEN_FILE")
    monkeypatch.setenv("MOVIELENS_TOKEN", TOKEN)
    assert main(["--target", target, "status"]) == 0
    capsys.readouterr()
    # A flag wins over the environment.
    assert main(["--target", target, "--token", "wrong.token.value", "status"]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_cli_refused_credentials_is_one_line(tls_server, pki, capsys):
    target, _, _ = tls_server
    assert main(["--target", target, "--tls-ca", str(pki.ca), "recommend", "--user", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("error: the server refused the credentials (UNAUTHENTICATED: Jwt is missing)")


@pytest.mark.parametrize(
    "code, start",
    [
        (grpc.StatusCode.PERMISSION_DENIED, "error: the server does not allow this call (PERMISSION_DENIED: "),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "error: the server is rate-limiting this caller or shedding load"),
    ],
)
def test_cli_edge_refusals_are_one_line(capsys, code, start):
    with fake_server(behaviour=FakeBehaviour(fail_with=[code])) as (target, _):
        assert main(["--target", target, "recommend", "--user", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "recommender.example:8500", "--token", TOKEN, "status"], "error: a token needs TLS"),
        (["--token-file", "/no/such/token", "status"], "error: cannot read the token file '/no/such/token'"),
    ],
)
def test_cli_bad_credentials_are_one_line(capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_keywords_prefer_flags_then_environment(tmp_path):
    token_file = tmp_path / "t.jwt"
    token_file.write_text("from.the.file\n")

    class Args:
        tls_ca = None
        token = None
        token_file = None
        client_cert = None
        client_key = None
        tls_server_name = "flag.name"

    env = {"MOVIELENS_TLS_CA": "/env/ca.pem", "MOVIELENS_TOKEN_FILE": str(token_file), "MOVIELENS_TLS_SERVER_NAME": "e"}
    assert auth.keywords(Args(), env) == {
        "tls_ca": "/env/ca.pem", "client_cert": None, "client_key": None, "tls_server_name": "flag.name",
        "token": "from.the.file",
    }  # fmt: skip
    assert auth.keywords(Args(), {**env, "MOVIELENS_TOKEN": "direct"})["token"] == "direct"
    assert auth.keywords(None, {})["token"] is None
