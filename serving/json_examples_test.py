"""The REST classify/regress JSON maps to tf.Examples and back as json_tensor.cc does."""

from __future__ import annotations

import pytest
from tensorflow_serving.apis import classification_pb2, regression_pb2

from serving import json_examples
from serving.errors import ServingError
from serving.rest import _float32_text


def _request(doc: dict) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    json_examples.fill_request(doc, request)
    return request


def test_feature_kinds_follow_the_json_values():
    request = _request({
        "signature_name": "s",
        "examples": [{"f": 2.5, "i": 3, "b": True, "s": "text", "raw": {"b64": "AAE="}, "list": [1.0, 2.0]}],
    })
    assert request.model_spec.signature_name == "s"
    feature = request.input.example_list.examples[0].features.feature
    assert list(feature["f"].float_list.value) == [2.5]
    assert list(feature["i"].int64_list.value) == [3]
    assert list(feature["b"].int64_list.value) == [1]
    assert list(feature["s"].bytes_list.value) == [b"text"]
    assert list(feature["raw"].bytes_list.value) == [b"\x00\x01"]
    assert list(feature["list"].float_list.value) == [1.0, 2.0]


def test_context_puts_the_examples_in_example_list_with_context():
    request = _request({"context": {"c": 1}, "examples": [{"x": 2.0}]})
    with_context = request.input.example_list_with_context
    assert list(with_context.context.features.feature["c"].int64_list.value) == [1]
    assert len(with_context.examples) == 1 and not request.input.HasField("example_list")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "When method is classify, key 'examples' is expected and was not found"),
        ({"examples": {}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        ({"examples": [{"x": [1.0, 2]}]}, "Unexpected element type in feature: x expecting type: float"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": [[1.0]]}]}, "Feature: x has element with unexpected JSON type: Array"),
        ({"examples": [{"x": 2**64 - 1}]}, "Feature: x has uint64_t element. Only int64_t is supported."),
        ({"signature_name": 1, "examples": [{}]}, "'signature_name' key must be a string value."),
    ],
)
def test_malformed_requests_are_refused_with_tf_servings_words(doc, message):
    with pytest.raises(ServingError) as err:
        _request(doc)
    assert message in err.value.message


def test_results_are_written_as_tf_serving_writes_them():
    classification = classification_pb2.ClassificationResult()
    row = classification.classifications.add()
    row.classes.add(label="a", score=0.1)
    row.classes.add(label="", score=3.0)
    assert json_examples.classification_json(classification, _float32_text) == '{"results":[[["a",0.1],["",3.0]]]}'
    regression = regression_pb2.RegressionResult()
    regression.regressions.add(value=3.0)
    regression.regressions.add(value=0.1)
    assert json_examples.regression_json(regression, _float32_text) == '{"results":[3.0,0.1]}'
    with pytest.raises(ServingError, match="Cannot convert empty RegressionResults to JSON"):
        json_examples.regression_json(regression_pb2.RegressionResult(), _float32_text)
