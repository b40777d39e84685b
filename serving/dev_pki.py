"""``python -m serving.dev_pki``: development credentials for the public entry (Envoy).

    python -m serving.dev_pki                      # ./credentials, kept if already there
    python -m serving.dev_pki --out /credentials --san recommender.example.com --client web
    python -m serving.dev_pki --force              # rotate: new CA, keys and tokens

Why: Envoy's listeners (gRPC 8500, REST 8501) speak TLS only and let through only callers
holding a JWT it can verify, so ``docker compose up`` and ``python -m serving.cluster``
need a server certificate and at least one token before anything answers. This command
makes a self-contained set for development, laid out as every part of the project expects:

- ``ca.pem`` / ``ca.key``: a private CA (EC P-256, 10 years); clients trust ``ca.pem``
  (``--tls-ca``). It signs only the server certificate.
- ``server.pem`` / ``server.key``: the server certificate Envoy presents (EC P-256, 825 days,
  the longest lifetime clients such as Apple's accept), SANs localhost, 127.0.0.1, ::1,
  ``envoy`` (compose's service name) and every ``--san``.
- ``jwks.json``: the public key Envoy's ``jwt_authn`` checks tokens against (a JWK set).
  ``jwt-signing.key``: the matching private key (EC P-256, ES256); it never leaves this folder
  and is never mounted into Envoy (Envoy verifies, it does not issue).
- ``tokens/<client>.jwt``: one ES256 token per ``--client`` (default ``demo`` and ``locust``),
  claims iss ``movielens-dev``, aud ``movielens``, sub ``<client>`` (Envoy's per-caller rate
  limit is keyed by it), iat, exp (``--days``, default 365).

Idempotent: files already there are kept, only missing ones are written (a new client gets
a token signed by the existing key; a new ``--san`` does not re-issue an existing server
certificate: use ``--force``). ``--force`` rotates everything: a new CA, server key and
certificate, signing key, JWKS and tokens, so every old token and the old CA stop working
once Envoy restarts. Private keys and tokens are written 0600, the folder 0700.

These are development credentials: for a deployment, bring your own certificate and
identity provider (docs/security.md, "Real certificates and identity").
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common import cli

ISSUER = "movielens-dev"
AUDIENCE = "movielens"
DEFAULT_OUT = Path("credentials")  # in the working directory, like runs/ and models/ (git-ignored)
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1", "envoy")
DEFAULT_CLIENTS = ("demo", "locust")
DEFAULT_DAYS = 365
KEY_ID = "movielens-dev-1"
ALGORITHM = "ES256"

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
JWKS, SIGNING_KEY = "jwks.json", "jwt-signing.key"
TOKENS = "tokens"
PRIVATE = 0o600


def token_path(out: Path, client: str) -> Path:
    return Path(out) / TOKENS / f"{client}.jwt"


def read_token(out: Path, client: str) -> str:
    return token_path(out, client).read_text(encoding="ascii").strip()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Created with ``mode`` from the start (no window where a key is world-readable), then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)  # umask may have removed bits
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "movielens-recommender (development)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _ca(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("movielens development CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert


def _server(now: dt.datetime, ca_key, ca_cert: x509.Certificate, sans: Sequence[str]):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(sans[0])).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([_san(name) for name in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return key, cert


def _jwks(signing_key: ec.EllipticCurvePrivateKey) -> dict:
    from jwt.algorithms import ECAlgorithm

    jwk = json.loads(ECAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update(kid=KEY_ID, alg=ALGORITHM, use="sig")
    return {"keys": [jwk]}


def issue_token(signing_key: ec.EllipticCurvePrivateKey, client: str, days: float = DEFAULT_DAYS,
                *, now: dt.datetime | None = None, issuer: str = ISSUER, audience: str = AUDIENCE) -> str:  # fmt: skip
    """One signed ES256 token for ``client`` (its ``sub``); tests use it for expired or foreign tokens too."""
    import jwt

    now = now or dt.datetime.now(dt.UTC)
    claims = {"iss": issuer, "aud": audience, "sub": client, "iat": int(now.timestamp()),
              "exp": int((now + dt.timedelta(days=days)).timestamp())}  # fmt: skip
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM, headers={"kid": KEY_ID})


def ensure(out: Path = DEFAULT_OUT, sans: Sequence[str] = (), clients: Sequence[str] = DEFAULT_CLIENTS,
           days: float = DEFAULT_DAYS, force: bool = False) -> list[Path]:  # fmt: skip
    """Writes what is missing under ``out`` (everything with ``force``); the paths written."""
    out = Path(out)
    for client in clients:
        if not client or "/" in client or client.startswith("."):
            raise ValueError(f"not a usable client name: {client!r}")
    (out / TOKENS).mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    os.chmod(out / TOKENS, 0o700)
    now = dt.datetime.now(dt.UTC)
    written: list[Path] = []

    def missing(*names: str) -> bool:
        return force or not all((out / name).is_file() for name in names)

    if missing(CA_CERT, CA_KEY):
        ca_key, ca_cert = _ca(now)
        _write(out / CA_KEY, _key_pem(ca_key), PRIVATE)
        _write(out / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written += [out / CA_KEY, out / CA_CERT]
        force_server = True  # a new CA must re-issue the server certificate
    else:
        ca_key = _load_key(out / CA_KEY)
        ca_cert = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
        force_server = False
    if force_server or missing(SERVER_CERT, SERVER_KEY):
        names = list(dict.fromkeys([*DEFAULT_SANS, *sans]))
        server_key, server_cert = _server(now, ca_key, ca_cert, names)
        _write(out / SERVER_KEY, _key_pem(server_key), PRIVATE)
        _write(out / SERVER_CERT, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written += [out / SERVER_KEY, out / SERVER_CERT]
    new_signing_key = missing(SIGNING_KEY, JWKS)
    if new_signing_key:
        signing_key = ec.generate_private_key(ec.SECP256R1())
        _write(out / SIGNING_KEY, _key_pem(signing_key), PRIVATE)
        _write(out / JWKS, (json.dumps(_jwks(signing_key), indent=2) + "\n").encode(), 0o644)
        written += [out / SIGNING_KEY, out / JWKS]
    else:
        signing_key = _load_key(out / SIGNING_KEY)
    for client in clients:
        path = token_path(out, client)
        if new_signing_key or not path.is_file():  # old tokens die with the old key
            _write(path, (issue_token(signing_key, client, days, now=now) + "\n").encode(), PRIVATE)
            written.append(path)
    return written


def describe(out: Path, clients: Sequence[str] = DEFAULT_CLIENTS) -> str:
    """Where the credentials are and the client flags that use them."""
    out = Path(out).resolve()
    client = clients[0] if clients else "demo"
    return (f"development credentials in {out}: CA {out / CA_CERT}, tokens {out / TOKENS}/<client>.jwt\n"
            f"clients: --tls-ca {out / CA_CERT} --token-file {token_path(out, client)}")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.dev_pki", description=cli.plain(__doc__))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder (default: credentials/ in the working directory)")
    parser.add_argument("--san", action="append", default=[],
                        help=f"another name or IP for the server certificate, besides {', '.join(DEFAULT_SANS)}")
    parser.add_argument("--client", action="append", default=None,
                        help=f"a token for this caller (its sub); repeatable (default: {', '.join(DEFAULT_CLIENTS)})")
    parser.add_argument("--days", type=float, default=DEFAULT_DAYS, help="token lifetime (default %(default)s)")
    parser.add_argument("--force", action="store_true", help="rotate: replace every file (old tokens stop working)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    clients = args.client or list(DEFAULT_CLIENTS)
    try:
        written = ensure(args.out, args.san, clients, args.days, args.force)
    except (OSError, ValueError) as error:
        return cli.fail(str(error))
    print(f"wrote {len(written)} file(s)" if written else "nothing to do: every file is already there")
    print(describe(args.out, clients))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
