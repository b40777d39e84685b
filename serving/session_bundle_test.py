"""SavedModels (TF1 and TF2) run in a graph-mode session that feeds the graph as TF Serving does."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving.errors import ServingError
from serving.servable import load_version, read_meta_graph
from serving.session_bundle import SessionSignatureRunner
from testing.tf1_models import export_tf1_half_plus_two


@pytest.fixture(scope="module")
def tf1_version(tmp_path_factory):
    path = export_tf1_half_plus_two(tmp_path_factory.mktemp("half_plus_two") / "123")
    loaded = load_version("half_plus_two", 123, path, warmup=False)
    yield loaded
    loaded.release()


def _predict(version, x: np.ndarray) -> np.ndarray:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return tf.make_ndarray(version.predict(request).outputs["y"])


def test_a_tf1_export_is_served_through_a_session(tf1_version):
    assert not read_meta_graph(tf1_version.path).object_graph_def.nodes  # TF1: no object graph
    assert isinstance(tf1_version.runner("serving_default"), SessionSignatureRunner)
    np.testing.assert_allclose(_predict(tf1_version, np.array([[2.0], [4.0]], np.float32)), [[3.0], [4.0]])


def test_a_shape_the_signature_does_not_declare_goes_to_the_graph(tf1_version):
    # x [1] on a [-1,1] signature: TF Serving computes it (Python's Session.run would refuse it).
    np.testing.assert_allclose(_predict(tf1_version, np.array([2.0], np.float32)), [3.0])


def test_a_graph_error_keeps_its_code_and_the_ops_message(tf1_version):
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "regress_x_to_y"
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([b"not an Example"]))
    with pytest.raises(ServingError) as err:
        tf1_version.predict(request)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Could not parse example input" in err.value.message


def test_a_tf2_export_is_served_through_a_session_too(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x + 1.0}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.f})
    assert read_meta_graph(tmp_path / "1").object_graph_def.nodes  # TF2: an object graph
    version = load_version("m", 1, tmp_path / "1", warmup=False)
    try:
        assert isinstance(version.runner("serving_default"), SessionSignatureRunner)
        np.testing.assert_allclose(version.runner("serving_default").run({"x": np.array([1.0, 2.0], np.float32)})["y"],
                                   [2.0, 3.0])
    finally:
        version.release()


def test_a_session_run_stays_in_the_calling_thread(tf1_version):
    # RunOptions.inter_op_thread_pool = -1: no TensorFlow pool thread does the work of a call.
    def pool_cpu_ticks() -> int:
        total = 0
        for task in Path("/proc/self/task").iterdir():
            if (task / "comm").read_text().startswith("tf_"):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total

    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc to read per-thread CPU")
    before = pool_cpu_ticks()
    for _ in range(3000):
        _predict(tf1_version, np.array([[2.0]], np.float32))
    assert pool_cpu_ticks() - before <= 2  # ticks are 10 ms: a pool doing the work would show tens


def test_release_closes_the_session(tmp_path):
    version = load_version("m", 1, export_tf1_half_plus_two(tmp_path / "1"), warmup=False)
    runner = version.runner("serving_default")
    version.release()
    with pytest.raises(Exception):
        runner.run({"x": np.array([[1.0]], np.float32)})
