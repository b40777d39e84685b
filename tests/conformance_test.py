"""Conformance: the local server and real TF Serving answer the same API the same way.

Every check talks to a target only through the official `tensorflow_serving.apis`
gRPC stubs (no project client code), and runs against three targets:

- `local`: `python -m serving` (the root conftest's `local_server` fixture);
- `tf-serving`: a real `tensorflow/serving` container, started with the Docker
  SDK on the same exported model and the same serving/*.config files that
  docker-compose mounts. Skipped, with the reason, when no Docker engine is
  reachable;
- `tf-serving-batching`: the same container with `--enable_batching`
  (serving/batching.cpu.config) and warmup on, as compose runs it: the model
  must load through the batching session, and every case passes, including
  concurrent requests of every signature merged across sizes, k and widths.

Passing on both is what lets the load test, the client and the docs promise
that swapping one server for the other changes nothing a client can observe,
including which gRPC status code each kind of bad request gets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from common import contract

ROOT = Path(__file__).resolve().parents[1]
SERVING_DIR = ROOT / "serving"
TF_SERVING_IMAGE = "tensorflow/serving"
TF_SERVING_TAG = "2.21.0"
# The container mounts mirror docker-compose.yml, so models.config's base_path
# (/models/movielens) resolves inside it exactly as in compose.
CONTAINER_MODEL_BASE_PATH = "/" + contract.MODEL_BASE_PATH
CONTAINER_CONFIG_DIR = "/config"
STARTUP_TIMEOUT_S = 180.0
RPC_TIMEOUT_S = 30.0

USERS = ["1", "2", "3"]
MOVIES = ["1", "50", "181"]


@dataclass(frozen=True)
class Target:
    name: str
    grpc_target: str
    model_base_path: Path


# --- tensors, with nothing but the protos -----------------------------------------------------


def _shape(*dims: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


# numpy dtype and repeated field of each DataType common/contract.py may declare.
_FIELDS = {
    "DT_STRING": "string_val", "DT_INT32": "int_val", "DT_INT64": "int64_val", "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val",
}


def tensor(dtype: str, values) -> tensor_pb2.TensorProto:
    """``values`` (any rank) as a ``dtype`` tensor (a DataType name), in the repeated field TF Serving fills."""
    array = np.asarray(values, dtype=object if dtype == "DT_STRING" else contract.NUMPY_DTYPES[dtype])
    flat = [v.encode() for v in array.reshape(-1)] if dtype == "DT_STRING" else array.reshape(-1).tolist()
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DataType.Value(dtype), tensor_shape=_shape(*array.shape), **{_FIELDS[dtype]: flat}
    )


def declared(signature: str, name: str, values) -> tensor_pb2.TensorProto:
    """Input ``name`` of ``signature`` in the dtype common/contract.py declares for it."""
    return tensor(contract.signature(signature).input(name).dtype, values)


def wrong_dtype(signature: str, name: str, values) -> tensor_pb2.TensorProto:
    """Input ``name`` of ``signature`` in an integer dtype it does not declare."""
    dtype = contract.signature(signature).input(name).dtype
    return tensor("DT_INT32" if dtype == "DT_INT64" else "DT_INT64", values)


def strings(values: list[str]) -> tensor_pb2.TensorProto:
    return tensor("DT_STRING", values)


def ks(values) -> tensor_pb2.TensorProto:
    """recommend's k (one per user, or a scalar for the refused old API), as declared."""
    return declared(contract.RECOMMEND_SIGNATURE, contract.K, values)


def to_array(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    shape = [d.size for d in tensor.tensor_shape.dim]
    size = int(np.prod(shape)) if shape else 1
    dtype = types_pb2.DataType.Name(tensor.dtype)
    if dtype == "DT_STRING":
        values = np.array([v.decode() for v in tensor.string_val], dtype=object)
    elif dtype in _FIELDS:
        numpy_dtype = np.dtype(contract.NUMPY_DTYPES[dtype]).newbyteorder("<")
        values = (
            np.frombuffer(tensor.tensor_content, dtype=numpy_dtype) if tensor.tensor_content
            else np.array(getattr(tensor, _FIELDS[dtype]), numpy_dtype)
        )
    else:
        raise AssertionError(f"unexpected output dtype {dtype}")
    # The proto encoding may state a repeated value once for the whole tensor.
    if len(values) == 1 and size > 1:
        values = np.repeat(values, size)
    assert len(values) == size, f"tensor has {len(values)} values for shape {shape}"
    return values.reshape(shape)


# --- targets -------------------------------------------------------------------------------------


def _model_status(channel: grpc.Channel, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = contract.MODEL_NAME
    if version is not None:
        request.model_spec.version.value = version
    return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=RPC_TIMEOUT_S)


def _wait_until_available(grpc_target: str, container) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "no answer yet"
    with grpc.insecure_channel(grpc_target) as channel:
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                raise AssertionError(f"TF Serving exited during startup:\n{container.logs().decode(errors='replace')}")
            try:
                status = _model_status(channel)
                states = [get_model_status_pb2.ModelVersionStatus.State.Name(v.state) for v in status.model_version_status]
                if "AVAILABLE" in states:
                    return
                last_error = f"states {states}"
            except grpc.RpcError as e:
                last_error = f"{e.code().name}: {e.details()}"
            time.sleep(1.0)
    raise AssertionError(
        f"model not AVAILABLE after {STARTUP_TIMEOUT_S:.0f}s ({last_error}):\n{container.logs().decode(errors='replace')}"
    )


@pytest.fixture(scope="session")
def tf_serving_container(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A real TF Serving container on the exported model; skips when no Docker engine answers."""
    yield from _tf_serving(request, "tf-serving", [])


@pytest.fixture(scope="session")
def tf_serving_batching_container(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The same with batching on (the CPU batching file) and warmup on, as compose runs it: the model must
    load (TF Serving replays the warmup file through the batching session) and every case must pass."""
    yield from _tf_serving(request, "tf-serving-batching", [
        "--enable_batching=true",
        f"--batching_parameters_file={CONTAINER_CONFIG_DIR}/batching.cpu.config",
        "--enable_model_warmup=true",
    ])


def _tf_serving(request: pytest.FixtureRequest, name: str, extra_args: list[str]) -> Iterator[Target]:
    import docker
    import requests

    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        pytest.skip(f"no Docker engine reachable ({type(e).__name__}: {e}); real TF Serving cases need one")
    # Only now: training + exporting the model is the slow part, pointless without Docker.
    exported_model = Path(request.getfixturevalue("exported_model"))

    image = f"{TF_SERVING_IMAGE}:{TF_SERVING_TAG}"
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        client.images.pull(TF_SERVING_IMAGE, tag=TF_SERVING_TAG)

    container = client.containers.run(
        image,
        # The image's entrypoint script adds --model_name/--model_base_path,
        # which --model_config_file replaces; call the server directly as compose does.
        entrypoint=["tensorflow_model_server"],
        command=[
            f"--port={contract.GRPC_PORT}",
            f"--rest_api_port={contract.REST_PORT}",
            f"--model_config_file={CONTAINER_CONFIG_DIR}/models.config",
            f"--monitoring_config_file={CONTAINER_CONFIG_DIR}/monitoring.config",
            *extra_args,
        ],
        volumes={
            str(exported_model.resolve()): {"bind": CONTAINER_MODEL_BASE_PATH, "mode": "ro"},
            str(SERVING_DIR): {"bind": CONTAINER_CONFIG_DIR, "mode": "ro"},
        },
        # Host port chosen by Docker, bound to loopback only.
        ports={f"{contract.GRPC_PORT}/tcp": ("127.0.0.1", None)},
        detach=True,
        labels={"movielens-recommender": "conformance-test"},
    )
    try:
        container.reload()
        host_port = container.ports[f"{contract.GRPC_PORT}/tcp"][0]["HostPort"]
        grpc_target = f"127.0.0.1:{host_port}"
        _wait_until_available(grpc_target, container)
        yield Target(name, grpc_target, exported_model)
    finally:
        container.stop(timeout=5)
        container.remove(force=True)


@pytest.fixture(scope="session", params=["local", "tf-serving", "tf-serving-batching"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "local":
        server = request.getfixturevalue("local_server")
        return Target("local", server.grpc_target, Path(server.model_base_path))
    if request.param == "tf-serving-batching":
        return request.getfixturevalue("tf_serving_batching_container")
    return request.getfixturevalue("tf_serving_container")


@pytest.fixture(scope="session")
def channel(target: Target) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(target.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="session")
def prediction(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="session")
def model_card(target: Target) -> dict:
    versions = sorted((p for p in target.model_base_path.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return json.loads((versions[-1] / contract.MODEL_CARD_FILE).read_text(encoding="utf-8"))


def predict_request(
    signature: str, inputs: dict[str, tensor_pb2.TensorProto], model: str = contract.MODEL_NAME, version: int | None = None
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, tensor in inputs.items():
        request.inputs[key].CopyFrom(tensor)
    return request


def predict(stub, request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
    response = stub.Predict(request, timeout=RPC_TIMEOUT_S)
    assert response.model_spec.name == contract.MODEL_NAME
    return {key: to_array(tensor) for key, tensor in response.outputs.items()}


def expect_status(call: Callable[[], object], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as excinfo:
        call()
    assert excinfo.value.code() == code, f"expected {code.name}, got {excinfo.value.code().name}: {excinfo.value.details()}"
    assert excinfo.value.details(), "error without a message"
    return excinfo.value.details()


# --- model service -------------------------------------------------------------------------------------


def test_model_status_reports_the_served_version_available(channel: grpc.Channel, model_card: dict) -> None:
    status = _model_status(channel)
    (version_status,) = status.model_version_status  # latest {num_versions: 1}
    assert version_status.version == model_card["version"]
    assert version_status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version_status.status.error_code == 0


def test_model_status_of_unknown_version_is_not_found(channel: grpc.Channel) -> None:
    expect_status(lambda: _model_status(channel, version=987654), grpc.StatusCode.NOT_FOUND)


# --- metadata ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def signatures(prediction) -> dict:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = contract.MODEL_NAME
    response = prediction.GetModelMetadata(request, timeout=RPC_TIMEOUT_S)
    assert response.model_spec.name == contract.MODEL_NAME
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    return dict(signature_map.signature_def)


def _dims(info) -> list[int] | None:
    return None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]


def test_metadata_describes_the_predict_signature(signatures: dict) -> None:
    """As common/contract.py declares it, with the default model's EMBEDDING_DIM-wide embeddings."""
    predict_sig, declared = signatures[contract.PREDICT_SIGNATURE], contract.signature(contract.PREDICT_SIGNATURE)
    assert predict_sig.method_name == contract.PREDICT_METHOD
    embeddings = {contract.USER_EMBEDDING: [-1, contract.EMBEDDING_DIM], contract.MOVIE_EMBEDDING: [-1, contract.EMBEDDING_DIM]}
    for side, tensors, fixed in ((predict_sig.inputs, declared.inputs, {}), (predict_sig.outputs, declared.outputs, embeddings)):
        assert {k: (v.dtype, _dims(v)) for k, v in side.items()} == {
            t.name: (types_pb2.DataType.Value(t.dtype), fixed.get(t.name, list(t.shape))) for t in tensors
        }


@pytest.mark.parametrize("name", sorted(contract.SIGNATURES))
def test_metadata_matches_the_contract_declaration(signatures: dict, name: str) -> None:
    """Every signature as common/contract.py declares it; every input has a batch dimension."""
    if name not in signatures and name == contract.RECOMMEND_FROM_RATINGS_SIGNATURE:
        pytest.skip("a reference-preset model has no recommend_from_ratings")
    served, declared = signatures[name], contract.SIGNATURES[name]
    assert served.method_name == contract.PREDICT_METHOD
    assert {k: (v.dtype, _dims(v)) for k, v in served.inputs.items()} == {
        t.name: (types_pb2.DataType.Value(t.dtype), list(t.shape)) for t in declared.inputs
    }
    assert all(t.shape and t.shape[0] == -1 for t in declared.inputs)
    assert set(served.outputs) == {t.name for t in declared.outputs}
    for t in declared.outputs:
        assert served.outputs[t.name].dtype == types_pb2.DataType.Value(t.dtype), t.name
        assert contract.shape_matches(t.shape, _dims(served.outputs[t.name])), t.name


def test_metadata_of_unknown_model_is_not_found(prediction) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "no-such-model"
    expect_status(lambda: prediction.GetModelMetadata(request, timeout=RPC_TIMEOUT_S), grpc.StatusCode.NOT_FOUND)


# --- predict: serving_default ---------------------------------------------------------------------------


def test_predict_returns_one_rating_and_two_embeddings_per_pair(prediction) -> None:
    out = predict(prediction, predict_request(contract.PREDICT_SIGNATURE, {contract.USER_ID: strings(USERS), contract.MOVIE_ID: strings(MOVIES)}))
    assert out[contract.PREDICTED_RATING].shape == (len(USERS),)
    assert out[contract.USER_EMBEDDING].shape == (len(USERS), contract.EMBEDDING_DIM)
    assert out[contract.MOVIE_EMBEDDING].shape == (len(USERS), contract.EMBEDDING_DIM)
    assert np.isfinite(out[contract.PREDICTED_RATING]).all()


def test_predict_with_explicit_version_matches_latest(prediction, model_card: dict) -> None:
    inputs = {contract.USER_ID: strings(USERS), contract.MOVIE_ID: strings(MOVIES)}
    latest = predict(prediction, predict_request(contract.PREDICT_SIGNATURE, inputs))
    pinned = predict(prediction, predict_request(contract.PREDICT_SIGNATURE, inputs, version=model_card["version"]))
    np.testing.assert_allclose(pinned[contract.PREDICTED_RATING], latest[contract.PREDICTED_RATING], rtol=1e-6)


def test_unknown_ids_use_the_oov_bucket_not_an_error(prediction) -> None:
    out = predict(
        prediction,
        predict_request(contract.PREDICT_SIGNATURE, {contract.USER_ID: strings(["999999"]), contract.MOVIE_ID: strings(["999999"])}),
    )
    assert out[contract.PREDICTED_RATING].shape == (1,)


def test_empty_batch_gives_empty_outputs(prediction) -> None:
    out = predict(prediction, predict_request(contract.PREDICT_SIGNATURE, {contract.USER_ID: strings([]), contract.MOVIE_ID: strings([])}))
    assert out[contract.PREDICTED_RATING].shape == (0,)
    assert out[contract.USER_EMBEDDING].shape == (0, contract.EMBEDDING_DIM)


# --- predict: recommend ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 10**6])
def test_recommend_returns_min_k_max_k_best_first(prediction, model_card: dict, k: int) -> None:
    users = ["1", "2"]
    out = predict(prediction, predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(users), contract.K: ks([k, k])}))
    expected_k = min(k, model_card["max_k"])
    for key in (contract.MOVIE_IDS, contract.MOVIE_TITLES, contract.SCORES):
        assert out[key].shape == (len(users), expected_k), key
    scores = out[contract.SCORES]
    assert (np.diff(scores, axis=1) <= 0).all(), "scores not best-first"
    for row in out[contract.MOVIE_IDS]:
        assert len(set(row)) == expected_k, "duplicate movies in one row"


def test_recommend_k_per_user_pads_each_row_past_its_own_k(prediction) -> None:
    """Outputs are [users, max(k)]; a row's entries past its k are id "", title "", score -inf, and its
    first k entries are what the user gets alone."""
    both = predict(prediction, predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(["1", "2"]), contract.K: ks([3, 7])}))
    alone = predict(prediction, predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(["1"]), contract.K: ks([3])}))
    assert both[contract.SCORES].shape == (2, 7) and alone[contract.SCORES].shape == (1, 3)
    assert list(both[contract.MOVIE_IDS][0, 3:]) == [""] * 4 and list(both[contract.MOVIE_TITLES][0, 3:]) == [""] * 4
    assert np.all(np.isneginf(both[contract.SCORES][0, 3:])) and np.all(np.isfinite(both[contract.SCORES][1]))
    assert list(both[contract.MOVIE_IDS][0, :3]) == list(alone[contract.MOVIE_IDS][0])
    np.testing.assert_allclose(both[contract.SCORES][0, :3], alone[contract.SCORES][0], rtol=1e-5, atol=1e-5)


def test_concurrent_requests_of_every_signature_answer_as_sequential_ones(channel: grpc.Channel) -> None:
    """Different sizes, k per row and rated_movie_ids widths sent at once: with batching on they are merged
    (and padded: TF Serving's pad_variable_length_inputs), and must answer as the same requests sent one
    by one; recommend rows are compared up to their own k (a merged batch is as wide as its largest k)."""
    from concurrent.futures import ThreadPoolExecutor

    from tensorflow import make_ndarray

    from serving.batching_test import assert_same_answer, mixed_requests

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    requests = mixed_requests(np.random.default_rng(6), rounds=2)
    if not stub_has_from_ratings(stub):
        requests = [r for r in requests if r.model_spec.signature_name != contract.RECOMMEND_FROM_RATINGS_SIGNATURE]

    def call(request):
        return {a: make_ndarray(t) for a, t in stub.Predict(request, timeout=RPC_TIMEOUT_S).outputs.items()}

    sequential = [call(r) for r in requests]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(call, requests))
    for request, want, have in zip(requests, sequential, concurrent):
        assert_same_answer(request, want, have)


def stub_has_from_ratings(stub) -> bool:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = contract.MODEL_NAME
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(request, timeout=RPC_TIMEOUT_S).metadata["signature_def"].Unpack(signature_map)
    return contract.RECOMMEND_FROM_RATINGS_SIGNATURE in signature_map.signature_def


def test_model_card_signature_returns_the_card(prediction, model_card: dict) -> None:
    out = predict(prediction, predict_request(contract.MODEL_CARD_SIGNATURE, {contract.MODEL_CARD_REQUEST: declared(contract.MODEL_CARD_SIGNATURE, contract.MODEL_CARD_REQUEST, [0, 0])}))
    assert out[contract.MODEL_CARD].shape == (2,)  # one card per element of `request`
    card = json.loads(out[contract.MODEL_CARD][0])
    assert card["model_name"] == contract.MODEL_NAME
    assert card["version"] == model_card["version"]


# --- error status codes --------------------------------------------------------------------------------------


def _good_predict_inputs() -> dict[str, tensor_pb2.TensorProto]:
    return {contract.USER_ID: strings(USERS), contract.MOVIE_ID: strings(MOVIES)}


ERROR_CASES: dict[str, tuple[Callable[[], predict_pb2.PredictRequest], grpc.StatusCode]] = {
    "unknown-model": (
        lambda: predict_request(contract.PREDICT_SIGNATURE, _good_predict_inputs(), model="no-such-model"),
        grpc.StatusCode.NOT_FOUND,
    ),
    "unknown-version": (
        lambda: predict_request(contract.PREDICT_SIGNATURE, _good_predict_inputs(), version=987654),
        grpc.StatusCode.NOT_FOUND,
    ),
    "unknown-signature": (
        lambda: predict_request("no_such_signature", _good_predict_inputs()),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    "missing-input": (
        lambda: predict_request(contract.PREDICT_SIGNATURE, {contract.USER_ID: strings(USERS)}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "extra-input": (
        lambda: predict_request(contract.PREDICT_SIGNATURE, {**_good_predict_inputs(), "extra": strings(USERS)}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "wrong-dtype": (
        lambda: predict_request(contract.PREDICT_SIGNATURE, {contract.USER_ID: wrong_dtype(contract.PREDICT_SIGNATURE, contract.USER_ID, [1, 2, 3]), contract.MOVIE_ID: strings(MOVIES)}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "wrong-dtype-k": (
        lambda: predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(USERS), contract.K: wrong_dtype(contract.RECOMMEND_SIGNATURE, contract.K, [5] * len(USERS))}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "length-mismatch": (
        lambda: predict_request(contract.PREDICT_SIGNATURE, {contract.USER_ID: strings(USERS), contract.MOVIE_ID: strings(MOVIES[:2])}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "k-zero": (
        lambda: predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(USERS), contract.K: ks([0] * len(USERS))}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "k-scalar (the API before k had a batch dimension)": (
        lambda: predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(USERS), contract.K: ks(5)}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "k-one-per-user": (
        lambda: predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(USERS), contract.K: ks([5] * (len(USERS) + 1))}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "k-negative": (
        lambda: predict_request(contract.RECOMMEND_SIGNATURE, {contract.USER_ID: strings(USERS), contract.K: ks([5] * (len(USERS) - 1) + [-3])}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_request_gets_tf_servings_status_code(prediction, case: str) -> None:
    build, code = ERROR_CASES[case]
    expect_status(lambda: prediction.Predict(build(), timeout=RPC_TIMEOUT_S), code)
