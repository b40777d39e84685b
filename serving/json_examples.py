"""The REST body of ``:classify`` and ``:regress``: JSON examples in, JSON results out.

The other half of TF Serving's util/json_tensor.cc (rest.py has the tensor
half). A request is ``{"signature_name": ..., "context": {...}, "examples":
[{...}, ...]}``; each example object becomes a ``tf.Example`` whose feature
kind follows the JSON values (AddValueToFeature): a number written with a
fraction or exponent is a float_list entry (stored as float32), an integer or
a boolean an int64_list entry, a string or ``{"b64": ...}`` a bytes_list entry;
a list holds one kind. Results are ``{"results": [[[label, score], ...], ...]}``
for classify and ``{"results": [value, ...]}`` for regress, numbers printed the
way TF Serving prints them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, regression_pb2

from serving.errors import invalid_argument

CONTEXT_KEY = "context"
EXAMPLES_KEY = "examples"
RESULTS_KEY = "results"
SIGNATURE_KEY = "signature_name"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def json_type(value: Any) -> str:
    """The JSON type name TF Serving's messages use (rapidjson's: Null, True, False, Object, Array, String, Number)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _kind_error(name: str, feature: feature_pb2.Feature) -> Exception:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind"), "UNKNOWN"
    )
    return invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """AddValueToFeature: one JSON value appended to the feature's list, which keeps one kind."""
    kind = feature.WhichOneof("kind")

    def require(wanted: str) -> None:
        if kind not in (None, wanted):
            raise _kind_error(name, feature)

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if isinstance(value, bool):
        require("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        require("bytes_list")
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except ValueError as exc:
            raise invalid_argument("Unable to base64 decode") from exc
    elif isinstance(value, str):
        require("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float):
        require("float_list")
        feature.float_list.value.append(value)
    else:
        require("int64_list")
        if value > _INT64_MAX:
            raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        if value < _INT64_MIN:
            raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: Number")
        feature.int64_list.value.append(value)


def _is_b64(value: dict) -> bool:
    return len(value) == 1 and isinstance(value.get("b64"), str)


def example_from_json(value: Any, example: example_pb2.Example) -> None:
    """MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def fill_request(
    doc: dict, request: classification_pb2.ClassificationRequest | regression_pb2.RegressionRequest
) -> None:
    """FillClassifyRegressRequestFromJson, on a document already parsed into a JSON object."""
    if SIGNATURE_KEY in doc:
        if not isinstance(doc[SIGNATURE_KEY], str):
            raise invalid_argument(
                f"JSON Value: {_json_text(doc)} not formatted correctly. 'signature_name' key must be a string value."
            )
        request.model_spec.signature_name = doc[SIGNATURE_KEY]
    has_context = CONTEXT_KEY in doc
    if has_context:
        example_from_json(doc[CONTEXT_KEY], request.input.example_list_with_context.context)
    if EXAMPLES_KEY not in doc:
        raise invalid_argument(
            f"JSON Value: {_json_text(doc)} When method is classify, key '{EXAMPLES_KEY}' is expected and was not found"
        )
    examples = doc[EXAMPLES_KEY]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {_json_text(doc)} Expecting '{EXAMPLES_KEY}' value to be an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {_json_text(doc)} '{EXAMPLES_KEY}' value is an empty array")
    target = request.input.example_list_with_context if has_context else request.input.example_list
    for value in examples:
        example_from_json(value, target.examples.add())


def classification_json(result: classification_pb2.ClassificationResult, decimal) -> str:
    """MakeJsonFromClassificationResult; ``decimal`` prints a float32 as TF Serving does."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    rows = [
        "[" + ",".join(f"[{json.dumps(c.label, ensure_ascii=False)},{decimal(c.score)}]" for c in row.classes) + "]"
        for row in result.classifications
    ]
    return '{"' + RESULTS_KEY + '":[' + ",".join(rows) + "]}"


def regression_json(result: regression_pb2.RegressionResult, decimal) -> str:
    """MakeJsonFromRegressionResult."""
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return '{"' + RESULTS_KEY + '":[' + ",".join(decimal(r.value) for r in result.regressions) + "]}"
