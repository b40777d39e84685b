"""The public entry attacked as an outsider would: two replicas (`python -m serving`) behind the
real Envoy running serving/envoy/envoy.yaml (compose's file, rendered by serving.cluster).

Each refusal is checked where it matters: the caller gets the refusal, and neither the
replicas' own metrics (serving_requests_total) nor Envoy's upstream counters moved, so the
call never reached a replica. Reads keep answering afterwards. One cluster for the module
(about 15 s to start); every caller has its own token, so rate-limit buckets do not mix.
The replicas batch (``--enable_batching --batching_parameters_file serving/batching.config``,
compose's default), so the same cluster shows that one caller's invalid values do not fail
the good callers' requests merged with them, and a short Locust run with the `locust` token.
The 30 s two-caller measurement is `make bench-edge` (loadtest/edge_bench.py).
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common import contract as c
from loadtest.runner import LoadTest, gate, run_load_test
from serving import dev_pki as creds
from serving.batch_poisoning_test import (
    BATCHING_CONFIG,
    assert_not_poisoned,
    bad_requests,
    good_requests,
    poisoning_counts,
)
from serving.batching_test import outputs
from serving.cluster import CLUSTERS, GRPC_CLUSTER, LocalCluster, admin_get, envoy_stats

MiB = 1 << 20
BATCHING = ("--enable_batching", "--batching_parameters_file", str(BATCHING_CONFIG))


@pytest.fixture(scope="module")
def cluster(exported_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("credentials")
    creds.ensure(out)
    with LocalCluster(exported_model, 2, workdir=tmp_path_factory.mktemp("edge"), credentials=out,
                      server_args=BATCHING) as running:  # fmt: skip
        yield running


# --- callers ----------------------------------------------------------------------------------


def _channel(cluster: LocalCluster, **options) -> grpc.Channel:
    opts = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
    opts += list(options.items())
    return grpc.secure_channel(cluster.grpc_target, grpc.ssl_channel_credentials(cluster.tls_ca.read_bytes()), opts)


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _predict_request(users: list[str] | None = None, movies: list[str] | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(users or ["1"]))
    request.inputs[c.MOVIE_ID].CopyFrom(tf.make_tensor_proto(movies or ["1"]))
    return request


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _rest(cluster: LocalCluster, path: str, token: str | None, method: str = "GET", body: bytes | None = None):
    """(status, body) of one HTTPS request to Envoy's REST listener."""
    context = ssl.create_default_context(cafile=str(cluster.tls_ca))
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(cluster.rest_url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- did anything reach a replica? ---------------------------------------------------------


def _replica_calls(cluster: LocalCluster) -> int:
    """Every call the replicas counted, but Envoy's health checks (REST status, once a second)."""
    total = 0.0
    for member in cluster.members:
        with urllib.request.urlopen(member.metrics_url(cluster.host), timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "serving_requests_total" and sample.labels.get("api") != "REST status":
                    total += sample.value
    return int(total)


def _upstream_requests(cluster: LocalCluster) -> int:
    """Requests Envoy sent to the replicas in both clusters (health checks are not counted here)."""
    return sum(envoy_stats(cluster.admin_url, f"cluster.{name}.upstream_rq_total")[f"cluster.{name}.upstream_rq_total"]
               for name in CLUSTERS)  # fmt: skip


class NothingReachesTheReplicas:
    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster

    def __enter__(self):
        self.before = (_replica_calls(self.cluster), _upstream_requests(self.cluster))
        return self

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            after = (_replica_calls(self.cluster), _upstream_requests(self.cluster))
            assert after == self.before, f"(replica calls, Envoy upstream requests): {self.before} -> {after}"


def _reads_all_answer(cluster: LocalCluster, token: str, n: int = 20) -> None:
    with _channel(cluster) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
        for _ in range(n):
            response = predict(_predict_request(["1", "2"], ["1", "2"]), metadata=_bearer(token), timeout=10)
            assert len(response.outputs[c.PREDICTED_RATING].float_val) == 2
        reply = status(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": c.MODEL_NAME}),
                       metadata=_bearer(token), timeout=10)  # fmt: skip
        assert [v.state for v in reply.model_version_status] == [get_model_status_pb2.ModelVersionStatus.AVAILABLE]


# --- the allowlist ---------------------------------------------------------------------------


def test_model_reload_through_the_public_entry_is_refused_and_reads_keep_answering(cluster):
    """The attack the public entry must stop: a config without `movielens`, sent twice (round robin: once per replica),
    would unload the model everywhere. Envoy answers PERMISSION_DENIED itself."""
    token = cluster.token("attacker")
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name, config.base_path, config.model_platform = "other", "/tmp/nothing", "tensorflow"
    with NothingReachesTheReplicas(cluster), _channel(cluster) as channel:
        reload = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as refused:
                reload(request, metadata=_bearer(token), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
    _reads_all_answer(cluster, cluster.token("reader"))


@pytest.mark.parametrize("method", [
    "/tensorflow.serving.PredictionService/Classify",
    "/tensorflow.serving.PredictionService/MultiInference",
    "/tensorflow.serving.SessionService/SessionRun",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.health.v1.Health/Check",
    "/an.invented.Service/Method",
    "/tensorflow.serving.PredictionService/Predict/../../ModelService/HandleReloadConfigRequest",
])  # fmt: skip
def test_methods_outside_the_allowlist_are_answered_by_envoy(cluster, method):
    token = cluster.token("attacker")
    with NothingReachesTheReplicas(cluster), _channel(cluster) as channel:
        code = _code(lambda: channel.unary_unary(method)(b"", metadata=_bearer(token), timeout=10))
    assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL), code
    # Invented names make no stats of their own (grpc_stats counts only the allowed methods).
    assert not [name for name in envoy_stats(cluster.admin_url, "cluster.") if "invented" in name]


@pytest.mark.parametrize("method,path", [
    ("GET", c.PROMETHEUS_PATH),
    ("POST", f"/v1/models/{c.MODEL_NAME}:classify"),
    ("POST", f"/v1/models/{c.MODEL_NAME}:regress"),
    ("GET", f"/v1/models/{c.MODEL_NAME}:predict"),
    ("DELETE", f"/v1/models/{c.MODEL_NAME}"),
    ("POST", f"/v1/models/{c.MODEL_NAME}"),
    ("GET", "/v1/models"),
    ("GET", "/"),
    ("GET", f"/v1/models/{c.MODEL_NAME}/../../monitoring/prometheus/metrics"),
])  # fmt: skip
def test_rest_paths_outside_the_allowlist_are_answered_by_envoy(cluster, method, path):
    with NothingReachesTheReplicas(cluster):
        status, _ = _rest(cluster, path, cluster.token("attacker"), method, b"{}" if method == "POST" else None)
    assert status in (403, 404), (method, path, status)


def test_the_allowed_rest_calls_answer(cluster):
    token = cluster.token("reader")
    body = json.dumps({"instances": [{c.USER_ID: "1", c.MOVIE_ID: "1"}]}).encode()
    for path in (f"/v1/models/{c.MODEL_NAME}:predict", f"/v1/models/{c.MODEL_NAME}/versions/1:predict"):
        status, answer = _rest(cluster, path, token, "POST", body)
        assert status == 200 and len(json.loads(answer)["predictions"]) == 1, answer
    for path in (f"/v1/models/{c.MODEL_NAME}", f"/v1/models/{c.MODEL_NAME}/versions/1",
                 f"/v1/models/{c.MODEL_NAME}/metadata"):  # fmt: skip
        assert _rest(cluster, path, token)[0] == 200, path


# --- sizes ----------------------------------------------------------------------------------


def test_a_16_mib_predict_is_refused_at_the_edge(cluster):
    big = _predict_request([f"{i:0>1024}" for i in range(16 * 1024 + 16)], ["1"])
    assert big.ByteSize() > 16 * MiB
    with NothingReachesTheReplicas(cluster), _channel(cluster) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        code = _code(lambda: predict(big, metadata=_bearer(cluster.token("attacker")), timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, code
    # Under the 4 MiB cap, a large request still goes through (the 32 KiB connection buffers do not cap it).
    # Long ids rather than many rows: the replicas' batcher takes at most 64 rows per request.
    rows = 48
    sizable = _predict_request([f"{i:0>49152}" for i in range(rows)], [str(i % 50 + 1) for i in range(rows)])
    assert 2 * MiB < sizable.ByteSize() < 4 * MiB
    with _channel(cluster) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        response = predict(sizable, metadata=_bearer(cluster.token("reader")), timeout=30)
    assert len(response.outputs[c.PREDICTED_RATING].float_val) == rows


def test_nested_json_and_large_rest_bodies_are_refused_at_the_edge(cluster):
    token, path = cluster.token("attacker"), f"/v1/models/{c.MODEL_NAME}:predict"
    deep = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # 10 KB, far under the size cap
    strings_do_not_count = json.dumps({"instances": [{c.USER_ID: "[" * 100, c.MOVIE_ID: "{" * 100}]}).encode()
    with NothingReachesTheReplicas(cluster):
        status, answer = _rest(cluster, path, token, "POST", deep)
        assert status == 400 and b"nested deeper than 32" in answer, (status, answer)
        status, _ = _rest(cluster, path, token, "POST", b'{"instances": ["' + b"x" * (300 * 1024) + b'"]}')
        assert status == 413
    # A string full of brackets is not nesting: it reaches the server (which then rejects the unknown ids or not).
    status, _ = _rest(cluster, path, token, "POST", strings_do_not_count)
    assert status != 400 or b"nested" not in _, status


# --- TLS and tokens -------------------------------------------------------------------------


def test_a_call_without_a_valid_token_is_unauthenticated(cluster):
    signing_key = creds._load_key(cluster.credentials / creds.SIGNING_KEY)
    from cryptography.hazmat.primitives.asymmetric import ec

    bad_tokens = {
        "none": None,
        "garbage": "not-a-jwt",
        "foreign key": creds.issue_token(ec.generate_private_key(ec.SECP256R1()), "demo"),
        "expired": creds.issue_token(signing_key, "demo", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2), days=1),
        "other issuer": creds.issue_token(signing_key, "demo", issuer="someone-else"),
    }
    with NothingReachesTheReplicas(cluster), _channel(cluster) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        for what, token in bad_tokens.items():
            metadata = _bearer(token) if token else None
            assert _code(lambda: predict(_predict_request(), metadata=metadata, timeout=10)) == (
                grpc.StatusCode.UNAUTHENTICATED
            ), what
            assert _rest(cluster, f"/v1/models/{c.MODEL_NAME}", token)[0] == 401, what
        # A genuine token meant for another service: Envoy's jwt_authn answers 403 for a wrong audience.
        other = creds.issue_token(signing_key, "demo", audience="someone-else")
        assert _code(lambda: predict(_predict_request(), metadata=_bearer(other), timeout=10)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert _rest(cluster, f"/v1/models/{c.MODEL_NAME}", other)[0] == 403


def test_plaintext_and_untrusted_tls_are_refused(cluster):
    # A gRPC client without TLS: the listener speaks only TLS, the call never gets an HTTP/2 answer.
    with grpc.insecure_channel(cluster.grpc_target) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        assert _code(lambda: predict(_predict_request(), metadata=_bearer(cluster.token()), timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    # Plain HTTP to the REST port: no HTTP response at all.
    with socket.create_connection((cluster.host, cluster.envoy_ports.rest), timeout=5) as raw:
        raw.sendall(b"GET /v1/models/movielens HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not raw.recv(4096).startswith(b"HTTP/")
    # TLS older than 1.2: handshake failure.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cluster.tls_ca)
    with pytest.warns(DeprecationWarning):
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError), socket.create_connection((cluster.host, cluster.envoy_ports.rest), 5) as raw:
        old.wrap_socket(raw, server_hostname="localhost")
    # The certificate names the hosts clients use and chains to the development CA.
    context = ssl.create_default_context(cafile=str(cluster.tls_ca))
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection((cluster.host, cluster.envoy_ports.grpc), 5) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")


# --- per-caller rate limit --------------------------------------------------------------------

LOCALLY_RATE_LIMITED = "local_rate_limited"  # the message of Envoy's local_ratelimit reply


def _retry_accounting(cluster: LocalCluster) -> dict[str, int]:
    """Envoy's rate-limit refusals (both listeners) and the gRPC cluster's upstream attempts and retries."""
    stats = envoy_stats(cluster.admin_url)
    return {
        "rate_limited": stats.get("per_caller.http_local_rate_limit.rate_limited", 0),
        "upstream_rq_total": stats.get(f"cluster.{GRPC_CLUSTER}.upstream_rq_total", 0),
        "upstream_rq_retry": stats.get(f"cluster.{GRPC_CLUSTER}.upstream_rq_retry", 0),
    }



def test_a_flooder_gets_resource_exhausted_and_another_caller_is_unaffected(cluster):
    flooder, steady = cluster.token("flooder"), cluster.token("steady")
    results: dict[str, int] = {}
    details: dict[str, str] = {}
    steady_codes: list[grpc.StatusCode] = []
    before = _retry_accounting(cluster)
    with _channel(cluster) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        request = _predict_request()

        def steady_caller() -> None:
            for _ in range(20):
                steady_codes.append(_code(lambda: predict(request, metadata=_bearer(steady), timeout=10)))
                time.sleep(0.02)

        thread = threading.Thread(target=steady_caller)
        thread.start()
        # 600 at once, then the header the rate limit keys on, forged as another caller: still the flooder.
        forged = _bearer(flooder) + [("x-movielens-caller", "locust")]
        futures = [predict.future(request, metadata=forged if i % 2 else _bearer(flooder), timeout=10)
                   for i in range(600)]  # fmt: skip
        for future in futures:
            try:
                future.result()
                name = "OK"
            except grpc.RpcError as error:
                name = error.code().name
                if error.details() == LOCALLY_RATE_LIMITED:
                    name = "RESOURCE_EXHAUSTED at the edge"
                details.setdefault(name, error.details())
            results[name] = results.get(name, 0) + 1
        thread.join()
    after = _retry_accounting(cluster)
    # 200 of burst (plus what refilled meanwhile) answered, the rest refused by Envoy at once. (A replica
    # at its concurrent-RPC limit answers RESOURCE_EXHAUSTED too; Envoy retries that on the other one.)
    limited = results.get("RESOURCE_EXHAUSTED at the edge", 0)
    assert limited >= 300 and set(results) <= {"OK", "RESOURCE_EXHAUSTED at the edge", "RESOURCE_EXHAUSTED"}, (
        results, details)
    assert steady_codes == [grpc.StatusCode.OK] * 20, steady_codes
    # Envoy's own refusals are local replies: each reached the flooder once, as RESOURCE_EXHAUSTED, and none
    # was retried into the replicas. Every upstream attempt is one of the other calls, or a retry.
    assert after["rate_limited"] - before["rate_limited"] == limited, (before, after, results)
    upstream = after["upstream_rq_total"] - before["upstream_rq_total"]
    retries = after["upstream_rq_retry"] - before["upstream_rq_retry"]
    assert upstream - retries == 600 - limited + 20, (before, after, results)
    # REST: 429 past the bucket, for the same kind of caller (8 keep-alive connections, 75 calls each).
    import http.client

    headers = {"authorization": f"Bearer {cluster.token('rest-flooder')}"}
    context = ssl.create_default_context(cafile=str(cluster.tls_ca))

    def rest_flood(_: int) -> list[int]:
        connection = http.client.HTTPSConnection(cluster.host, cluster.envoy_ports.rest, context=context, timeout=10)
        statuses = []
        for _ in range(75):
            connection.request("GET", f"/v1/models/{c.MODEL_NAME}", headers=headers)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()
        return statuses

    before = _retry_accounting(cluster)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = [status for batch in pool.map(rest_flood, range(8)) for status in batch]
    elapsed = time.monotonic() - started
    # The caller's bucket (envoy.yaml): 200 at once, then 10 every 0.1 s; a slow machine refills it for longer,
    # so the bound on what passes follows the flood's own duration.
    passed_at_most = 200 + 10 * (int(elapsed / 0.1) + 1)
    assert set(statuses) == {200, 429} and statuses.count(200) <= passed_at_most, (elapsed, statuses.count(200))
    # Every 429 is Envoy's (429 is retried when a replica answers it, so one would not reach the caller at once).
    assert _retry_accounting(cluster)["rate_limited"] - before["rate_limited"] == statuses.count(429)


def test_a_token_without_sub_cannot_borrow_another_callers_bucket(cluster):
    """No `sub`: no caller header from jwt_authn, and the forged one is removed, so these calls share the
    no-caller bucket (one caller's rate), not `locust`'s 5,000/s."""
    import jwt

    signing_key = creds._load_key(cluster.credentials / creds.SIGNING_KEY)
    now = int(time.time())
    token = jwt.encode({"iss": creds.ISSUER, "aud": creds.AUDIENCE, "iat": now, "exp": now + 600}, signing_key,
                       algorithm=creds.ALGORITHM, headers={"kid": creds.KEY_ID})  # fmt: skip
    forged = _bearer(token) + [("x-movielens-caller", "locust")]
    with _channel(cluster) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        futures = [predict.future(_predict_request(), metadata=forged, timeout=10) for _ in range(600)]
        codes = [_code(future.result).name for future in futures]
    assert codes.count("RESOURCE_EXHAUSTED") >= 300 and set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes


# --- Locust with TLS and a token -------------------------------------------------------------


def test_locust_with_16_users_tls_and_a_token_has_no_failures(cluster, tmp_path):
    """The Locust user (gevent) sends its token as per-call metadata: with gRPC call credentials, whose
    plugin ran on gevent's 10-thread hub pool, 16 users saw 44 of 49 calls end DEADLINE_EXCEEDED."""
    test = LoadTest(target=cluster.grpc_target, out=tmp_path, users=16, spawn_rate=16, run_time="10s",
                    tls_ca=str(cluster.tls_ca), token=cluster.token("locust"))  # fmt: skip
    summary = run_load_test(test)
    assert summary["failures"] == 0 and summary["requests"] >= 100, (summary["requests"], summary["failures"],
                                                                      summary["locust_failures"])  # fmt: skip
    assert gate(summary, max_p99_ms=None, max_fail_ratio=0.0) == [], summary["files"]


# --- no batch poisoning ------------------------------------------------------------------------


def _merged_batch_failures(cluster: LocalCluster) -> int:
    """Batches the replicas ran again in halves because some caller's values failed the merged run."""
    return sum(m.log_path.read_text(errors="replace").count("running it again in halves") for m in cluster.members)


def test_good_callers_are_answered_correctly_next_to_a_caller_sending_invalid_values(cluster):
    """Batching on, through Envoy with TLS and tokens, 32 concurrent good callers
    (each its own token, so the per-caller limit is not what is measured) and one caller sending k = 0,
    out-of-range ratings and a too-wide rated list: every good request answers as it does alone, the
    offender gets INVALID_ARGUMENT naming the input."""
    callers = 32
    goods = good_requests(np.random.default_rng(21), callers * 6)
    bads = bad_requests()
    tokens = [cluster.token(f"good-{i}") for i in range(callers)]
    with _channel(cluster) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        locust = _bearer(cluster.token("locust"))  # one at a time, nothing merged; 5,000/s
        expected = [outputs(stub.Predict(r, metadata=locust, timeout=60)) for r in goods]
    merged_failures_before = _merged_batch_failures(cluster)
    done = threading.Event()
    bad_answers: list[tuple[grpc.StatusCode, str, str]] = []

    def offender() -> None:  # invalid values all along, within its own rate limit (100/s)
        metadata = _bearer(cluster.token("offender"))
        with _channel(cluster) as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            while not done.is_set():
                for request, name in bads:
                    try:
                        predict(request, metadata=metadata, timeout=60)
                        bad_answers.append((grpc.StatusCode.OK, "", name))
                    except grpc.RpcError as exc:
                        bad_answers.append((exc.code(), exc.details(), name))
                    time.sleep(0.02)

    def good_caller(i: int) -> list:
        answers = []
        with _channel(cluster) as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            for request in goods[i::callers]:
                try:
                    answers.append(outputs(predict(request, metadata=_bearer(tokens[i]), timeout=60)))
                except grpc.RpcError as exc:
                    answers.append(exc)
        return answers

    bad_thread = threading.Thread(target=offender)
    bad_thread.start()
    try:
        with ThreadPoolExecutor(callers) as pool:
            per_caller = list(pool.map(good_caller, range(callers)))
    finally:
        done.set()
        bad_thread.join()
    got = [None] * len(goods)
    for i, answers in enumerate(per_caller):
        got[i::callers] = answers
    assert_not_poisoned(goods, expected, got, bads, bad_answers)
    # The offender's values were merged with good callers' requests (and the batch bisected), so
    # the test measured poisoning rather than requests that happened to run alone.
    assert _merged_batch_failures(cluster) > merged_failures_before


def test_the_poisoning_measurement_through_the_public_entry(cluster):
    """serving/batch_poisoning_test.py's measurement (400 good recommend calls, 50 with k = 0, 48 at a time;
    335 of the 400 failed on the local batching server before), through Envoy with the `locust` token."""
    counts = poisoning_counts(cluster.grpc_target, channel=lambda: _channel(cluster),
                              metadata=_bearer(cluster.token("locust")))  # fmt: skip
    assert counts == {"good": 400, "good_failed": 0, "bad": 50, "bad_invalid_argument": 50}


# --- connections ----------------------------------------------------------------------------


def test_a_thousand_idle_connections_do_not_stop_another_caller(cluster):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle: list[socket.socket] = []
    try:
        # Half never start TLS (a slowloris), half finish the handshake and then say nothing.
        context = ssl.create_default_context(cafile=str(cluster.tls_ca))
        context.set_alpn_protocols(["h2"])
        for i in range(1000):
            raw = socket.create_connection((cluster.host, cluster.envoy_ports.grpc), timeout=5)
            idle.append(context.wrap_socket(raw, server_hostname="localhost") if i % 2 else raw)
        started = time.monotonic()
        _reads_all_answer(cluster, cluster.token("second-caller"))
        assert time.monotonic() - started < 10
        active = envoy_stats(cluster.admin_url, "listener.")
        assert sum(v for k, v in active.items() if k.endswith("downstream_cx_active")) >= 1000
    finally:
        for sock in idle:
            sock.close()


# --- admin ----------------------------------------------------------------------------------


def test_the_read_only_admin_listener_serves_views_only(cluster):
    url = cluster.readonly_admin_url
    with urllib.request.urlopen(url + "/ready", timeout=5) as response:  # noqa: S310
        assert response.read().strip() == b"LIVE"
    with urllib.request.urlopen(url + "/stats/prometheus", timeout=5) as response:  # noqa: S310
        assert b"envoy_cluster_upstream_rq_total" in response.read()
    for method, path in (("POST", "/quitquitquit"), ("POST", "/healthcheck/fail"), ("POST", "/logging"),
                         ("POST", "/runtime_modify"), ("GET", "/config_dump"), ("POST", "/stats")):  # fmt: skip
        request = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310
        assert refused.value.code == 404, (method, path)
    assert admin_get(cluster.admin_url, "/ready").strip() == "LIVE"  # Envoy still up after all that
