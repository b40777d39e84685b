"""REST API: TF Serving's routes, JSON formats, float printing and error statuses, over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2

from common import contract as c
from serving.rest import _decimal, outputs_to_json
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


def test_columnar_predict_for_recommend_and_by_version(local_server):
    body = {"signature_name": c.RECOMMEND_SIGNATURE, "inputs": {c.USER_ID: ["1", "2"], c.K: 3}}
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
        (f"{MODEL}:predict", {"signature_name": c.RECOMMEND_SIGNATURE, "instances": [{c.USER_ID: "1", c.K: 2}]}, 400,
         'input "k" has shape [1] but the signature expects []'),
        (f"{MODEL}:predict", {"inputs": {c.USER_ID: ["1"], c.MOVIE_ID: ["2"]}, "instances": []}, 400,
         "expecting only one of 'inputs' or 'instances'"),
        (f"{MODEL}:predict", "{not json", 400, "JSON Parse error"),
        (f"{MODEL}:classify", {"examples": []}, 501, "not supported"),
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
