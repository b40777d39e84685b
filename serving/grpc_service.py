"""The gRPC front end: TF Serving's PredictionService and ModelService, plus grpc.health.v1.

Clients use the stubs from ``tensorflow-serving-api`` unchanged, so this module
only implements the servicer classes those stubs talk to. Each handler looks
the model up in the ServerCore, delegates to the loaded version, and turns a
``ServingError`` into the same status code and message TF Serving returns.
Classify, Regress and MultiInference (tf.Example based APIs the exported model
has no signature for) are refused with UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.errors import ServingError, invalid_argument, unimplemented
from serving.metrics import ServingMetrics
from serving.model_manager import ServerCore
from serving.signature_runner import DEFAULT_SIGNATURE

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def _fail(context: grpc.ServicerContext, error: ServingError):
    context.abort(error.code, error.message)


def _internal(context: grpc.ServicerContext, api: str, exc: BaseException):
    log.exception("%s failed with an unexpected error", api)
    context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServerCore, metrics: ServingMetrics):
        self._core = core
        self._metrics = metrics

    def Predict(self, request, context):  # noqa: N802  (gRPC method name)
        with self._metrics.observe("Predict", request.model_spec.name) as obs:
            obs.signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            try:
                if not request.HasField("model_spec"):
                    raise invalid_argument("Missing ModelSpec")
                with self._core.acquire(request.model_spec) as servable:
                    return servable.predict(request)
            except ServingError as exc:
                obs.code = exc.code
                log.info("Predict %s -> %s: %s", request.model_spec.name, exc.code.name, exc.message)
                _fail(context, exc)
            except Exception as exc:
                obs.code = grpc.StatusCode.INTERNAL
                _internal(context, "Predict", exc)

    def GetModelMetadata(self, request, context):  # noqa: N802
        with self._metrics.observe("GetModelMetadata", request.model_spec.name) as obs:
            try:
                response = self.model_metadata(request)
                return response
            except ServingError as exc:
                obs.code = exc.code
                log.info("GetModelMetadata %s -> %s: %s", request.model_spec.name, exc.code.name, exc.message)
                _fail(context, exc)
            except Exception as exc:
                obs.code = grpc.StatusCode.INTERNAL
                _internal(context, "GetModelMetadata", exc)

    def model_metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """get_model_metadata_impl.cc, shared with the REST /metadata endpoint."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                # Sic: TF Serving builds this with StrCat, so "%s" stays literal.
                raise invalid_argument(f"Metadata field %s is not supported{field}")
        with self._core.acquire(request.model_spec) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature_def in servable.signature_defs.items():
                signature_map.signature_def[name].CopyFrom(signature_def)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
            return response

    def _refuse(self, api: str, request, context):
        with self._metrics.observe(api, request.model_spec.name) as obs:
            obs.signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            obs.code = grpc.StatusCode.UNIMPLEMENTED
            _fail(context, unimplemented(f"{api} is not supported by this local server; use Predict"))

    def Classify(self, request, context):  # noqa: N802
        self._refuse("Classify", request, context)

    def Regress(self, request, context):  # noqa: N802
        self._refuse("Regress", request, context)

    def MultiInference(self, request, context):  # noqa: N802
        with self._metrics.observe("MultiInference", "") as obs:
            obs.code = grpc.StatusCode.UNIMPLEMENTED
            _fail(context, unimplemented("MultiInference is not supported by this local server; use Predict"))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServerCore, metrics: ServingMetrics):
        self._core = core
        self._metrics = metrics

    def GetModelStatus(self, request, context):  # noqa: N802
        with self._metrics.observe("GetModelStatus", request.model_spec.name) as obs:
            try:
                if not request.HasField("model_spec"):
                    raise invalid_argument("Missing ModelSpec")
                return self._core.status(request.model_spec)
            except ServingError as exc:
                obs.code = exc.code
                log.info("GetModelStatus %s -> %s: %s", request.model_spec.name, exc.code.name, exc.message)
                _fail(context, exc)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        _fail(context, unimplemented("HandleReloadConfigRequest is not supported by this local server; "
                                     "restart it with the new --model_config_file"))


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


def build_grpc_server(
    core: ServerCore,
    metrics: ServingMetrics,
    health_reporter: HealthReporter,
    *,
    host: str,
    port: int,
    max_workers: int,
    max_message_size: int,
) -> tuple[grpc.Server, int]:
    options = [
        ("grpc.max_send_message_length", max_message_size),
        ("grpc.max_receive_message_length", max_message_size),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=options)
    predictions = PredictionService(core, metrics)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(predictions, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core, metrics), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_reporter.servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    return server, bound
