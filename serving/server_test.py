"""The server process end to end: hot reload under traffic, broken versions, batching, SIGTERM drain, config,
busy ports. The two runs under traffic (hot reload, batching with a SIGTERM drain) need
RUN_SERVING_SCENARIOS=1: make test-serving, which CI runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from portpicker import pick_unused_port
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common import contract as c
from serving.batching import RANK0_MESSAGE
from serving.launcher import REPO_ROOT, start_local_server
from serving.model_manager import VersionPolicy
from serving.server import LocalModelServer, ServerOptions, StartupError, model_sources, resolve_base_path
from testing.tf1_models import export_tf1_half_plus_two

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END

SCENARIOS = pytest.mark.skipif(os.environ.get("RUN_SERVING_SCENARIOS") != "1",
                               reason="half a minute of traffic on two cores: make test-serving (RUN_SERVING_SCENARIOS=1)")


def _copy_version(exported_model: Path, base: Path, version: int) -> None:
    source = next(p for p in exported_model.iterdir() if p.name.isdigit())
    tmp = base / f".tmp-{version}"
    shutil.copytree(source, tmp)
    tmp.rename(base / str(version))


def _rate_request(users: list[str], movies: list[str]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = c.MODEL_NAME
    request.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(users))
    request.inputs[c.MOVIE_ID].CopyFrom(tf.make_tensor_proto(movies))
    return request


def _statuses(target: str) -> dict[int, tuple[int, int]]:
    with grpc.insecure_channel(target) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = c.MODEL_NAME
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return {s.version: (s.state, s.status.error_code) for s in response.model_version_status}


def _predicts_in_flight(metrics_url: str) -> float:
    page = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    match = re.search(r'^serving_requests_in_flight\{api="Predict"\} (\S+)$', page, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_for(condition, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@SCENARIOS
def test_hot_reload_under_traffic_loses_no_requests_and_survives_a_broken_version(tmp_path, exported_model):
    base = tmp_path / c.MODEL_NAME
    base.mkdir()
    _copy_version(exported_model, base, 1)
    with start_local_server(base, poll_seconds=0.2) as server:
        stop = threading.Event()
        failures: list[str] = []
        # One list per client: each client's answers must never go back to an older
        # version, while interleaving between clients says nothing.
        versions_seen: list[list[int]] = [[], [], []]

        def grpc_traffic(seen: list[int]) -> None:
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                while not stop.is_set():
                    try:
                        response = stub.Predict(_rate_request(["1", "2"], ["3", "4"]), timeout=30)
                        seen.append(response.model_spec.version.value)
                    except grpc.RpcError as err:
                        failures.append(f"gRPC {err.code().name}: {err.details()}")

        def rest_traffic() -> None:
            body = json.dumps({"instances": [{c.USER_ID: "1", c.MOVIE_ID: "2"}]}).encode()
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(f"{server.rest_url}/v1/models/{c.MODEL_NAME}:predict", body, 30) as r:
                        assert r.status == 200
                except Exception as err:  # noqa: BLE001 - every failure counts, whatever its type
                    failures.append(f"REST {err}")

        threads = [threading.Thread(target=grpc_traffic, args=(seen,)) for seen in versions_seen]
        threads.append(threading.Thread(target=rest_traffic))
        for thread in threads:
            thread.start()
        try:
            _wait_for(lambda: all(versions_seen), what="every client to get answers")
            broken = base / ".tmp-2"
            broken.mkdir()
            (broken / "saved_model.pb").write_bytes(b"\x00 not a SavedModel")
            broken.rename(base / "2")
            _wait_for(lambda: _statuses(server.grpc_target).get(2, (0, 0))[1] != 0, what="version 2 to fail")
            assert _statuses(server.grpc_target)[1] == (AVAILABLE, 0)

            _copy_version(exported_model, base, 3)
            _wait_for(lambda: all(seen[-1] == 3 for seen in versions_seen), what="traffic to move to version 3")
            _wait_for(lambda: _statuses(server.grpc_target).get(1, (0, 0))[0] == END, what="version 1 to unload")
            answered = [len(seen) for seen in versions_seen]
            _wait_for(lambda: all(len(seen) > n for seen, n in zip(versions_seen, answered)),
                      what="every client to get answers after the unload")
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)

        assert failures == []
        for seen in versions_seen:
            assert set(seen) == {1, 3}
            assert seen == sorted(seen), "traffic went back to an old version"
        states = _statuses(server.grpc_target)
        assert states[3] == (AVAILABLE, 0) and states[1] == (END, 0)
        assert states[2][0] == END and states[2][1] != 0
        log = server.log_text()
        assert "Loading servable: {name: movielens version: 2} failed" in log
        assert "Done unloading servable version {name: movielens version: 1}" in log


@SCENARIOS
def test_batching_server_matches_unbatched_answers_and_sigterm_drains(tmp_path, exported_model, local_server):
    base = tmp_path / c.MODEL_NAME
    base.mkdir()
    _copy_version(exported_model, base, 1)  # the exporter's warmup file, replayed through the batcher
    params = tmp_path / "batching.config"
    # A long timeout keeps requests queued long enough to send SIGTERM while they wait.
    params.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 1500000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 4 }\n"
    )
    rng = np.random.default_rng(7)
    cases = [([str(u) for u in rng.integers(1, 944, n)], [str(m) for m in rng.integers(1, 1683, n)]) for n in (1, 4, 9)]
    with grpc.insecure_channel(local_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        expected = [stub.Predict(_rate_request(u, m), timeout=30) for u, m in cases]

    with start_local_server(base, enable_batching=True, batching_parameters_file=params) as server:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            recommend = predict_pb2.PredictRequest()
            recommend.model_spec.name = c.MODEL_NAME
            recommend.model_spec.signature_name = c.RECOMMEND_SIGNATURE
            recommend.inputs[c.USER_ID].CopyFrom(tf.make_tensor_proto(["1"]))
            recommend.inputs[c.K].CopyFrom(tf.make_tensor_proto(3, dtype=tf.int32))  # the scalar-k API
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(recommend, timeout=30)
            # TF Serving's batching session refuses a rank-0 input before the graph sees it.
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and RANK0_MESSAGE in err.value.details()

            with ThreadPoolExecutor(len(cases)) as pool:
                futures = [pool.submit(stub.Predict, _rate_request(u, m), timeout=60) for u, m in cases]
                # The batch waits 1.5 s to fill: SIGTERM once all three are in the server.
                _wait_for(lambda: _predicts_in_flight(server.metrics_url) == len(cases), what="3 Predicts in flight")
                server.process.terminate()  # SIGTERM
                answers = [f.result() for f in futures]
            assert server.process.wait(60) == 0

        for want, have in zip(expected, answers):
            for alias in want.outputs:
                np.testing.assert_allclose(
                    tf.make_ndarray(have.outputs[alias]), tf.make_ndarray(want.outputs[alias]), rtol=1e-6, atol=1e-6
                )
        log = server.log_text()
        assert "Received SIGTERM" in log and "Server stopped" in log


def test_model_config_file_sources(tmp_path, monkeypatch):
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "movielens" base_path: "/models/movielens" model_platform: "tensorflow"\n'
        "  model_version_policy { specific { versions: 1 versions: 2 } }\n"
        '  version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } } }\n'
    )
    monkeypatch.chdir(tmp_path)
    (source,) = model_sources(ServerOptions(model_config_file=str(config)))
    assert source.policy == VersionPolicy("specific", versions=frozenset({1, 2}))
    assert dict(source.labels) == {"stable": 1, "canary": 2}
    # The container path does not exist here: models/ in the working directory (where export writes) stands in for it.
    assert source.base_path == tmp_path / c.MODEL_BASE_PATH

    (overridden,) = model_sources(ServerOptions(model_config_file=str(config), model_base_path=str(tmp_path)))
    assert overridden.base_path == tmp_path.resolve()
    assert resolve_base_path("models/x") == tmp_path.resolve() / "models" / "x"


@pytest.fixture()
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _no_model_options(tmp_path: Path, **ports) -> ServerOptions:
    # No version to load: the failure under test is the port, and it comes fast.
    return ServerOptions(**{"model_base_path": str(tmp_path / "empty"), "file_system_poll_wait_seconds": 0,
                             "rest_api_port": 0, "monitoring_port": 0, **ports})


def test_busy_grpc_port_is_a_startup_error(tmp_path, taken_port):
    server = LocalModelServer(_no_model_options(tmp_path, port=taken_port))
    with pytest.raises(StartupError, match=f"cannot listen for gRPC on 127.0.0.1:{taken_port}"):
        server.start()


def test_busy_rest_port_stops_the_grpc_server_that_had_started(tmp_path, taken_port):
    grpc_port = pick_unused_port()
    server = LocalModelServer(_no_model_options(tmp_path, port=grpc_port, rest_api_port=taken_port))
    with pytest.raises(StartupError, match=f"cannot listen for REST on 127.0.0.1:{taken_port}: Address already in use"):
        server.start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", grpc_port))  # the gRPC port was given back


def test_busy_port_exits_nonzero_with_one_line_and_no_traceback(tmp_path, taken_port):
    completed = subprocess.run(
        [sys.executable, "-m", "serving", "--model_base_path", str(tmp_path / "empty"), "--port", str(pick_unused_port()),
         "--rest_api_port", str(taken_port), "--monitoring_port", "0", "--file_system_poll_wait_seconds", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line == f"serving: cannot listen for REST on 127.0.0.1:{taken_port}: Address already in use"


def _config_text(models: dict[str, Path]) -> str:
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}\n' for name, path in models.items()
    )
    return f"model_config_list {{\n{entries}}}\n"


def test_config_reload_serves_what_the_file_says_now_and_survives_a_bad_file(tmp_path, caplog):
    two, three = tmp_path / "two", tmp_path / "three"
    export_tf1_half_plus_two(two / "1")
    export_tf1_half_plus_two(three / "2")
    config_file = tmp_path / "models.config"
    config_file.write_text(_config_text({"half_plus_two": two}))
    server = LocalModelServer(ServerOptions(model_config_file=str(config_file), file_system_poll_wait_seconds=0))
    server.core.start()
    try:
        assert server.reload_config_if_changed() is False  # unchanged: nothing to do
        old = server.core.managers["half_plus_two"]
        config_file.write_text(_config_text({"half_plus_three": three}))
        assert server.reload_config_if_changed() is True
        assert list(server.core.managers) == ["half_plus_three"]
        assert server.core.managers["half_plus_three"].available_versions() == [2]
        assert old.available_versions() == []  # unloaded, and never polled in again
        old.poll()
        assert old.available_versions() == []

        config_file.write_text("improperly formatted file")
        assert server.reload_config_if_changed() is False
        assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in caplog.text
        assert list(server.core.managers) == ["half_plus_three"]
    finally:
        server.core.stop(10)


def test_grpc_on_a_unix_socket_only(tmp_path):
    export_tf1_half_plus_two(tmp_path / "m" / "1")
    socket_path = tmp_path / "serving.sock"
    server = LocalModelServer(ServerOptions(
        model_name="m", model_base_path=str(tmp_path / "m"), port=0, rest_api_port=0,
        grpc_socket_path=str(socket_path), file_system_poll_wait_seconds=0,
        grpc_channel_arguments="grpc.max_connection_age_ms=60000",
    ))
    server.start()
    try:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0]))  # [1] on a [-1,1] signature, as TF Serving's tests
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert list(reply.outputs["y"].float_val) == [3.0]
    finally:
        server.stop()


def test_handle_reload_config_request_swaps_the_models(tmp_path):
    export_tf1_half_plus_two(tmp_path / "two" / "1")
    export_tf1_half_plus_two(tmp_path / "three" / "1")
    server = LocalModelServer(ServerOptions(
        model_name="half_plus_two", model_base_path=str(tmp_path / "two"), port=pick_unused_port(), rest_api_port=0,
        file_system_poll_wait_seconds=0,
    ))
    server.start()
    try:
        request = model_management_pb2.ReloadConfigRequest()
        entry = request.config.model_config_list.config.add(
            name="half_plus_three", base_path=str(tmp_path / "three"), model_platform="tensorflow"
        )
        with grpc.insecure_channel(f"127.0.0.1:{server.options.port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            assert stub.HandleReloadConfigRequest(request, timeout=30).status.error_code == 0
            assert list(server.core.managers) == ["half_plus_three"]
            entry.model_platform = "tflite"
            with pytest.raises(grpc.RpcError) as err:
                stub.HandleReloadConfigRequest(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model_platform" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=30)
            assert "Only ModelConfigList is currently supported" in err.value.details()
            assert list(server.core.managers) == ["half_plus_three"]
    finally:
        server.stop()
