"""Development credentials: the layout everyone relies on, valid chains and tokens, 0600 keys,
idempotence and rotation. (Envoy accepting them is tested in tests/edge_test.py.)"""

from __future__ import annotations

import ipaddress
import json
import stat

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from serving import dev_pki as cr


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("creds") / "credentials"
    written = cr.ensure(out, sans=["recommender.example.com"])
    return out, written


def test_the_layout_is_the_one_the_design_fixes(made):
    out, written = made
    names = {p.relative_to(out).as_posix() for p in written}
    assert names == {"ca.pem", "ca.key", "server.pem", "server.key", "jwks.json", "jwt-signing.key",
                     "tokens/demo.jwt", "tokens/locust.jwt"}  # fmt: skip


def test_private_keys_and_tokens_are_owner_only(made):
    out, _ = made
    for name in ("ca.key", "server.key", "jwt-signing.key", "tokens/demo.jwt"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_the_server_certificate_is_signed_by_the_ca_for_every_name(made):
    out, _ = made
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "envoy", "recommender.example.com"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                            ipaddress.ip_address("::1")}  # fmt: skip
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_each_token_verifies_against_the_jwks_with_the_designed_claims(made):
    out, _ = made
    (key,) = jwt.PyJWKSet.from_dict(json.loads((out / "jwks.json").read_text())).keys
    assert "d" not in json.loads((out / "jwks.json").read_text())["keys"][0]  # public half only
    for client in ("demo", "locust"):
        claims = jwt.decode(cr.read_token(out, client), key.key, algorithms=["ES256"], audience="movielens",
                            issuer="movielens-dev")  # fmt: skip
        assert claims["sub"] == client and claims["exp"] - claims["iat"] == 365 * 86400


def test_a_second_run_keeps_everything_and_adds_only_a_new_client(made):
    out, _ = made
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert cr.ensure(out) == []
    assert cr.ensure(out, clients=["web"]) == [out / "tokens" / "web.jwt"]
    assert all(p.read_bytes() == data for p, data in before.items())


def test_force_rotates_every_key_and_the_old_tokens_stop_verifying(tmp_path):
    cr.ensure(tmp_path)
    old_token, old_ca = cr.read_token(tmp_path, "demo"), (tmp_path / "ca.pem").read_bytes()
    cr.ensure(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != old_ca
    (key,) = jwt.PyJWKSet.from_dict(json.loads((tmp_path / "jwks.json").read_text())).keys
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(old_token, key.key, algorithms=["ES256"], audience="movielens")
    jwt.decode(cr.read_token(tmp_path, "demo"), key.key, algorithms=["ES256"], audience="movielens")


def test_the_command_prints_where_they_are_and_the_client_flags(tmp_path, capsys):
    assert cr.main(["--out", str(tmp_path / "c"), "--client", "alice"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 7 file(s)" in printed and f"--tls-ca {tmp_path / 'c' / 'ca.pem'}" in printed
    assert f"--token-file {tmp_path / 'c' / 'tokens' / 'alice.jwt'}" in printed
    assert cr.main(["--out", str(tmp_path / "c"), "--client", "alice"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_token_for_another_key_does_not_verify(made):
    out, _ = made
    foreign = cr.issue_token(ec.generate_private_key(ec.SECP256R1()), "demo")
    (key,) = jwt.PyJWKSet.from_dict(json.loads((out / "jwks.json").read_text())).keys
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(foreign, key.key, algorithms=["ES256"], audience="movielens")
