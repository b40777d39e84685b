"""The Envoy config (one file for compose and local), validated by the real binary, and a short
two-replica smoke run through a real Envoy (TLS and a token, as every client now needs).

The 30 s load scenarios (balance, a replica killed and restarted, a version rollout) are in
tests/replicas_test.py and run with `make test-replicas`; the attacks on the public entry
(allowlist, sizes, tokens, rate limits, idle connections) in tests/edge_test.py.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
import yaml
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from client import NO_RETRIES, RecommenderClient
from common import contract as c
from serving import dev_pki as creds
from serving.cluster import (
    ADMIN_PORT,
    READONLY_ADMIN_PORT,
    TEMPLATE_CREDENTIALS,
    CLUSTERS,
    ENVOY_CONFIG,
    GRPC_CLUSTER,
    REST_CLUSTER,
    ClusterError,
    EnvoyPorts,
    LocalCluster,
    ReplicaPorts,
    check_port_free,
    cluster_hosts,
    envoy_stats,
    load_envoy_template,
    render_envoy_config,
    replica_ports_from,
    served_requests,
    validate_envoy_config,
    write_envoy_config,
)

AVAILABLE_HEX = b'"AVAILABLE"'.hex().upper()
LOCAL = EnvoyPorts(18500, 18501, 19901, 19902)
THREE = [ReplicaPorts(9000 + 3 * i, 9001 + 3 * i, 9002 + 3 * i) for i in range(3)]


@pytest.fixture(scope="module")
def template() -> dict:
    return load_envoy_template()


def _clusters(config: dict) -> dict[str, dict]:
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _listeners(config: dict) -> dict[str, dict]:
    return {listener["name"]: listener for listener in config["static_resources"]["listeners"]}


def _manager(listener: dict) -> dict:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _routes(listener: dict) -> list[dict]:
    (virtual_host,) = _manager(listener)["route_config"]["virtual_hosts"]
    return virtual_host["routes"]


def _route(listener: dict) -> dict:
    """The first route that forwards (the allowlist's routes share one action)."""
    return next(route["route"] for route in _routes(listener) if "route" in route)


def _endpoints(cluster: dict) -> list[dict]:
    return [e["endpoint"] for locality in cluster["load_assignment"]["endpoints"] for e in locality["lb_endpoints"]]


# --- the file itself: what the issue asks of it --------------------------------------------------


def test_template_balances_per_request_over_the_tfserving_dns_name(template):
    listeners, clusters = _listeners(template), _clusters(template)
    assert listeners["grpc"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": c.GRPC_PORT}
    assert listeners["rest"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": c.REST_PORT}
    # Admin (state-changing endpoints) on Envoy's loopback; read-only views on their own listener.
    assert template["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ADMIN_PORT}
    assert listeners["admin_readonly"]["address"]["socket_address"]["port_value"] == READONLY_ADMIN_PORT
    assert _route(listeners["grpc"])["cluster"] == GRPC_CLUSTER
    assert _route(listeners["rest"])["cluster"] == REST_CLUSTER
    for name, port in ((GRPC_CLUSTER, c.GRPC_PORT), (REST_CLUSTER, c.REST_PORT)):
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS" and cluster["lb_policy"] == "ROUND_ROBIN"
        (endpoint,) = _endpoints(cluster)
        assert endpoint["address"]["socket_address"] == {"address": "tfserving", "port_value": port}
        assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0
    # gRPC needs HTTP/2 to the replicas; REST stays HTTP/1.1.
    options = clusters[GRPC_CLUSTER]["typed_extension_protocol_options"]
    (http,) = options.values()
    assert "http2_protocol_options" in http["explicit_http_config"]
    assert "typed_extension_protocol_options" not in clusters[REST_CLUSTER]


def test_template_health_checks_the_model_status_on_the_rest_port(template):
    for name in CLUSTERS:
        cluster = _clusters(template)[name]
        (check,) = cluster["health_checks"]
        http = check["http_health_check"]
        assert http["path"] == f"/v1/models/{c.MODEL_NAME}"
        assert http["receive"] == [{"text": AVAILABLE_HEX}]  # a 200 alone could be a LOADING version
    (grpc_endpoint,) = _endpoints(_clusters(template)[GRPC_CLUSTER])
    assert grpc_endpoint["health_check_config"] == {"port_value": c.REST_PORT}


def test_template_retries_unavailable_shedding_connect_failures_and_resets_within_a_budget(template):
    policy = _route(_listeners(template)["grpc"])["retry_policy"]
    # resource-exhausted: a replica shedding at its concurrent-RPC limit (another one may have room).
    assert {"unavailable", "resource-exhausted", "connect-failure", "reset"} <= set(policy["retry_on"].split(","))
    assert policy["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    rest = _route(_listeners(template)["rest"])["retry_policy"]
    assert "retriable-status-codes" in rest["retry_on"].split(",")
    assert {503, 429} <= set(rest["retriable_status_codes"])  # draining / full queue, concurrent-request limit
    assert rest["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    for name in CLUSTERS:
        (thresholds,) = _clusters(template)[name]["circuit_breakers"]["thresholds"]
        assert thresholds["retry_budget"]["budget_percent"]["value"] > 0


# --- rendering for local processes -------------------------------------------------------------


def test_rendering_swaps_addresses_and_keeps_everything_else(template, tmp_path):
    rendered = render_envoy_config(template, "127.0.0.1", LOCAL, THREE, tmp_path / "creds")
    assert _listeners(rendered)["grpc"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18500}
    assert _listeners(rendered)["rest"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18501}
    assert rendered["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}
    grpc_endpoints = _endpoints(_clusters(rendered)[GRPC_CLUSTER])
    assert [(e["address"]["socket_address"]["port_value"], e["health_check_config"]["port_value"])
            for e in grpc_endpoints] == [(p.grpc, p.rest) for p in THREE]  # fmt: skip
    assert [e["address"]["socket_address"] for e in _endpoints(_clusters(rendered)[REST_CLUSTER])] == [
        {"address": "127.0.0.1", "port_value": p.rest} for p in THREE
    ]

    assert _listeners(rendered)["admin_readonly"]["address"]["socket_address"]["port_value"] == 19902
    (admin_endpoint,) = _endpoints(_clusters(rendered)["envoy_admin"])
    assert admin_endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19901}
    tls = _listeners(rendered)["grpc"]["filter_chains"][0]["transport_socket"]["typed_config"]
    (certificate,) = tls["common_tls_context"]["tls_certificates"]
    assert certificate["private_key"] == {"filename": str(tmp_path / "creds" / "server.key")}
    assert TEMPLATE_CREDENTIALS not in yaml.safe_dump(rendered)

    def without_addresses(config: dict) -> dict:
        # The credentials folder is the one other difference.
        config = yaml.safe_load(yaml.safe_dump(config).replace(str(tmp_path / "creds"), TEMPLATE_CREDENTIALS))
        del config["admin"]["address"]
        for listener in config["static_resources"]["listeners"]:
            del listener["address"]
        for cluster in config["static_resources"]["clusters"]:
            del cluster["load_assignment"]["endpoints"]
        return config

    assert without_addresses(rendered) == without_addresses(template)
    assert template == load_envoy_template()  # the template itself is left alone


def test_only_the_public_listeners_move_to_a_public_address(template):
    rendered = render_envoy_config(template, "127.0.0.1", LOCAL, THREE, public_host="0.0.0.0")
    addresses = {name: listener["address"]["socket_address"]["address"]
                 for name, listener in _listeners(rendered).items()}  # fmt: skip
    assert addresses == {"grpc": "0.0.0.0", "rest": "0.0.0.0", "admin_readonly": "127.0.0.1"}
    assert rendered["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert {e["address"]["socket_address"]["address"] for name in CLUSTERS
            for e in _endpoints(_clusters(rendered)[name])} == {"127.0.0.1"}  # fmt: skip


def test_rendering_refuses_a_template_it_does_not_understand(template):
    renamed = copy.deepcopy(template)
    renamed["static_resources"]["clusters"][0]["name"] = "serving"
    with pytest.raises(ValueError, match="no cluster named tfserving_grpc"):
        render_envoy_config(renamed, "127.0.0.1", LOCAL, THREE)
    with pytest.raises(ValueError, match="at least one replica"):
        render_envoy_config(template, "127.0.0.1", LOCAL, [])


def test_replica_ports_are_consecutive_triples_or_free():
    assert replica_ports_from(8510, 2) == [ReplicaPorts(8510, 8511, 8512), ReplicaPorts(8513, 8514, 8515)]
    assert replica_ports_from(0, 3) is None
    with pytest.raises(ValueError, match="no room"):
        replica_ports_from(65530, 3)


def test_colliding_ports_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="ports collide"):
        LocalCluster(tmp_path, 2, envoy_ports=EnvoyPorts(9000, 9001, 9002), replica_ports=THREE[:2], workdir=tmp_path)


def test_a_taken_port_is_named(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ClusterError, match=f"cannot use 127.0.0.1:{port} for Envoy admin"):
            check_port_free("127.0.0.1", port, "Envoy admin")


def test_the_command_refuses_a_base_path_without_versions(tmp_path, capsys):
    from serving.cluster import main

    assert main(["--model-base-path", str(tmp_path), "--first-replica-port", "0", "--workdir", str(tmp_path)]) == 1
    assert f"no exported model under {tmp_path}" in capsys.readouterr().err


# --- the real binary ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_credentials(tmp_path_factory):
    out = tmp_path_factory.mktemp("credentials")
    creds.ensure(out)
    return out


@pytest.mark.parametrize("variant", ["compose", "local"])
def test_envoy_validates_the_config(variant, template, tmp_path, dev_credentials):
    if variant == "compose":
        # Exactly the file compose mounts, but for the credentials folder (compose mounts the
        # credentials at /etc/envoy/credentials; Envoy reads the certificate when validating).
        path = tmp_path / "envoy.yaml"
        path.write_text(ENVOY_CONFIG.read_text().replace(TEMPLATE_CREDENTIALS, str(dev_credentials)))
    else:
        rendered = render_envoy_config(template, "127.0.0.1", LOCAL, THREE, dev_credentials)
        path = write_envoy_config(rendered, tmp_path / "envoy.yaml")
    result = validate_envoy_config(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{path}' OK" in result.stdout + result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr


def test_envoy_rejects_a_broken_config(template, tmp_path, dev_credentials):
    broken = render_envoy_config(template, "127.0.0.1", LOCAL, THREE, dev_credentials)
    _clusters(broken)[GRPC_CLUSTER]["lb_policy"] = "ROUND_ROBBIN"
    result = validate_envoy_config(write_envoy_config(broken, tmp_path / "envoy.yaml"))
    assert result.returncode != 0 and "ROUND_ROBBIN" in result.stdout + result.stderr


# --- two replicas behind a real Envoy ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(exported_model, tmp_path_factory, dev_credentials):
    with LocalCluster(exported_model, 2, workdir=tmp_path_factory.mktemp("cluster"),
                      credentials=dev_credentials) as running:  # fmt: skip
        yield running


def _predict(users: list[str], movies: list[str]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(users))
    request.inputs[c.MOVIE_ID].CopyFrom(tf.make_tensor_proto(movies))
    return request


def _predict_counts(cluster: LocalCluster) -> list[int]:
    return [served_requests(m.metrics_url(cluster.host), "Predict") for m in cluster.members]


def _channel(cluster: LocalCluster) -> grpc.Channel:
    return grpc.secure_channel(cluster.grpc_target, grpc.ssl_channel_credentials(cluster.tls_ca.read_bytes()))


def _bearer(cluster: LocalCluster, client: str = "demo") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {cluster.token(client)}")]


def _rest_get(cluster: LocalCluster, path: str):
    import ssl

    context = ssl.create_default_context(cafile=str(cluster.tls_ca))
    request = urllib.request.Request(cluster.rest_url + path, headers=dict(_bearer(cluster)))
    return urllib.request.urlopen(request, timeout=10, context=context)  # noqa: S310  (our own 127.0.0.1)


def test_envoy_alternates_grpc_calls_over_both_replicas(cluster):
    before = _predict_counts(cluster)
    with _channel(cluster) as channel:  # one channel, as a client keeps
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(20):
            response, call = stub.Predict.with_call(_predict(["1", "2"], ["1", "2"]), metadata=_bearer(cluster),
                                                    timeout=10)  # fmt: skip
            assert len(response.outputs[c.PREDICTED_RATING].float_val) == 2
            # No internal address (or any x-envoy-* detail) goes back to the client.
            assert not [k for k, _ in call.initial_metadata() if k.startswith(("x-tfserving", "x-envoy"))]
    after = _predict_counts(cluster)
    assert [b - a for a, b in zip(before, after)] == [10, 10]  # the replicas' own metrics
    hosts = cluster_hosts(cluster.admin_url)[GRPC_CLUSTER]
    assert {host: stats["health_flags"] for host, stats in hosts.items()} == {
        cluster.upstream(m): "healthy" for m in cluster.members
    }


def test_rest_goes_through_envoy_too(cluster):
    def metadata_counts() -> list[int]:  # not "REST status": Envoy's health checks call that one
        return [served_requests(m.metrics_url(cluster.host), "REST metadata") for m in cluster.members]

    with _rest_get(cluster, f"/v1/models/{c.MODEL_NAME}") as response:
        assert json.loads(response.read())["model_version_status"][0]["state"] == "AVAILABLE"
        assert not [k for k in response.headers if k.lower().startswith(("x-tfserving", "x-envoy"))]
    before = metadata_counts()
    for _ in range(4):  # round robin: two each
        with _rest_get(cluster, f"/v1/models/{c.MODEL_NAME}/metadata") as response:
            assert json.loads(response.read())["model_spec"]["name"] == c.MODEL_NAME
    assert [b - a for a, b in zip(before, metadata_counts())] == [2, 2]
    stats = envoy_stats(cluster.admin_url, f"cluster.{GRPC_CLUSTER}.")
    assert stats[f"cluster.{GRPC_CLUSTER}.membership_healthy"] == 2


def test_composes_envoy_healthcheck_passes_against_a_real_envoy(cluster):
    """The compose healthcheck command, run by bash as the container would, against this Envoy's
    admin (inside the container: 127.0.0.1:9901, which only the container itself can reach)."""
    import subprocess

    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())
    kind, *argv = compose["services"]["envoy"]["healthcheck"]["test"]
    assert kind == "CMD" and argv[:2] == ["bash", "-c"]
    script = argv[2].replace(f"/dev/tcp/127.0.0.1/{ADMIN_PORT}", f"/dev/tcp/127.0.0.1/{cluster.envoy_ports.admin}")
    assert script != argv[2]
    assert subprocess.run(["bash", "-c", script], timeout=10, check=False).returncode == 0


def test_client_with_both_replica_addresses_spreads_calls_without_envoy(cluster):
    with RecommenderClient(",".join(cluster.replica_targets()), retry=NO_RETRIES) as client:
        # round_robin picks only among connected addresses, and the second connection may come up a
        # few calls after the first on busy cores: measure once each replica has answered one call.
        start, deadline = _predict_counts(cluster), time.monotonic() + 30
        while min(b - a for a, b in zip(start, _predict_counts(cluster))) == 0 and time.monotonic() < deadline:
            client.predict("1", ["1", "2", "3"])
        before = _predict_counts(cluster)
        for _ in range(20):
            client.predict("1", ["1", "2", "3"])
    spread = [b - a for a, b in zip(before, _predict_counts(cluster))]
    assert sum(spread) == 20 and min(spread) >= 7, spread


def test_stop_ends_envoy_then_drains_the_replicas_with_exit_code_zero(cluster):
    """Last in this file: it stops the module's cluster (stop() is idempotent for the fixture)."""
    codes = cluster.stop()
    assert codes == {"envoy": 0, "replica 0": 0, "replica 1": 0}, codes
    assert not any(m.running() for m in cluster.members) and cluster.envoy.poll() is not None
