"""The gRPC front end: TF Serving's PredictionService and ModelService, plus grpc.health.v1.

Clients use the stubs from ``tensorflow-serving-api`` unchanged, so this module
only implements the servicer classes those stubs talk to. Each handler looks
the model up in the ServerCore, delegates to the loaded version, and turns a
``ServingError`` into the same status code and message TF Serving returns
(any other exception is INTERNAL). Classify, Regress and MultiInference, the
tf.Example APIs, are answered by serving/example_apis.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import cancellation, example_apis
from serving.config import ConfigError
from serving.errors import ServingError, invalid_argument
from serving.metrics import UNKNOWN, Observation, ServingMetrics
from serving.model_manager import ServerCore
from serving.signature_runner import DEFAULT_SIGNATURE

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def model_metadata(
    core: ServerCore, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """get_model_metadata_impl.cc, shared with the REST /metadata endpoint."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            # Sic: TF Serving builds this with StrCat, so "%s" stays literal.
            raise invalid_argument(f"Metadata field %s is not supported{field}")
    with core.acquire(request.model_spec) as servable:
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in servable.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


def _answer(
    metrics: ServingMetrics,
    api: str,
    model: str,
    context: grpc.ServicerContext,
    handler: Callable[[Observation], Message],
    signature: str = UNKNOWN,
) -> Message:
    """Runs one RPC: metrics, one log line per failure, and TF Serving's status code on the wire.

    ``model`` is the requested name, for the log only; the metrics label comes
    from ``handler`` once the model has been found. context.abort() is called
    outside the observed block, so its own exception is not counted as a failure.
    The handler knows how to tell whether its caller is still there
    (``context.is_active``, serving/cancellation.py): a call cancelled or past
    its deadline runs no graph.
    """
    try:
        with metrics.observe(api, signature) as observation, cancellation.caller(context.is_active):
            response = handler(observation)
        log.debug("%s %s -> OK", api, model)
        return response
    except ServingError as exc:
        log.info("%s %s -> %s: %s", api, model, exc.code.name, exc.message)
        context.abort(exc.code, exc.message)
    except Exception as exc:
        log.exception("%s failed with an unexpected error", api)
        context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServerCore, metrics: ServingMetrics):
        self._core = core
        self._metrics = metrics

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        return _answer(self._metrics, "Predict", request.model_spec.name, context,
                       lambda observation: self._predict(request, observation))

    def _predict(self, request, observation: Observation):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        with self._core.acquire(request.model_spec) as servable:
            observation.model = servable.name
            runner = servable.runner(request.model_spec.signature_name)
            observation.signature = runner.name
            return servable.predict(request, runner)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(self._metrics, "GetModelMetadata", request.model_spec.name, context,
                       lambda observation: self._metadata(request, observation), signature="")

    def _metadata(self, request, observation: Observation):
        response = model_metadata(self._core, request)
        observation.model = response.model_spec.name
        return response

    def Classify(self, request, context):  # noqa: N802
        return _answer(self._metrics, "Classify", request.model_spec.name, context,
                       lambda observation: self._examples(example_apis.classify, request, request.model_spec,
                                                          observation))

    def Regress(self, request, context):  # noqa: N802
        return _answer(self._metrics, "Regress", request.model_spec.name, context,
                       lambda observation: self._examples(example_apis.regress, request, request.model_spec,
                                                          observation))

    def MultiInference(self, request, context):  # noqa: N802
        spec = example_apis.multi_inference_spec(request)
        return _answer(self._metrics, "MultiInference", spec.name, context,
                       lambda observation: self._examples(example_apis.multi_inference, request, spec, observation,
                                                          check_spec=False))

    def _examples(self, api, request, spec, observation: Observation, check_spec: bool = True):
        """The tf.Example APIs: find the version, then hand it the request (classification_service.cc)."""
        if check_spec and not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        with self._core.acquire(spec) as servable:
            observation.model = servable.name
            signature = spec.signature_name or DEFAULT_SIGNATURE
            if check_spec and signature in servable.signature_defs:  # a label only from the server's own names
                observation.signature = signature
            return api(servable, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServerCore, metrics: ServingMetrics,
                 reload_config: Callable[[model_server_config_pb2.ModelServerConfig], None] | None = None):
        self._core = core
        self._metrics = metrics
        self._reload_config = reload_config

    def GetModelStatus(self, request, context):  # noqa: N802
        return _answer(self._metrics, "GetModelStatus", request.model_spec.name, context,
                       lambda observation: self._status(request, observation), signature="")

    def _status(self, request, observation: Observation):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        response = self._core.status(request.model_spec)
        observation.model = request.model_spec.name  # found: status() raises for unknown models
        return response

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        return _answer(self._metrics, "HandleReloadConfigRequest", "", context,
                       lambda _observation: self._reload(request), signature="")

    def _reload(self, request) -> model_management_pb2.ReloadConfigResponse:
        """model_service_impl.cc: only a model_config_list, applied as the config file's reload is."""
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                                   "Only ModelConfigList is currently supported")
        if self._reload_config is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "this server was built without config reloading")
        try:
            self._reload_config(request.config)
        except ConfigError as exc:
            raise invalid_argument(str(exc)) from exc
        return model_management_pb2.ReloadConfigResponse()  # status OK


class HealthReporter:
    """grpc.health.v1 statuses: SERVING once any model has a version loaded."""

    SERVICES = ("", PREDICTION_SERVICE, MODEL_SERVICE)

    def __init__(self) -> None:
        self.servicer = health.HealthServicer()
        self.set_serving(False)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in self.SERVICES:
            self.servicer.set(service, status)

    def shutdown(self) -> None:
        self.servicer.enter_graceful_shutdown()


def server_credentials(ssl_config) -> grpc.ServerCredentials:
    """server.cc BuildServerCredentials from a parsed SSLConfig (serving.config.read_ssl_config).

    client_verify: clients must present a certificate signed by custom_ca
    (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY); otherwise none
    is requested, custom_ca or not, exactly as TF Serving sets it up.
    """
    return grpc.ssl_server_credentials(
        [(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
        root_certificates=ssl_config.custom_ca.encode() if ssl_config.custom_ca else None,
        require_client_auth=bool(ssl_config.client_verify),
    )


def build_grpc_server(
    core: ServerCore,
    metrics: ServingMetrics,
    health_reporter: HealthReporter,
    *,
    host: str,
    port: int,
    max_workers: int,
    max_message_size: int,
    socket_path: str = "",
    channel_arguments: Sequence[tuple[str, int | str]] = (),
    reload_config: Callable[[model_server_config_pb2.ModelServerConfig], None] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    max_concurrent_rpcs: int | None = None,
) -> tuple[grpc.Server, int]:
    """Port 0 listens on no TCP port (TF Serving's --port=0), ``socket_path`` on a Unix socket too.

    ``channel_arguments`` (--grpc_channel_arguments) come last, so they win over
    the defaults, as they do when TF Serving adds them to its ServerBuilder.
    ``credentials`` (from --ssl_config_file) serve both listeners over TLS, as
    TF Serving does. ``max_concurrent_rpcs``: RPCs beyond it, counting those
    waiting for a worker thread, are answered RESOURCE_EXHAUSTED at once
    ("Concurrent RPC limit exceeded!", gRPC's own) instead of queueing.
    """
    options = [
        ("grpc.max_send_message_length", max_message_size),
        ("grpc.max_receive_message_length", max_message_size),
        ("grpc.so_reuseport", 0),
        *channel_arguments,
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=options, maximum_concurrent_rpcs=max_concurrent_rpcs or None)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(core, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core, metrics, reload_config), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_reporter.servicer, server)
    def listen(address: str) -> int:
        if credentials is not None:
            return server.add_secure_port(address, credentials)
        return server.add_insecure_port(address)

    bound = 0
    if port:
        try:
            bound = listen(f"{host}:{port}")
        except RuntimeError as exc:  # grpc's only signal that the address is taken or unusable
            raise OSError("address in use or not available") from exc
    if socket_path:
        try:
            listen(f"unix:{socket_path}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen on Unix socket {socket_path}") from exc
    return server, bound
