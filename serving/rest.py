"""The REST front end: TF Serving's /v1/models API on the standard library's HTTP server.

Routes, JSON formats and error texts follow tensorflow_serving/model_servers/
http_rest_api_handler.cc, http_rest_api_util.cc and util/json_tensor.cc:

- ``POST /v1/models/<name>[/versions/<n>|/labels/<l>]:predict`` with
  ``instances`` (row format, answered as ``predictions``) or ``inputs``
  (columnar, answered as ``outputs``); JSON values are converted with the
  signature's dtypes, strings may be ``{"b64": ...}``, outputs whose name ends
  in ``_bytes`` are returned base64-encoded, floats are printed the way TF
  Serving prints them (shortest ``%g`` that round-trips, else 9 digits);
- ``POST ...:classify`` and ``...:regress`` with tf.Example JSON
  (serving/json_examples.py), answered by serving/example_apis.py;
- ``GET /v1/models/<name>[/versions/<n>|/labels/<l>]`` (GetModelStatus as JSON)
  and ``.../metadata`` (GetModelMetadata with the signature_def map);
- errors are ``{"error": "<message>"}`` with TF Serving's HTTP status for the
  gRPC code (http_server.cc ToHTTPStatusCode); a call still running after
  ``--rest_api_timeout_in_ms`` is answered DEADLINE_EXCEEDED (504).

The server is ``http.server.ThreadingHTTPServer``: one thread per connection
is plenty for a local server and keeps the dependency list empty. A request the
HTTP layer cannot frame (bad Content-Length or chunk size) is answered 400 and
the connection closed; once shutdown has begun, every new request, including
one on an open keep-alive connection, is answered 503 with ``Connection: close``.

Limits (``RestLimits``; flags of ``python -m serving``), each answered at once
with a JSON ``{"error": ...}`` and ``Connection: close``, before any work is done:
a request line longer than 8 KiB is 414, a header section larger than 16 KiB
is 431, a body larger than ``--rest_api_max_body_bytes`` (64 MiB) is 413; more
than ``--rest_api_max_concurrent_requests`` (64) requests in progress is 429
RESOURCE_EXHAUSTED (as gRPC's ``--grpc_max_concurrent_rpcs``); a connection
beyond ``--rest_api_max_connections`` (256 open at once, each holds a thread)
is answered 503 on accept and closed, without reading it (a client whose request
was already on the way may see the connection reset instead). A call whose
``--rest_api_timeout_in_ms`` has passed runs no graph (serving/cancellation.py).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, model_pb2, regression_pb2

from serving import cancellation, example_apis, json_examples
from serving.errors import ServingError, invalid_argument, unimplemented
from serving.grpc_service import SIGNATURE_DEF_FIELD, model_metadata
from serving.metrics import Observation, ServingMetrics
from serving.model_manager import ServerCore
from serving.signature_runner import DEFAULT_SIGNATURE, SignatureRunner, TensorSpecInfo

log = logging.getLogger(__name__)

_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
_INT64_MAX = 2**63 - 1
# numpy arrays have at most 64 dimensions, and row format stacks the instances
# along one more; deeper JSON lists are refused before numpy fails on them.
_MAX_RANK = 63
# Largest request body read: far above any request this model needs, and a
# bound on what one connection can make the server allocate.
MAX_BODY_BYTES = 64 * 2**20
# Request line ("POST /v1/models/...:predict HTTP/1.1") and header section caps:
# a model path is a few dozen bytes, and 8 KiB is what most proxies allow a line.
MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_CONCURRENT_REQUESTS = 64
MAX_CONNECTIONS = 256
# Calls running at once under --rest_api_timeout_in_ms (TF Serving: --rest_api_num_threads,
# 4 x CPUs); more wait for a worker, and their wait counts towards the timeout.
_REST_WORKERS = 64


@dataclass(frozen=True)
class RestLimits:
    """What one REST client may make the server hold; beyond it the answer comes at once (module docstring)."""

    max_body_bytes: int = MAX_BODY_BYTES
    max_request_line_bytes: int = MAX_REQUEST_LINE_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES
    max_concurrent_requests: int = MAX_CONCURRENT_REQUESTS  # 0: no limit
    max_connections: int = MAX_CONNECTIONS  # 0: no limit
_BYTES_SUFFIX = "_bytes"


# -- JSON -> tensors (json_tensor.cc FillPredictRequestFromJson) -------------------------


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _dtype_string(dtype: int) -> str:
    # DataTypeString(): DT_FLOAT -> "float", DT_STRING -> "string".
    return types_pb2.DataType.Name(dtype)[3:].lower()


def _is_b64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _type_error(value: Any, dtype: int) -> ServingError:
    return invalid_argument(
        f"JSON Value: {_json_text(value)} Type: {json_examples.json_type(value)} is not of expected type: {_dtype_string(dtype)}"
    )


def _leaf(value: Any, dtype: int) -> Any:
    """AddValueToTensor / JsonDecodeBase64Object: one JSON scalar for one element."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(value, dict):
        if dtype != types_pb2.DT_STRING:
            raise _type_error(value, dtype)
        if not _is_b64_object(value):
            raise invalid_argument(f"JSON Value: {_json_text(value)} not formatted correctly for base64 data")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as exc:
            raise invalid_argument("Unable to base64 decode") from exc
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        if dtype == types_pb2.DT_FLOAT and math.isfinite(value) and abs(value) > float(np.finfo(np.float32).max):
            raise invalid_argument(f"Cannot convert JSON value: {_json_text(value)} to float without loss of precision.")
        return value
    if dtype in (types_pb2.DT_INT32, types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT8):
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_INT64:
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**63) <= value <= _INT64_MAX:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise unimplemented(f"Conversion of JSON Value: {_json_text(value)} to type: {_dtype_string(dtype)}")


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list) -> None:
    """FillTensorProto: every leaf at depth len(shape), every list the size its level says."""
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid_argument(
                f"JSON Value: {_json_text(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}"
            )
        out.append(_leaf(value, dtype))
        return
    if level >= len(shape):
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def json_to_array(value: Any, spec: TensorSpecInfo) -> np.ndarray:
    shape = _dense_shape(value)
    if len(shape) > _MAX_RANK:
        raise invalid_argument(f"JSON Value nests lists {len(shape)} levels deep; at most {_MAX_RANK} are accepted")
    flat: list = []
    _fill(value, 0, shape, spec.dtype, flat)
    dtype = object if spec.dtype == types_pb2.DT_STRING else spec.numpy_dtype
    return np.array(flat, dtype=dtype).reshape(shape)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _arrays_from_instances(instances: list, inputs: Mapping[str, TensorSpecInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList: each element one row, rows stacked along a new dim 0."""
    first = instances[0]
    if not isinstance(first, dict) and len(inputs) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map"
        )
    objects = isinstance(first, dict) and not _is_b64_object(first)
    names = sorted(inputs)
    rows: dict[str, list[np.ndarray]] = {}

    def add(item: Any, name: str) -> None:
        if name not in inputs:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        array = json_to_array(item, inputs[name])
        if rows.get(name):
            reference = rows[name][0]
            if reference.size != array.size:
                raise invalid_argument(f"Expecting tensor size: {reference.size} but got: {array.size}")
            if reference.shape != array.shape:
                raise invalid_argument(
                    f"Expecting shape {_shape_text(reference.shape)} but got: {_shape_text(array.shape)}"
                )
        rows.setdefault(name, []).append(array)

    for index, element in enumerate(instances):
        element_is_object = isinstance(element, dict) and not _is_b64_object(element)
        if objects:
            if not element_is_object:
                raise invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    add(item, name)
                except ServingError as exc:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: {exc.code.name}: {exc.message}"
                    ) from exc
            if set(element) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: {_json_text(element)} "
                    f"keys must be equal to: {','.join(names)}"
                )
        else:
            if element_is_object:
                raise invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            try:
                add(element, names[0])
            except ServingError as exc:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: {exc.code.name}: {exc.message}"
                ) from exc
    return {name: np.stack(parts) for name, parts in rows.items()}


def _arrays_from_inputs(value: Any, inputs: Mapping[str, TensorSpecInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: one JSON value per named input (extra keys are ignored)."""
    if not isinstance(value, dict) or _is_b64_object(value):
        if len(inputs) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map"
            )
        (name,) = inputs
        return {name: json_to_array(value, inputs[name])}
    arrays = {}
    for name in sorted(inputs):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(value[name], inputs[name])
    return arrays


# -- tensors -> JSON (json_tensor.cc MakeJsonFromTensors) ----------------------------------


def _decimal(value: float, single: bool) -> str:
    """WriteDecimal: absl StrCat (%g) if it round-trips, else max_digits10, '.0' for whole numbers."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    roundtrip = float(np.float32(text)) if single else float(text)
    if roundtrip != value:
        text = "%.9g" % value if single else "%.17g" % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _tokens(array: np.ndarray, dtype: int, as_bytes: bool) -> list[str]:
    flat = array.reshape(-1).tolist()
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        return [_decimal(v, True) for v in flat]
    if dtype == types_pb2.DT_DOUBLE:
        return [_decimal(v, False) for v in flat]
    if dtype == types_pb2.DT_STRING:
        if as_bytes:
            return ['{"b64":' + json.dumps(base64.b64encode(v).decode("ascii")) + "}" for v in flat]
        return [json.dumps(v.decode("utf-8", errors="replace"), ensure_ascii=False) for v in flat]
    if dtype == types_pb2.DT_BOOL:
        return ["true" if v else "false" for v in flat]
    return [str(int(v)) for v in flat]


def _nest(tokens: list[str], shape: tuple[int, ...]) -> str:
    if not shape:
        return tokens[0]
    if len(shape) == 1:
        return "[" + ",".join(tokens) + "]"
    step = len(tokens) // shape[0] if shape[0] else 0
    return "[" + ",".join(_nest(tokens[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


def outputs_to_json(outputs: Mapping[str, np.ndarray], specs: Mapping[str, TensorSpecInfo], row_format: bool) -> str:
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {n: np.asarray(outputs[n]) for n in names}
    tokens = {n: _tokens(arrays[n], specs[n].dtype, n.endswith(_BYTES_SUFFIX)) for n in names}
    many = len(names) > 1
    if not row_format:
        parts = [_nest(tokens[n], arrays[n].shape) for n in names]
        body = "{" + ",".join(json.dumps(n) + ":" + p for n, p in zip(names, parts)) + "}" if many else parts[0]
        return '{"outputs":' + body + "}"
    batch = None
    for n in names:
        if arrays[n].ndim == 0:
            raise invalid_argument(f"Tensor name: {n} has no shape information ")
        if batch is not None and arrays[n].shape[0] != batch:
            raise invalid_argument(f"Tensor name: {n} has inconsistent batch size: {arrays[n].shape[0]} expecting: {batch}")
        batch = arrays[n].shape[0]
    rows = []
    for i in range(batch or 0):
        items = []
        for n in names:
            inner = arrays[n].shape[1:]
            width = int(np.prod(inner)) if inner else 1
            items.append((n, _nest(tokens[n][i * width : (i + 1) * width], inner)))
        rows.append("{" + ",".join(json.dumps(n) + ":" + t for n, t in items) + "}" if many else items[0][1])
    return '{"predictions":[' + ",".join(rows) + "]}"


def _float32_text(value: float) -> str:
    return _decimal(value, True)


def _parse_document(body: bytes) -> dict:
    """json_tensor.cc ParseJson: the body must be one JSON object."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"JSON Parse error: {exc}") from exc
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_json_text(doc)} Is not object")
    return doc


def error_json(message: str) -> str:
    return json.dumps({"error": message})


# -- request handling -----------------------------------------------------------------------


class RestApi:
    """Path + body in, (HTTP status, JSON text) out; no sockets, so tests can call it directly."""

    def __init__(self, core: ServerCore, metrics: ServingMetrics):
        self._core = core
        self._metrics = metrics

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        try:
            answer = self._dispatch(method, path, body)
            log.debug("REST %s %s -> 200", method, path)
            return 200, answer
        except ServingError as exc:
            return exc.http_status, error_json(exc.message)
        except Exception as exc:  # never let a handler bug take the connection thread down silently
            log.exception("REST %s %s failed", method, path)
            return 500, error_json(f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
        if version:
            number = int(version)
            if number > _INT64_MAX:
                raise invalid_argument(f"Failed to convert version: {version} to numeric.")
            spec.version.value = number
        if label:
            spec.version_label = urllib.parse.unquote(label)
        return spec

    def _dispatch(self, method: str, path: str, body: bytes) -> str:
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, verb = match.groups()
            spec = self._model_spec(name, version, label)
            verb = verb.lower()
            if verb != "predict":
                return self._classify_or_regress(verb, spec, body)
            return self._predict(spec, body)
        if method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, metadata = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            spec = self._model_spec(name, version, label)
            if metadata:
                return self._model_metadata(spec)
            return self._model_status(spec)
        raise malformed

    def _classify_or_regress(self, verb: str, spec: model_pb2.ModelSpec, body: bytes) -> str:
        """ProcessClassifyRequest / ProcessRegressRequest: JSON examples through example_apis."""
        with self._metrics.observe(f"REST {verb}") as observation:
            try:
                doc = _parse_document(body)
            except RecursionError as exc:
                raise invalid_argument("JSON Parse error: the document is nested too deeply") from exc
            classify = verb == "classify"
            request = classification_pb2.ClassificationRequest() if classify else regression_pb2.RegressionRequest()
            request.model_spec.CopyFrom(spec)
            json_examples.fill_request(doc, request)
            with self._core.acquire(request.model_spec) as servable:
                observation.model = servable.name
                signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
                if signature in servable.signature_defs:
                    observation.signature = signature
                if classify:
                    result = example_apis.classify(servable, request).result
                    return json_examples.classification_json(result, _float32_text)
                result = example_apis.regress(servable, request).result
                return json_examples.regression_json(result, _float32_text)

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        with self._metrics.observe("REST predict") as observation:
            try:
                return self._predict_inner(spec, body, observation)
            except RecursionError as exc:  # parsing, converting and quoting JSON recurse once per nesting level
                raise invalid_argument("JSON Parse error: the document is nested too deeply") from exc

    def _predict_inner(self, spec: model_pb2.ModelSpec, body: bytes, observation: Observation) -> str:
        doc = _parse_document(body)
        signature_name = doc.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid_argument(
                f"JSON Value: {_json_text(doc)} not formatted correctly. 'signature_name' key must be a string value."
            )
        with self._core.acquire(spec) as servable:
            observation.model = servable.name
            name = signature_name or DEFAULT_SIGNATURE
            if name not in servable.signature_defs:
                raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
            runner: SignatureRunner = servable.runner(name)
            observation.signature = runner.name
            if not runner.inputs:
                raise invalid_argument(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
            has_instances, has_inputs = "instances" in doc, "inputs" in doc
            if has_instances and has_inputs:
                raise invalid_argument(
                    f"JSON Value: {_json_text(doc)} Not formatted correctly expecting only one of 'inputs' or "
                    "'instances' keys to exist "
                )
            if has_instances:
                instances = doc["instances"]
                if not isinstance(instances, list):
                    raise invalid_argument(f"JSON Value: {_json_text(doc)} Excepting 'instances' to be an list/array")
                if not instances:
                    raise invalid_argument(f"JSON Value: {_json_text(doc)} No values in 'instances' array")
                arrays = _arrays_from_instances(instances, runner.inputs)
            elif has_inputs:
                arrays = _arrays_from_inputs(doc["inputs"], runner.inputs)
            else:
                raise invalid_argument("Missing 'inputs' or 'instances' key")
            runner.check_input_names(arrays)
            outputs = servable.execute(runner, arrays)
            return outputs_to_json(outputs, runner.outputs, row_format=has_instances)

    def _model_status(self, spec: model_pb2.ModelSpec) -> str:
        with self._metrics.observe("REST status", signature="") as observation:
            response = self._core.status(spec)
            observation.model = spec.name  # found: status() raises for unknown models
        return json_format.MessageToJson(
            response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=1
        )

    def _model_metadata(self, spec: model_pb2.ModelSpec) -> str:
        with self._metrics.observe("REST metadata", signature="") as observation:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF_FIELD])
            request.model_spec.CopyFrom(spec)
            response = model_metadata(self._core, request)
            observation.model = response.model_spec.name
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        as_dict = lambda m: json_format.MessageToDict(  # noqa: E731
            m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return json.dumps(
            {"model_spec": as_dict(response.model_spec), "metadata": {SIGNATURE_DEF_FIELD: as_dict(signature_map)}},
            indent=1,
        )


class _BadFraming(Exception):
    """The request body cannot be read, so the connection cannot carry another request."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RestServer(ThreadingHTTPServer):
    """HTTP/1.1 with keep-alive; counts requests in progress so shutdown can drain them."""

    daemon_threads = True  # idle keep-alive connections must not block exit; drain() covers real work

    def __init__(
        self, address: tuple[str, int], api: RestApi, metrics: ServingMetrics, metrics_path: str | None,
        timeout: float | None = None, limits: RestLimits = RestLimits(),
    ):
        self.api = api
        self.limits = limits
        self.metrics = metrics
        self.metrics_path = metrics_path
        # --rest_api_timeout_in_ms: TF Serving bounds each REST call's run; here the
        # call runs on a worker and the client gets DEADLINE_EXCEEDED when it takes
        # longer (the work itself finishes in the background: Python cannot cancel it).
        self.timeout = timeout
        self._workers = (
            ThreadPoolExecutor(max_workers=_REST_WORKERS, thread_name_prefix="rest-call") if timeout else None
        )
        self._busy = 0
        self._connections = 0
        self._draining = False
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    def admit(self) -> HTTPStatus | None:
        """Counts a request in (None), or says why not: 503 once shutdown has begun, 429 over the cap.

        One lock, so drain() cannot miss a request.
        """
        with self._idle:
            if self._draining:
                return HTTPStatus.SERVICE_UNAVAILABLE
            cap = self.limits.max_concurrent_requests
            if cap and self._busy >= cap:
                return HTTPStatus.TOO_MANY_REQUESTS
            self._busy += 1
            return None

    def process_request(self, request, client_address) -> None:
        """One thread per connection, up to --rest_api_max_connections; beyond, 503 and close at once."""
        with self._idle:
            cap = self.limits.max_connections
            refuse = bool(cap) and self._connections >= cap
            if not refuse:
                self._connections += 1
        if not refuse:
            super().process_request(request, client_address)
            return
        body = error_json(f"Too many connections: this server holds at most {cap} open REST connections "
                          "(--rest_api_max_connections)").encode()
        try:
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._idle:
                self._connections -= 1

    def done(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def stop_accepting(self) -> None:
        """Refuses new requests, on new and on open keep-alive connections alike."""
        with self._idle:
            self._draining = True
        self.shutdown()

    def drain(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """The API's answer, or DEADLINE_EXCEEDED once the --rest_api_timeout_in_ms has passed."""
        if self._workers is None:
            return self.api.handle(method, path, body)
        deadline = time.monotonic() + self.timeout
        future = self._workers.submit(self._handle_until, deadline, method, path, body)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            error = ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"Deadline exceeded: the request took longer than --rest_api_timeout_in_ms "
                f"({self.timeout * 1000:.0f} ms)",
            )
            return error.http_status, error_json(error.message)

    def _handle_until(self, deadline: float, method: str, path: str, body: bytes) -> tuple[int, str]:
        """In a worker: once the deadline has passed the client has its 504, so no graph runs for it."""
        with cancellation.caller(lambda: time.monotonic() < deadline):
            return self.api.handle(method, path, body)

    def server_close(self) -> None:
        super().server_close()
        if self._workers is not None:
            self._workers.shutdown(wait=False)


def _length(text: str, hexadecimal: bool, what: str) -> int:
    """A Content-Length or chunk size: digits only (int() would take "-1", "+1", " 1", "1_0")."""
    if not re.fullmatch("[0-9A-Fa-f]+" if hexadecimal else "[0-9]+", text):
        raise _BadFraming(400, f"Malformed request: invalid {what} {text!r}")
    return int(text, 16 if hexadecimal else 10)


def _check_body_size(size: int, limit: int) -> None:
    if size > limit:
        raise _BadFraming(413, f"Request body of {size} bytes is larger than the {limit} this server accepts "
                               "(--rest_api_max_body_bytes)")


class _HeaderBudget:
    """The connection's reader while headers are parsed: past ``limit`` bytes in all, LineTooLong (431)."""

    def __init__(self, rfile, limit: int):
        self._rfile = rfile
        self._remaining = limit

    def readline(self, size: int = -1) -> bytes:
        want = self._remaining + 1 if size < 0 else min(size, self._remaining + 1)
        line = self._rfile.readline(want)
        self._remaining -= len(line)
        if self._remaining < 0:
            raise http.client.LineTooLong("header section")
        return line


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RestServer
    timeout = 30  # seconds an idle keep-alive connection is kept

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                line = self.rfile.readline().split(b";", 1)[0].strip().decode("latin-1")
                size = _length(line, True, "chunk size")
                total += size
                _check_body_size(total, self.server.limits.max_body_bytes)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = _length(self.headers.get("Content-Length") or "0", False, "Content-Length")
        _check_body_size(length, self.server.limits.max_body_bytes)
        return self.rfile.read(length) if length else b""

    def _respond(self, status: int, body: str, content_type: str = "application/json", close: bool = False) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")  # also ends this handler's keep-alive loop
        self.end_headers()
        self.wfile.write(data)

    def parse_request(self) -> bool:
        """The standard parser with this server's caps: request line (414), header section (431)."""
        limits = self.server.limits
        if len(self.raw_requestline) > limits.max_request_line_bytes:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "Request line too long",
                            f"the request line is longer than the {limits.max_request_line_bytes} bytes this "
                            "server accepts")
            return False
        rfile = self.rfile
        self.rfile = _HeaderBudget(rfile, limits.max_header_bytes)
        try:
            return super().parse_request()  # LineTooLong -> send_error(431)
        finally:
            self.rfile = rfile

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The HTTP layer's own refusals (414, 431, 501, ...): JSON like every other error, then close."""
        status = HTTPStatus(code)
        text = message or status.phrase
        if code == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE and message == "Line too long":
            text = f"Request header section too large: at most {self.server.limits.max_header_bytes} bytes"
        elif explain and explain != status.description:
            text = f"{text}: {explain}"
        log.info("REST %s -> %d %s", getattr(self, "requestline", "")[:200], code, text)
        self.close_connection = True
        try:
            if getattr(self, "command", "") == "HEAD":  # no body on a HEAD response
                self.send_response(code)
                self.send_header("Connection", "close")
                self.end_headers()
            else:
                self._respond(code, error_json(text), close=True)
        except OSError:
            pass

    def _serve(self, method: str) -> None:
        refused = self.server.admit()
        if refused == HTTPStatus.SERVICE_UNAVAILABLE:
            self._respond(503, error_json("Server is shutting down"), close=True)
            return
        if refused is not None:
            # RESOURCE_EXHAUSTED, as gRPC answers above --grpc_max_concurrent_rpcs. The body is
            # not read, so the connection cannot carry another request.
            cap = self.server.limits.max_concurrent_requests
            self._respond(refused, error_json(f"Too many requests in progress: this server runs at most {cap} "
                                              "REST requests at once (--rest_api_max_concurrent_requests)"),
                          close=True)
            return
        try:
            try:
                body = self._read_body() if method == "POST" else b""
            except _BadFraming as exc:
                log.info("REST %s %s -> %d %s", method, self.path, exc.status, exc)
                self._respond(exc.status, error_json(str(exc)), close=True)
                return
            except OSError as exc:  # the client stopped sending mid-body: nobody to answer
                log.info("REST %s %s: reading the body failed: %s", method, self.path, exc)
                self.close_connection = True
                return
            path = self.path.split("?", 1)[0]
            if self.server.metrics_path and path == self.server.metrics_path and method == "GET":
                self._respond(200, self.server.metrics.render().decode(), "text/plain; version=0.0.4")
                return
            if not _API_PATH.fullmatch(path):
                self._respond(404, error_json(f"Not found: {method} {path}"))
                return
            status, text = self.server.answer(method, path, body)
            if status != 200:
                log.info("REST %s %s -> %d %s", method, path, status, text)
            self._respond(status, text)
        finally:
            self.server.done()

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args) -> None:  # errors are logged in _serve; access logs are noise
        pass


def start_rest_server(
    core: ServerCore, metrics: ServingMetrics, host: str, port: int, metrics_path: str | None = None,
    timeout: float | None = None, limits: RestLimits = RestLimits(),
) -> RestServer:
    """``timeout``: seconds a call may run before the client is answered DEADLINE_EXCEEDED (None: no limit)."""
    server = RestServer((host, port), RestApi(core, metrics), metrics, metrics_path, timeout, limits)
    threading.Thread(target=server.serve_forever, name="rest-http", daemon=True).start()
    return server
