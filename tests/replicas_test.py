"""Two local replicas behind a real Envoy under Locust load, 30 s per scenario (`make test-replicas`).

- balance: 16 users for 30 s; each replica answers 40-60% of the Predict calls (counted by
  the replicas' own Prometheus metrics), no failures;
- failover: the same, with replica 0 SIGKILLed 10 s into the load and restarted at 20 s; Locust
  sees no failure (Envoy retries on the other replica) and the restarted replica serves
  again before the load ends;
- rollout: `python -m export` writes version 2 into the shared base path during the load;
  every replica switches (its own serving_model_loaded_version, sampled every 0.1 s, goes
  1 -> 2 and never back) and serves after switching, no failures, and once every replica
  has switched no client through Envoy gets version 1 again (Envoy no longer says which
  replica answered, so "going back" is judged from the replicas' own metrics and the
  model_spec.version of each answer);
- edge: one caller floods at 20x its rate limit for 30 s next to a steady caller (loadtest/edge_bench.py):
  the flooder gets RESOURCE_EXHAUSTED, the steady caller no failure and a p99 within 2x of its own alone;
- shedding: replicas taking 2 RPCs at a time (--grpc_max_concurrent_rpcs) under 8 callers: a replica's
  RESOURCE_EXHAUSTED is retried by Envoy on the other one, and callers see it only when every try was shed;
- the `python -m serving.cluster` command itself: ready, serving through Envoy, SIGINT stops
  everything with exit code 0.

All traffic goes to 127.0.0.1, through Envoy's TLS listeners with development tokens (the
Locust users as caller `locust`, whose rate limit is sized for load tests), and every run is
bounded in time. Each scenario writes its
figures to reports/replicas/<scenario>/replicas.json next to Locust's summary.json, and prints
one line. These take 4-5 minutes on 2 cores, so `make test` skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from portpicker import pick_unused_port
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from client import RecommenderClient
from common import contract as c
from loadtest import runner
from loadtest.runner import LoadTest, run_load_test
from serving.dev_pki import read_token
from serving.cluster import (
    CLUSTERS,
    GRPC_CLUSTER,
    LocalCluster,
    envoy_stats,
    healthy_hosts,
    served_requests,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("RUN_REPLICA_SCENARIOS"),
    reason="30 s load scenarios behind Envoy: run `make test-replicas`",
)

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / c.REPORTS_DIR / "replicas"
USERS = 16
RUN_S = 30
SAMPLE_S = 0.1  # how often the rollout scenario reads each replica's loaded version
ENVOY_COUNTERS = (
    "upstream_rq_total", "upstream_rq_retry", "upstream_rq_retry_success", "upstream_rq_retry_overflow",
    "upstream_rq_retry_limit_exceeded", "upstream_cx_connect_fail", "upstream_rq_per_try_timeout",
    "health_check.failure", "outlier_detection.ejections_enforced_total",
)  # fmt: skip


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def locust_yields_the_cpu(monkeypatch):
    """Locust runs at nice 10. On this 2-core machine the load generator, both replicas and
    Envoy share the cores; a replica restarting (or an export) under full load then waits
    for CPU behind Locust, which a deployment, with the load elsewhere, would not do.
    Measured without it: a restart under load took 5.4 s to SERVING in one run and 17.4 s
    in another (too late to rejoin before the end); with it, 5.1-5.7 s."""
    original = runner.locust_command
    monkeypatch.setattr(runner, "locust_command", lambda test: ["nice", "-n", "10", *original(test)])


@pytest.fixture
def model_copy(exported_model, tmp_path) -> Path:
    """The session's exported model (version 1) in a base path this test alone writes to."""
    base = tmp_path / "models" / c.MODEL_NAME
    shutil.copytree(exported_model, base)
    return base


def _predict_counts(cluster: LocalCluster) -> list[int]:
    return [served_requests(m.metrics_url(cluster.host), "Predict") for m in cluster.members]


def _loaded_version(metrics_url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "serving_model_loaded_version" and sample.labels.get("model") == c.MODEL_NAME:
                return int(sample.value)
    raise AssertionError(f"no serving_model_loaded_version on {metrics_url}")


def _envoy_counters(cluster: LocalCluster) -> dict[str, int]:
    stats = envoy_stats(cluster.admin_url, f"cluster.{GRPC_CLUSTER}.")
    return {name: stats.get(f"cluster.{GRPC_CLUSTER}.{name}", 0) for name in ENVOY_COUNTERS}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


class Load:
    """Locust headless against Envoy in a thread; ``started`` is when Envoy sees the load begin."""

    def __init__(self, cluster: LocalCluster, out: Path, run_s: int = RUN_S):
        self.cluster, self.run_s = cluster, run_s
        self.test = LoadTest(target=cluster.grpc_target, out=out, users=USERS, spawn_rate=USERS, run_time=f"{run_s}s",
                             tls_ca=str(cluster.tls_ca), token=cluster.token("locust"))
        self.summary: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="locust", daemon=True)

    def _run(self) -> None:
        try:
            self.summary = run_load_test(self.test)
        except BaseException as error:  # surfaced by join()
            self.error = error

    def start(self) -> float:
        key = f"cluster.{GRPC_CLUSTER}.upstream_rq_total"
        baseline = envoy_stats(self.cluster.admin_url, key)[key]
        self._thread.start()
        deadline = time.monotonic() + 90
        while envoy_stats(self.cluster.admin_url, key)[key] < baseline + 2 * USERS:
            assert self._thread.is_alive() and time.monotonic() < deadline, f"the load never started: {self.error}"
            time.sleep(0.1)
        self.started = time.monotonic()
        return self.started

    def at(self, seconds: float) -> None:
        """Sleeps until ``seconds`` after the load started."""
        time.sleep(max(0.0, self.started + seconds - time.monotonic()))

    def join(self) -> dict:
        self._thread.join(self.run_s + 120)
        assert not self._thread.is_alive(), "Locust did not finish"
        if self.error is not None:
            raise self.error
        return self.summary


def _report(name: str, figures: dict) -> None:
    out = REPORTS / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "replicas.json").write_text(json.dumps(figures, indent=2) + "\n")
    sys.__stdout__.write(f"\n[{name}] {json.dumps(figures)}\n")
    sys.__stdout__.flush()


def _locust_figures(summary: dict) -> dict:
    return {key: summary[key] for key in ("requests", "failures", "rps", "p50_ms", "p99_ms", "max_ms")}


# --- scenarios -------------------------------------------------------------------------------


def test_two_replicas_share_the_load_evenly(model_copy, tmp_path):
    with LocalCluster(model_copy, 2, workdir=tmp_path / "cluster") as cluster:
        before, envoy_before = _predict_counts(cluster), _envoy_counters(cluster)
        load = Load(cluster, REPORTS / "balance")
        load.start()
        summary = load.join()
        served = [b - a for a, b in zip(before, _predict_counts(cluster))]
        envoy = _delta(_envoy_counters(cluster), envoy_before)
    shares = [round(s / sum(served), 4) for s in served]
    _report("balance", {"locust": _locust_figures(summary), "served_per_replica": served, "shares": shares,
                        "envoy": envoy})  # fmt: skip
    assert summary["failures"] == 0 and summary["requests"] > 0, summary
    assert summary["locust_exceptions"] == 0 and summary["locust_exit_code"] == 0
    # The replicas served every request Locust counted (plus its one model-card read).
    assert sum(served) >= summary["requests"], (served, summary["requests"])
    assert all(0.40 <= share <= 0.60 for share in shares), shares


def test_a_killed_replica_costs_no_request_and_rejoins_after_restart(model_copy, tmp_path):
    with LocalCluster(model_copy, 2, workdir=tmp_path / "cluster") as cluster:
        victim, survivor = cluster.members
        envoy_before = _envoy_counters(cluster)
        survivor_before = served_requests(survivor.metrics_url(cluster.host), "Predict")
        load = Load(cluster, REPORTS / "failover")
        load.start()
        load.at(10)
        victim_before_kill = served_requests(victim.metrics_url(cluster.host), "Predict")
        cluster.kill_replica(victim.index)
        killed_at = time.monotonic() - load.started
        unhealthy_at = None
        while unhealthy_at is None and time.monotonic() - load.started < 20:
            if cluster.upstream(victim) not in healthy_hosts(cluster.admin_url, GRPC_CLUSTER):
                unhealthy_at = time.monotonic() - load.started
            time.sleep(0.1)
        # Restart well before the end: a replica starting while Locust and the survivor hold both
        # cores takes 5-10 s to reach SERVING, and it must still take traffic before the load ends.
        load.at(15)
        cluster.start_replica(victim.index)
        restarted_at = time.monotonic() - load.started
        cluster.wait_replica_serving(victim.index, timeout=60)
        serving_at = time.monotonic() - load.started
        cluster.wait_until_healthy(60, members=[victim])
        healthy_again_at = time.monotonic() - load.started
        summary = load.join()
        victim_after_restart = served_requests(victim.metrics_url(cluster.host), "Predict")  # a new process
        survivor_total = served_requests(survivor.metrics_url(cluster.host), "Predict") - survivor_before
        envoy = _delta(_envoy_counters(cluster), envoy_before)
        all_healthy = all(
            {cluster.upstream(m, name) for m in cluster.members} <= healthy_hosts(cluster.admin_url, name)
            for name in CLUSTERS
        )
    timeline = {"killed_at_s": killed_at, "envoy_marked_unhealthy_at_s": unhealthy_at, "restarted_at_s": restarted_at,
                "replica_serving_at_s": serving_at, "envoy_healthy_again_at_s": healthy_again_at}  # fmt: skip
    _report("failover", {
        "locust": _locust_figures(summary),
        "timeline": {k: None if v is None else round(v, 2) for k, v in timeline.items()},
        "victim_served_before_kill": victim_before_kill, "victim_served_after_restart": victim_after_restart,
        "survivor_served": survivor_total, "envoy": envoy,
    })  # fmt: skip
    assert summary["failures"] == 0 and summary["requests"] > 0, summary
    assert summary["locust_exceptions"] == 0 and summary["locust_exit_code"] == 0
    assert unhealthy_at is not None, "Envoy never marked the killed replica unhealthy"
    # Rejoining is shown by traffic, not by a deadline (which flakes when the cores are busy).
    assert victim_after_restart > 0, (
        f"the restarted replica took no traffic before the load ended (healthy again at {healthy_again_at:.1f}s)"
    )
    assert all_healthy
    assert envoy["upstream_rq_retry_overflow"] == 0, envoy


class Probe(threading.Thread):
    """A client calling Predict through Envoy (TLS, its own token) in a loop, noting
    (sent at, answered at, version) of every answer."""

    def __init__(self, cluster: LocalCluster, name: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.cluster, self.stop = cluster, stop
        self.token = cluster.token(name)
        self.answers: list[tuple[float, float, int]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = c.MODEL_NAME
        request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(["1"]))
        request.inputs[c.MOVIE_ID].CopyFrom(tf.make_tensor_proto(["1"]))
        tls = grpc.ssl_channel_credentials(self.cluster.tls_ca.read_bytes())
        metadata = [("authorization", f"Bearer {self.token}")]
        with grpc.secure_channel(self.cluster.grpc_target, tls) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = stub.Predict(request, metadata=metadata, timeout=10)
                except grpc.RpcError as error:
                    self.errors.append(f"{error.code().name}: {error.details()}")
                else:
                    self.answers.append((sent, time.monotonic(), response.model_spec.version.value))
                time.sleep(0.02)


class VersionSampler(threading.Thread):
    """Each replica's own serving_model_loaded_version and Predict count, every SAMPLE_S."""

    def __init__(self, cluster: LocalCluster, stop: threading.Event):
        super().__init__(daemon=True)
        self.cluster, self.stop = cluster, stop
        self.samples: list[list[tuple[float, int, int]]] = [[] for _ in cluster.members]  # (at, version, served)

    def run(self) -> None:
        while not self.stop.is_set():
            for member, samples in zip(self.cluster.members, self.samples):
                url = member.metrics_url(self.cluster.host)
                try:
                    samples.append((time.monotonic(), _loaded_version(url), served_requests(url, "Predict")))
                except OSError:
                    pass
            time.sleep(SAMPLE_S)


def test_a_new_version_reaches_every_replica_without_failures_or_going_back(model_copy, trained_run, training_data_dir,
                                                                            tmp_path):
    with LocalCluster(model_copy, 2, workdir=tmp_path / "cluster", poll_seconds=1.0) as cluster:
        stop = threading.Event()
        probes = [Probe(cluster, f"probe-{i}", stop) for i in range(2)]
        sampler = VersionSampler(cluster, stop)
        sampler.start()
        # 45 s: the export (training-data read, the gate's comparison, warmup) must end, and each replica
        # switch and serve, inside the load even when the cores are busy.
        load = Load(cluster, REPORTS / "rollout", run_s=45)
        load.start()
        for probe in probes:
            probe.start()
        load.at(5)
        export_started = time.monotonic() - load.started
        exported = subprocess.run(
            [sys.executable, "-m", "export", "--run", str(trained_run), "--model-base-path", str(model_copy),
             "--version", "2", "--data-dir", str(training_data_dir)],  # the gate's validation part
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        export_done = time.monotonic() - load.started
        summary = load.join()
        time.sleep(2 * SAMPLE_S)
        stop.set()
        for thread in (*probes, sampler):
            thread.join(15)
        loaded = [_loaded_version(m.metrics_url(cluster.host)) for m in cluster.members]
    assert exported.returncode == 0, exported.stdout + exported.stderr

    # Per replica, from its own metrics: when it switched, that it never went back, what it served before and after.
    switched_at: list[float | None] = []
    went_back = []
    served_before, served_after = [], []
    for index, samples in enumerate(sampler.samples):
        versions = [version for _, version, _ in samples]
        went_back += [(index, a, b) for a, b in zip(versions, versions[1:]) if b < a]
        first_v2 = next((i for i, version in enumerate(versions) if version == 2), None)
        switched_at.append(None if first_v2 is None else samples[first_v2][0])
        served_before.append(samples[first_v2 - 1][2] - samples[0][2] if first_v2 else 0)
        served_after.append(samples[-1][2] - samples[first_v2][2] if first_v2 is not None else 0)
    answers = [answer for probe in probes for answer in probe.answers]
    all_switched = max(switched_at) if None not in switched_at else None
    # A request sent after every replica reported version 2 (one sample period of slack) must get version 2.
    late_v1 = [] if all_switched is None else [
        round(sent - load.started, 2) for sent, _, version in answers if version == 1 and sent > all_switched + SAMPLE_S
    ]  # fmt: skip
    _report("rollout", {
        "locust": _locust_figures(summary),
        "export_s": [round(export_started, 2), round(export_done, 2)],
        "replica_switched_at_s": [None if t is None else round(t - load.started, 2) for t in switched_at],
        "replica_predict_before_switch": served_before, "replica_predict_after_switch": served_after,
        "probe_answers": {str(v): sum(1 for *_, version in answers if version == v) for v in (1, 2)},
        "probe_errors": sum(len(p.errors) for p in probes), "replica_went_back": went_back,
        "probe_v1_after_all_switched": late_v1, "loaded_version_after": loaded,
    })  # fmt: skip
    assert summary["failures"] == 0 and summary["requests"] > 0, summary
    assert summary["locust_exceptions"] == 0 and summary["locust_exit_code"] == 0
    assert not [e for p in probes for e in p.errors], [e for p in probes for e in p.errors][:5]
    assert loaded == [2, 2], loaded
    assert None not in switched_at, f"a replica never reported version 2 during the run: {switched_at}"
    assert not went_back, went_back
    assert all(n > 0 for n in served_before), f"a replica served version 2 from the start? {served_before}"
    assert all(n > 0 for n in served_after), f"a replica took no traffic after switching: {served_after}"
    assert {version for *_, version in answers} == {1, 2}
    assert not late_v1, f"version 1 answered after every replica had switched: {late_v1[:10]}"


def test_a_flooding_caller_gets_resource_exhausted_and_a_steady_caller_keeps_its_latency(exported_model, tmp_path):
    """Two callers with their own tokens, one at 20x its rate limit for 30 s, the
    other steady within its limit (loadtest/edge_bench.py; `make bench-edge` writes the same figures)."""
    from loadtest import edge_bench

    results = edge_bench.measure(exported_model, workdir=tmp_path)
    checks = edge_bench.verdict(results)
    _report("edge", {**results, "checks": checks})
    assert all(checks.values()), (checks, results)


SHED_LIMIT = 2  # --grpc_max_concurrent_rpcs of each replica in the shedding scenario
SHED_CALLERS, SHED_CALLS = 8, 400


def test_a_replica_shedding_resource_exhausted_is_retried_on_the_other(exported_model, tmp_path):
    """Replicas that shed (at --grpc_max_concurrent_rpcs, RESOURCE_EXHAUSTED at once) are retried by Envoy
    on the other replica, so callers see the shedding only when every try was shed. 8 callers, each replica
    taking 2 RPCs at a time, 400 recommend calls for 59 users each. Measured without `resource-exhausted`
    in the route's retry_on: 357 of 400 calls failed RESOURCE_EXHAUSTED; with it, 27 (every one of them
    shed on all 4 tries: upstream_rq_retry_limit_exceeded)."""
    with LocalCluster(exported_model, 2, workdir=tmp_path / "cluster", credentials=tmp_path / "credentials",
                      server_args=("--grpc_max_concurrent_rpcs", str(SHED_LIMIT))) as cluster:  # fmt: skip
        metadata = [("authorization", f"Bearer {cluster.token('locust')}")]
        users = [str(u) for u in range(1, 60)]
        request = predict_pb2.PredictRequest()
        request.model_spec.name = c.MODEL_NAME
        request.model_spec.signature_name = c.RECOMMEND_SIGNATURE
        request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(users))
        request.inputs[c.K].CopyFrom(tf.make_tensor_proto(np.full(len(users), 50, np.int32)))
        before = _envoy_counters(cluster)
        tls = grpc.ssl_channel_credentials(cluster.tls_ca.read_bytes())
        with grpc.secure_channel(cluster.grpc_target, tls) as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict

            def call(_: int) -> str:
                try:
                    predict(request, metadata=metadata, timeout=30)
                    return "OK"
                except grpc.RpcError as error:
                    return error.code().name

            with ThreadPoolExecutor(SHED_CALLERS) as pool:
                codes = list(pool.map(call, range(SHED_CALLS)))
        envoy = _delta(_envoy_counters(cluster), before)
    counts = {code: codes.count(code) for code in sorted(set(codes))}
    _report("shedding", {"codes": counts, "envoy": envoy})
    assert set(counts) <= {"OK", "RESOURCE_EXHAUSTED"}, counts
    assert envoy["upstream_rq_retry"] > 0 and envoy["upstream_rq_retry_success"] > 0, envoy
    # What reached a caller had been shed on every try (or its retry refused by the budget).
    shed_through = envoy["upstream_rq_retry_limit_exceeded"] + envoy["upstream_rq_retry_overflow"]
    assert counts.get("RESOURCE_EXHAUSTED", 0) <= shed_through, (counts, envoy)
    assert counts.get("OK", 0) >= SHED_CALLS // 2, counts


# --- the command ---------------------------------------------------------------------------


def test_the_command_serves_through_envoy_and_stops_on_sigint(exported_model, tmp_path):
    ports = {name: pick_unused_port() for name in ("grpc", "rest", "admin", "readonly")}
    credentials = tmp_path / "credentials"  # made by the command itself
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.cluster", "--replicas", "2", "--model-base-path", str(exported_model),
         "--port", str(ports["grpc"]), "--rest-api-port", str(ports["rest"]), "--admin-port", str(ports["admin"]),
         "--readonly-admin-port", str(ports["readonly"]), "--credentials", str(credentials),
         "--first-replica-port", "0", "--workdir", str(tmp_path / "cluster")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("ready:") for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        assert f"--tls-ca {credentials / 'ca.pem'}" in "".join(lines), "".join(lines)
        with RecommenderClient(f"127.0.0.1:{ports['grpc']}", tls_ca=credentials / "ca.pem",
                               token=read_token(credentials, "demo")) as client:  # fmt: skip
            assert len(client.recommend(42, k=5)) == 5
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "stopped: envoy exit 0, replica 0 exit 0, replica 1 exit 0" in output, output
    for log in (tmp_path / "cluster").glob("replica-*.log"):
        assert "Server stopped" in log.read_text(), log
