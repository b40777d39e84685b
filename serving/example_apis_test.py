"""Classify, Regress and MultiInference answer as classifier.cc, regressor.cc and multi_inference.cc do."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, input_pb2, regression_pb2

from serving import example_apis
from serving.errors import ServingError
from serving.servable import load_version
from testing.tf1_models import export_tf1_half_plus_two


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    loaded = load_version("m", 123, export_tf1_half_plus_two(tmp_path_factory.mktemp("m") / "123"), warmup=False)
    yield loaded
    loaded.release()


def _examples(target, *xs: float) -> None:
    for x in xs:
        target.examples.add().features.feature["x"].float_list.value.append(x)


def _classify(signature: str, *xs: float) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature
    _examples(request.input.example_list, *xs)
    return request


def _error(call, *args) -> ServingError:
    with pytest.raises(ServingError) as err:
        call(*args)
    return err.value


def test_classify_with_scores_only_has_empty_labels(version):
    response = example_apis.classify(version, _classify("classify_x_to_y", 2.0, 4.0))
    assert [[(c.label, c.score) for c in row.classes] for row in response.result.classifications] == [
        [("", 3.0)], [("", 4.0)]
    ]
    assert (response.model_spec.name, response.model_spec.signature_name, response.model_spec.version.value) == (
        "m", "classify_x_to_y", 123
    )


def test_classify_with_classes_and_scores(version):
    response = example_apis.classify(version, _classify("classify_with_classes", 2.0))
    assert [(c.label, c.score) for c in response.result.classifications[0].classes] == [("a", 3.0), ("b", -3.0)]


def test_regress_and_the_context_merged_into_each_example(version):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "regress_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(10.0)
    with_context.examples.add()  # takes x from the context
    _examples(with_context, 2.0)  # its own x wins
    response = example_apis.regress(version, request)
    assert [r.value for r in response.result.regressions] == [7.0, 3.0]


def test_tf_servings_errors(version):
    empty = _classify("classify_x_to_y")
    assert (_error(example_apis.classify, version, empty).message) == "Input is empty."
    missing = _classify("nope", 1.0)
    assert _error(example_apis.classify, version, missing).message == "No signature was found with the name: nope"
    # serving_default is a Predict signature: one input, but not named "inputs".
    wrong = _classify("", 1.0)
    error = _error(example_apis.classify, version, wrong)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith("No classification inputs found in SignatureDef: ")
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "classify_with_classes"
    _examples(regress.input.example_list, 1.0)
    assert _error(example_apis.regress, version, regress).message == "Expected one output Tensor."


def test_method_name_check_is_off_unless_asked(version):
    request = regression_pb2.RegressionRequest()
    request.model_spec.signature_name = "classify_x_to_y"  # method classify, outputs "scores": not a regressor
    _examples(request.input.example_list, 1.0)
    assert _error(example_apis.regress, version, request).message.startswith("No regression outputs found")
    example_apis.set_method_name_check(True)
    try:
        assert _error(example_apis.regress, version, request).message == (
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/classify"
        )
    finally:
        example_apis.set_method_name_check(False)


def test_multi_inference_runs_every_task_on_the_same_examples(version):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", example_apis.REGRESS_METHOD),
                              ("classify_x_to_y", example_apis.CLASSIFY_METHOD)):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "m"
        task.model_spec.signature_name = signature
    _examples(request.input.example_list, 2.0)
    response = example_apis.multi_inference(version, request)
    assert response.results[0].regression_result.regressions[0].value == 3.0
    assert response.results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert [r.model_spec.signature_name for r in response.results] == ["regress_x_to_y", "classify_x_to_y"]

    request.tasks[1].model_spec.signature_name = "regress_x_to_y"
    assert _error(example_apis.multi_inference, version, request).message == (
        "Duplicate evaluation of signature: regress_x_to_y"
    )
    request.tasks[1].model_spec.name = "other"
    assert "must access the same model name" in _error(example_apis.multi_inference, version, request).message
    request.tasks[1].model_spec.name = "m"
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/predict"
    error = _error(example_apis.multi_inference, version, request)
    assert (error.code, error.message) == (
        grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict"
    )


def test_serialized_examples_concatenate_context_and_example_bytes():
    request_input = input_pb2.Input()
    context = request_input.example_list_with_context.context
    context.features.feature["c"].int64_list.value.append(1)
    example = request_input.example_list_with_context.examples.add()
    example.features.feature["x"].float_list.value.append(2.0)
    (serialized,) = example_apis.serialized_examples(request_input)
    merged = example_pb2.Example.FromString(serialized)
    assert set(merged.features.feature) == {"c", "x"}
    assert serialized == context.SerializeToString() + example.SerializeToString()
