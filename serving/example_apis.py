"""Classify, Regress and MultiInference: TF Serving's tf.Example APIs, on a loaded version.

These APIs take ``tf.Example`` protos instead of tensors: TF Serving serializes
them into one DT_STRING vector (util.cc InputToSerializedExampleTensor; with
``example_list_with_context`` each example's bytes follow the context's, so
proto merging lets the example's features win), feeds it to the signature's
single ``inputs`` tensor, and turns the outputs into results
(classifier.cc, regressor.cc, multi_inference.cc). The checks, their order,
their status codes and messages follow those files, so a client sees the same
answer here as from the container. The signature's method_name is only
checked with ``--enable_signature_method_name_check``, as in TF Serving
(where it is off by default, which is what lets TF2 exports, whose signatures
all say ``tensorflow/serving/predict``, answer Classify).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)

from serving.errors import invalid_argument, unimplemented
from serving.servable import LoadedVersion
from serving.signature_runner import DEFAULT_SIGNATURE

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"

# --enable_signature_method_name_check (util.cc keeps it process-wide too).
_method_name_check = False


def set_method_name_check(enabled: bool) -> None:
    global _method_name_check
    _method_name_check = enabled


def _debug_string(signature: meta_graph_pb2.SignatureDef) -> str:
    return text_format.MessageToString(signature)


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """InputToSerializedExampleTensor: a DT_STRING vector, one serialized Example per entry."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in with_context.examples]
    else:
        examples = []
    if not examples:
        raise invalid_argument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _signature(servable: LoadedVersion, spec: model_pb2.ModelSpec, method: str, kind: str) -> str:
    """Get{Classification,Regression}SignatureDef: the signature's name, once it passed the checks."""
    name = spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(name)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {name}")
    if _method_name_check and signature.method_name != method:
        raise invalid_argument(f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")
    return name


def _classification_outputs(signature: meta_graph_pb2.SignatureDef) -> list[str]:
    """PreProcessClassification: one "inputs" tensor; "classes" and/or "scores" among one or two outputs."""
    if _method_name_check and signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise invalid_argument(f"No classification inputs found in SignatureDef: {_debug_string(signature)}")
    outputs = [alias for alias in (CLASSIFY_CLASSES, CLASSIFY_SCORES) if alias in signature.outputs]
    if not outputs:
        raise invalid_argument(
            f'Expected classification signature outputs to contain at least one of "{CLASSIFY_CLASSES}" or '
            f'"{CLASSIFY_SCORES}". Signature was: {_debug_string(signature)}'
        )
    return outputs


def _regression_outputs(signature: meta_graph_pb2.SignatureDef) -> list[str]:
    """PreProcessRegression: exactly one "inputs" tensor and one "outputs" tensor."""
    if _method_name_check and signature.method_name != REGRESS_METHOD:
        raise invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise invalid_argument(f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise invalid_argument(f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
    return [REGRESS_OUTPUTS]


def _shape_debug(array: np.ndarray) -> str:
    # TensorShape::DebugString(): "[2,3]".
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _dtype_of(array: np.ndarray) -> int:
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        return types_pb2.DT_STRING
    return tf.dtypes.as_dtype(array.dtype).as_datatype_enum


def _check_class_tensor(array: np.ndarray, what: str, dtype: int, num_examples: int) -> None:
    if array.ndim != 2:
        raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape_debug(array)}")
    if _dtype_of(array) != dtype:
        raise invalid_argument(
            f"Expected {what} Tensor of {types_pb2.DataType.Name(dtype)}. "
            f"Got: {types_pb2.DataType.Name(_dtype_of(array))}"
        )
    if array.shape[0] != num_examples:
        raise invalid_argument(f"Expected {what} output batch size of {num_examples}. Got: {array.shape[0]}")


def classification_result(
    outputs: dict[str, np.ndarray], num_examples: int, result: classification_pb2.ClassificationResult
) -> None:
    """PostProcessClassificationResult."""
    classes = outputs.get(CLASSIFY_CLASSES)
    scores = outputs.get(CLASSIFY_SCORES)
    if classes is not None:
        _check_class_tensor(classes, "classes", types_pb2.DT_STRING, num_examples)
    if scores is not None:
        _check_class_tensor(scores, "scores", types_pb2.DT_FLOAT, num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[i, c]
                entry.label = label.decode("utf-8", errors="replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                entry.score = float(scores[i, c])


def regression_result(
    outputs: dict[str, np.ndarray], num_examples: int, result: regression_pb2.RegressionResult
) -> None:
    """PostProcessRegressionResult."""
    output = outputs[REGRESS_OUTPUTS]
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise invalid_argument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape_debug(output)}"
        )
    if output.shape[0] != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {output.shape[0]}"
        )
    if _dtype_of(output) != types_pb2.DT_FLOAT:
        raise invalid_argument(
            f"Expected output Tensor of DT_FLOAT.  Got: {types_pb2.DataType.Name(_dtype_of(output))}"
        )
    for value in output.reshape(-1).tolist():
        result.regressions.add(value=value)


def _run(servable: LoadedVersion, signature_name: str, examples: np.ndarray, outputs: list[str]) -> dict:
    """Feeds the serialized examples to the signature's "inputs" tensor; returns the named outputs."""
    runner = servable.runner(signature_name)
    return servable.execute(runner, {CLASSIFY_INPUTS: examples}, outputs)


def _response_spec(spec: model_pb2.ModelSpec, servable: LoadedVersion, target: model_pb2.ModelSpec) -> None:
    # util.cc MakeModelSpec: the requested name and signature ("" -> serving_default), the served version.
    target.name = spec.name
    target.signature_name = spec.signature_name or DEFAULT_SIGNATURE
    target.version.value = servable.version


def classify(
    servable: LoadedVersion, request: classification_pb2.ClassificationRequest
) -> classification_pb2.ClassificationResponse:
    """RunClassify."""
    name = _signature(servable, request.model_spec, CLASSIFY_METHOD, "classification")
    outputs = _classification_outputs(servable.signature_defs[name])
    response = classification_pb2.ClassificationResponse()
    _response_spec(request.model_spec, servable, response.model_spec)
    examples = serialized_examples(request.input)
    classification_result(_run(servable, name, examples, outputs), len(examples), response.result)
    return response


def regress(servable: LoadedVersion, request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
    """RunRegress."""
    name = _signature(servable, request.model_spec, REGRESS_METHOD, "regression")
    outputs = _regression_outputs(servable.signature_defs[name])
    response = regression_pb2.RegressionResponse()
    _response_spec(request.model_spec, servable, response.model_spec)
    examples = serialized_examples(request.input)
    regression_result(_run(servable, name, examples, outputs), len(examples), response.result)
    return response


def multi_inference_spec(request: inference_pb2.MultiInferenceRequest) -> model_pb2.ModelSpec:
    """GetModelSpecFromRequest: the first task's model picks the servable."""
    if request.tasks and request.tasks[0].HasField("model_spec"):
        return request.tasks[0].model_spec
    return model_pb2.ModelSpec()


def multi_inference(
    servable: LoadedVersion, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
    """TensorFlowMultiInferenceRunner::Infer: every task checked first, then one pass over the examples.

    TF Serving feeds the examples once to the union of the tasks' tensors in one
    Session::Run; here each distinct signature runs on the same examples, which
    gives the same numbers for the stateless graphs these APIs serve.
    """
    model_name = ""
    seen: set[str] = set()
    plans: list[tuple[str, str, list[str]]] = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif model_name != task.model_spec.name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        signature = servable.signature_defs.get(name)
        if signature is None:
            raise invalid_argument(f"Requested signature not found in model graph: {name}")
        if task.method_name == CLASSIFY_METHOD:
            plans.append((task.method_name, name, _classification_outputs(signature)))
        elif task.method_name == REGRESS_METHOD:
            plans.append((task.method_name, name, _regression_outputs(signature)))
        else:
            raise unimplemented(f"Unsupported signature method_name: {task.method_name}")
    response = inference_pb2.MultiInferenceResponse()
    examples = serialized_examples(request.input)
    for task, (method, name, outputs) in zip(request.tasks, plans):
        result = response.results.add()
        values = _run(servable, name, examples, outputs)
        if method == CLASSIFY_METHOD:
            classification_result(values, len(examples), result.classification_result)
        else:
            regression_result(values, len(examples), result.regression_result)
        _response_spec(task.model_spec, servable, result.model_spec)
    return response
