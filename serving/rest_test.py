"""REST API: TF Serving's routes, JSON formats, float printing and error statuses, over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2

from common import contract as c
from serving.metrics import ServingMetrics
from serving.rest import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_REQUEST_LINE_BYTES,
    RestLimits,
    RestServer,
    _decimal,
    outputs_to_json,
)
from serving.signature_runner import TensorSpecInfo


def _call(server, path: str, body: dict | str | None = None) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    request = urllib.request.Request(server.rest_url + path, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


MODEL = f"/v1/models/{c.MODEL_NAME}"


def test_row_format_predict(local_server):
    status, body = _call(
        local_server, f"{MODEL}:predict",
        {"instances": [{c.USER_ID: "1", c.MOVIE_ID: "2"}, {c.USER_ID: "3", c.MOVIE_ID: "4"}]},
    )
    assert status == 200
    rows = body["predictions"]
    assert len(rows) == 2
    assert set(rows[0]) == {c.PREDICTED_RATING, c.USER_EMBEDDING, c.MOVIE_EMBEDDING}
    assert isinstance(rows[0][c.PREDICTED_RATING], float)
    assert len(rows[1][c.MOVIE_EMBEDDING]) == c.EMBEDDING_DIM


def test_row_format_recommend_with_k_per_instance(local_server):
    body = {"signature_name": c.RECOMMEND_SIGNATURE, "instances": [{c.USER_ID: "1", c.K: 2}, {c.USER_ID: "2", c.K: 2}]}
    status, answer = _call(local_server, f"{MODEL}:predict", body)
    assert status == 200, answer
    assert [len(row[c.MOVIE_IDS]) for row in answer["predictions"]] == [2, 2]


def test_columnar_predict_for_recommend_and_by_version(local_server):
    body = {"signature_name": c.RECOMMEND_SIGNATURE, "inputs": {c.USER_ID: ["1", "2"], c.K: [3, 3]}}
    status, answer = _call(local_server, f"{MODEL}/versions/1:predict", body)
    assert status == 200
    outputs = answer["outputs"]
    assert np.array(outputs[c.MOVIE_IDS]).shape == (2, 3)
    assert all(isinstance(t, str) for t in outputs[c.MOVIE_TITLES][0])
    assert outputs[c.SCORES][0] == sorted(outputs[c.SCORES][0], reverse=True)


def test_status_and_metadata(local_server):
    status, body = _call(local_server, MODEL)
    assert status == 200
    assert body == {
        "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    }
    status, body = _call(local_server, f"{MODEL}/versions/1/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": c.MODEL_NAME, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    predict = signatures[c.PREDICT_SIGNATURE]
    assert predict["method_name"] == c.PREDICT_METHOD
    assert predict["inputs"][c.MOVIE_ID]["dtype"] == "DT_STRING"
    assert set(signatures[c.RECOMMEND_SIGNATURE]["inputs"]) == {c.USER_ID, c.K}


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        (f"{MODEL}/versions/9:predict", {"instances": [{c.USER_ID: "1", c.MOVIE_ID: "2"}]}, 404,
         "Servable not found for request: Specific(movielens, 9)"),
        ("/v1/models/nope:predict", {"instances": ["1"]}, 404, "Servable not found for request: Latest(nope)"),
        (f"{MODEL}/labels/stable:predict", {"instances": ["1"]}, 400, "Unrecognized servable version label: stable"),
        (f"{MODEL}:predict", {"signature_name": "nope", "instances": ["1"]}, 400,
         'Serving signature name: "nope" not found in signature def'),
        (f"{MODEL}:predict", {"instances": [{c.USER_ID: "1"}]}, 400, "keys must be equal to: movie_id,user_id"),
        (f"{MODEL}:predict", {"inputs": {c.USER_ID: ["1"]}}, 400, "Missing named input: movie_id in 'inputs' object."),
        (f"{MODEL}:predict", {"inputs": {c.USER_ID: [1], c.MOVIE_ID: ["2"]}}, 400,
         "JSON Value: 1 Type: Number is not of expected type: string"),
        (f"{MODEL}:predict", {"inputs": {c.USER_ID: ["1", "2"], c.MOVIE_ID: ["2"]}}, 400, "assertion failed"),
        # No shape check before the graph (TF Serving has none): the graph's own error.
        # A scalar k (the API before k had a batch dimension) for two users: the graph says what changed.
        (f"{MODEL}:predict", {"signature_name": c.RECOMMEND_SIGNATURE, "inputs": {c.USER_ID: ["1", "2"], c.K: 2}}, 400,
         c.K_PER_USER_MESSAGE),
        (f"{MODEL}:predict", {"signature_name": c.RECOMMEND_SIGNATURE, "inputs": {c.USER_ID: ["1", "2"], c.K: [2]}},
         400, c.K_PER_USER_MESSAGE),
        (f"{MODEL}:predict", {"inputs": {c.USER_ID: ["1"], c.MOVIE_ID: ["2"]}, "instances": []}, 400,
         "expecting only one of 'inputs' or 'instances'"),
        (f"{MODEL}:predict", "{not json", 400, "JSON Parse error"),
        (f"{MODEL}:classify", {"examples": []}, 400, "'examples' value is an empty array"),
        (f"{MODEL}:regress", {"examples": [{"x": 1.0}]}, 400, "Expected one input Tensor."),
        ("/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        (f"{MODEL}/versions/5", None, 404, "Could not find version 5 of model movielens"),
        ("/v1/models", None, 400, "Missing model name in request."),
    ],
)
def test_errors_have_tf_serving_status_and_message(local_server, path, body, status, fragment):
    got_status, answer = _call(local_server, path, body)
    assert (got_status, list(answer)) == (status, ["error"])
    assert fragment in answer["error"]


def test_floats_print_like_tf_serving():
    assert _decimal(float(np.float32(0.2)), True) == "0.2"
    assert _decimal(3.0, True) == "3.0"
    assert _decimal(float(np.float32(0.669074059)), True) == "0.669074059"
    assert _decimal(float("nan"), True) == "NaN"
    specs = {"x_bytes": TensorSpecInfo("x_bytes", types_pb2.DT_STRING, (None,)),
             "y": TensorSpecInfo("y", types_pb2.DT_FLOAT, (None,))}
    text = outputs_to_json({"x_bytes": np.array([b"\x00\x01"], dtype=object), "y": np.array([1.5], np.float32)},
                           specs, row_format=True)
    assert json.loads(text) == {"predictions": [{"x_bytes": {"b64": "AAE="}, "y": 1.5}]}


def _raw(server, request: bytes) -> tuple[int, dict, str]:
    """Sends bytes as they are (no client library fixing the framing); the response and whether it closes."""
    address = urllib.parse.urlsplit(server.rest_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())
        return response.status, body, response.getheader("Connection", "")


@pytest.mark.parametrize(
    ("framing", "status", "fragment"),
    [
        (b"Content-Length: -1\r\n\r\n", 400, "invalid Content-Length '-1'"),
        (b"Content-Length: ten\r\n\r\n", 400, "invalid Content-Length 'ten'"),
        (b"Content-Length: 1_0\r\n\r\n", 400, "invalid Content-Length '1_0'"),
        (b"Transfer-Encoding: chunked\r\n\r\n-5\r\n", 400, "invalid chunk size '-5'"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid chunk size 'zz'"),
        (f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), 413, "larger than"),
    ],
)
def test_unframeable_bodies_are_refused_and_the_connection_closed(local_server, framing, status, fragment):
    request = f"POST {MODEL}:predict HTTP/1.1\r\nHost: x\r\n".encode() + framing
    got_status, body, connection = _raw(local_server, request)
    assert (got_status, list(body), connection) == (status, ["error"], "close")
    assert fragment in body["error"]


def test_deeply_nested_json_is_a_bad_request_not_a_server_error(local_server):
    for depth in (100, 100_000):  # numpy's dimension limit; Python's recursion limit
        nested = "[" * depth + '"1"' + "]" * depth
        status, answer = _call(local_server, f"{MODEL}:predict", f'{{"inputs": {{"user_id": {nested}, "movie_id": ["2"]}}}}')
        assert (status, list(answer)) == (400, ["error"]), depth
    status, answer = _call(local_server, f"{MODEL}:predict", {"inputs": {c.USER_ID: ["1"], c.MOVIE_ID: ["2"]}})
    assert status == 200, "the server still answers after both"


class _OkApi:
    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        return 200, "{}"


def test_keep_alive_connection_gets_503_and_close_once_shutdown_begins():
    server = RestServer(("127.0.0.1", 0), _OkApi(), ServingMetrics(), None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        connection.request("GET", "/v1/models/m")
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and not first.will_close

        server.stop_accepting()
        connection.request("GET", "/v1/models/m")  # the same keep-alive connection
        second = connection.getresponse()
        assert second.status == 503 and second.will_close
        assert json.loads(second.read()) == {"error": "Server is shutting down"}
        assert server.drain(0)
    finally:
        connection.close()
        server.server_close()


class _SlowApi:
    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        self.release.wait(30)
        return 200, "{}"


def test_a_call_longer_than_the_rest_timeout_is_answered_deadline_exceeded():
    api = _SlowApi()
    server = RestServer(("127.0.0.1", 0), api, ServingMetrics(), None, timeout=0.2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        connection.request("GET", "/v1/models/m")
        response = connection.getresponse()
        assert response.status == 504  # DEADLINE_EXCEEDED, http_server.cc's mapping
        assert "--rest_api_timeout_in_ms (200 ms)" in json.loads(response.read())["error"]
        api.release.set()
        connection.request("GET", "/v1/models/m")  # the connection still serves the next call
        assert connection.getresponse().status == 200
    finally:
        api.release.set()
        connection.close()
        server.stop_accepting()
        server.server_close()


def test_classify_and_regress_over_rest(tmp_path):
    from serving.model_manager import ModelManager, ModelSource, ServerCore
    from serving.rest import RestApi
    from serving.servable import load_version
    from testing.tf1_models import export_tf1_half_plus_two

    export_tf1_half_plus_two(tmp_path / "1")
    manager = ModelManager(ModelSource("m", tmp_path), lambda n, v, p: load_version(n, v, p, warmup=False))
    manager.poll()
    api = RestApi(ServerCore({"m": manager}, 0), ServingMetrics())
    try:
        classify = {"signature_name": "classify_with_classes", "examples": [{"x": 2.0}, {"x": 4.0}]}
        assert api.handle("POST", "/v1/models/m:classify", json.dumps(classify).encode()) == (
            200, '{"results":[[["a",3.0],["b",-3.0]],[["a",4.0],["b",-4.0]]]}'
        )
        regress = {"signature_name": "regress_x_to_y", "context": {"x": 10.0}, "examples": [{}, {"x": 2.0}]}
        assert api.handle("POST", "/v1/models/m/versions/1:regress", json.dumps(regress).encode()) == (
            200, '{"results":[7.0,3.0]}'
        )
        # serving_default is a Predict signature (input "x"): regressor.cc's check refuses it.
        status, text = api.handle("POST", "/v1/models/m:regress", b'{"examples": [{"x": 1.0}]}')
        assert status == 400 and json.loads(text)["error"].startswith("No regression inputs found in SignatureDef")
    finally:
        manager.unload_all(time.monotonic() + 30)


def _serving(limits: RestLimits, api=None) -> RestServer:
    server = RestServer(("127.0.0.1", 0), api or _OkApi(), ServingMetrics(), None, limits=limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _raw_status(server: RestServer, request: bytes) -> tuple[int, str, str]:
    with socket.create_connection(server.server_address, timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read()).get("error", ""), response.getheader("Connection", "")


def test_long_request_lines_large_headers_and_bodies_are_refused_before_any_work():
    server = _serving(RestLimits(max_body_bytes=1000))
    try:
        line = f"GET /v1/models/{'m' * MAX_REQUEST_LINE_BYTES} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        status, error, connection = _raw_status(server, line)
        assert (status, connection) == (414, "close") and "longer than the 8192 bytes" in error
        headers = "".join(f"X-{i}: {'v' * 1000}\r\n" for i in range(MAX_HEADER_BYTES // 1000 + 1))
        status, error, connection = _raw_status(server, f"GET /v1/models/m HTTP/1.1\r\n{headers}\r\n".encode())
        assert (status, connection) == (431, "close") and f"at most {MAX_HEADER_BYTES} bytes" in error
        body = b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"
        status, error, connection = _raw_status(server, body)
        assert (status, connection) == (413, "close") and "--rest_api_max_body_bytes" in error
        some_headers = "".join(f"X-{i}: {'v' * 1000}\r\n" for i in range(MAX_HEADER_BYTES // 1000 - 2))
        within = f"GET /v1/models/{'m' * 1000} HTTP/1.1\r\nHost: x\r\n{some_headers}\r\n".encode()
        assert _raw_status(server, within)[:1] == (200,)
    finally:
        server.stop_accepting()
        server.server_close()


def _wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_requests_above_the_concurrency_cap_get_429_at_once_and_connections_above_theirs_503():
    api = _SlowApi()
    server = _serving(RestLimits(max_concurrent_requests=2, max_connections=3), api)
    held = [http.client.HTTPConnection(*server.server_address, timeout=30) for _ in range(2)]
    try:
        for connection in held:
            connection.request("GET", "/v1/models/m")  # both wait inside the API
        _wait_for(lambda: server._busy == 2)  # noqa: SLF001
        start = time.monotonic()
        status, error, connection = _raw_status(server, b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, connection) == (429, "close") and "--rest_api_max_concurrent_requests" in error
        assert time.monotonic() - start < 5
        _wait_for(lambda: server._connections == 2)  # noqa: SLF001  (the refused one has ended)
        with socket.create_connection(server.server_address) as idle:  # the third connection: admitted, idle
            _wait_for(lambda: server._connections == 3)  # noqa: SLF001
            with socket.create_connection(server.server_address, timeout=30) as fourth:
                response = http.client.HTTPResponse(fourth)  # answered on accept, before any request
                response.begin()
                assert (response.status, response.getheader("Connection")) == (503, "close")
                assert "--rest_api_max_connections" in json.loads(response.read())["error"]
        api.release.set()
        assert [c.getresponse().status for c in held] == [200, 200]
    finally:
        api.release.set()
        for connection in held:
            connection.close()
        server.stop_accepting()
        server.server_close()


class _LateApi:
    """Takes longer than the REST timeout before it would run a graph; records what the caller check says."""

    def __init__(self) -> None:
        self.gone = threading.Event()
        self.checked = threading.Event()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        from serving import cancellation

        time.sleep(0.5)
        if cancellation.is_gone(cancellation.current()):
            self.gone.set()
        self.checked.set()
        return 200, "{}"


def test_a_rest_call_past_its_timeout_is_seen_as_gone_before_its_graph_would_run():
    api = _LateApi()
    server = RestServer(("127.0.0.1", 0), api, ServingMetrics(), None, timeout=0.2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        connection.request("GET", "/v1/models/m")
        assert connection.getresponse().status == 504
        assert api.checked.wait(10) and api.gone.is_set()
    finally:
        connection.close()
        server.stop_accepting()
        server.server_close()
