"""Read TF Serving's text-proto config files the way tensorflow_model_server does.

The same three files (serving/models.config, batching.config, monitoring.config)
are mounted into the real TF Serving container by docker-compose and read by the
local server, so they are parsed here as the real protos: a misspelt field then
fails before deployment, with the file, line and field named, instead of
TF Serving refusing to start inside a container. On top of the syntax, the
semantic rules TF Serving enforces at startup that this module knows of (model
platform, batch sizes, thread counts, unique model names, ...) are checked, so
a file it accepts should not be rejected by the real server; it is not a
complete re-implementation of TF Serving's validation. Settings TF Serving only
warns about or ignores (an empty ``specific`` version list,
``max_execution_batch_size`` without large-batch splitting) are accepted here
too, with a warning.
"""

import logging
import ssl
import tempfile
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

from common.contract import PROMETHEUS_PATH  # PrometheusExporter::kPrometheusPath, the default path
from serving import tfs_protos
from serving.batching import BatchingOptions

log = logging.getLogger(__name__)

TENSORFLOW_PLATFORM = "tensorflow"  # model_platform_types.h kTensorFlowModelPlatform


class ConfigError(ValueError):
    """A config file is unreadable, malformed, or asks for something TF Serving rejects."""


def _parse(path: str | Path, message: Message) -> Message:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from e
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        # str(e) is "LINE:COL : detail"; keep only the detail so the location is
        # spelled once, in the usual file:line:col form editors can jump to. The
        # words in between are protobuf's own (what tensorflow_model_server logs),
        # so a script grepping the container's output finds them here too.
        detail = str(e).split(" : ", 1)[-1] if e.GetLine() is not None else str(e)
        location = f"{path}:{e.GetLine()}:{e.GetColumn()}" if e.GetLine() is not None else str(path)
        raise ConfigError(
            f"{location}: Error parsing text-format {message.DESCRIPTOR.full_name}: {detail}"
        ) from e
    return message


def parse_grpc_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """--grpc_channel_arguments as server.cc reads it: "k=v,k=v"; a value that parses as int32 is an int.

    An entry without "=" is refused here (TF Serving indexes past the end of the
    split and crashes); a key gRPC does not know is, as in TF Serving, gRPC's business.
    """
    arguments: list[tuple[str, int | str]] = []
    for entry in text.split(",") if text else []:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ConfigError(f"--grpc_channel_arguments: {entry!r} is not key=value")
        try:
            number = int(value)
        except ValueError:
            arguments.append((key, value))
            continue
        arguments.append((key, number) if -(2**31) <= number < 2**31 else (key, value))
    return arguments


def read_model_server_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Parse a --model_config_file (ModelServerConfig text proto)."""
    return check_model_server_config(_parse(path, model_server_config_pb2.ModelServerConfig()), path)


def check_model_server_config(
    config: model_server_config_pb2.ModelServerConfig, path: str | Path
) -> model_server_config_pb2.ModelServerConfig:
    """The rules TF Serving applies to a ModelServerConfig; ``path`` names where it came from in errors."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: model_config_list is required (custom_model_config is not supported)")
    models = config.model_config_list.config
    if not models:
        raise ConfigError(f"{path}: model_config_list has no config entries")
    seen: set[str] = set()
    for i, model in enumerate(models):
        where = f"{path}: model_config_list.config[{i}]"
        if not model.name:
            raise ConfigError(f"{where}: name is empty")
        if model.name in seen:
            raise ConfigError(f"{where}: duplicate model name {model.name!r}")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where} ({model.name}): base_path is empty")
        _check_platform(f"{where} ({model.name})", model)
        # latest.num_versions 0 is served as 1 (TF Serving takes max(n, 1)), see VersionPolicy.
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            log.warning("%s (%s): model_version_policy.specific.versions is empty: no version will be served",
                        where, model.name)
    return config


def _check_platform(where: str, model: model_server_config_pb2.ModelConfig) -> None:
    """server_core.cc GetPlatform: model_platform, or the deprecated model_type; exactly one, TensorFlow."""
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if model.model_platform:
            raise ConfigError(f"{where}: set model_platform or the deprecated model_type, not both")
        if model.model_type != model_server_config_pb2.TENSORFLOW:
            raise ConfigError(f"{where}: model_type {model.model_type} is not supported")
        return
    if not model.model_platform:
        raise ConfigError(f'{where}: model_platform is empty (TF Serving requires it; use "{TENSORFLOW_PLATFORM}")')
    if model.model_platform != TENSORFLOW_PLATFORM:
        raise ConfigError(
            f'{where}: model_platform {model.model_platform!r} is not served; use "{TENSORFLOW_PLATFORM}"'
        )


def _int64(params: Message, name: str) -> int | None:
    return getattr(params, name).value if params.HasField(name) else None


def _require_at_least(path: str | Path, params: Message, name: str, minimum: int) -> None:
    value = _int64(params, name)
    if value is not None and value < minimum:
        raise ConfigError(f"{path}: {name} must be >= {minimum}, got {value}")


def read_batching_parameters(path: str | Path) -> Message:
    """Parse a --batching_parameters_file (tensorflow.serving.BatchingParameters text proto).

    Returns a `serving.tfs_protos.BatchingParameters` message; unset wrapper
    fields mean "TF Serving's default" exactly as in the real server.
    """
    params = _parse(path, tfs_protos.BatchingParameters())
    _require_at_least(path, params, "max_batch_size", 1)
    _require_at_least(path, params, "num_batch_threads", 1)
    _require_at_least(path, params, "max_enqueued_batches", 1)
    _require_at_least(path, params, "batch_timeout_micros", 0)
    _require_at_least(path, params, "max_execution_batch_size", 1)

    max_batch_size = _int64(params, "max_batch_size") or BatchingOptions.max_batch_size
    splitting = params.HasField("enable_large_batch_splitting") and params.enable_large_batch_splitting.value
    max_execution = _int64(params, "max_execution_batch_size")
    if max_execution is not None and not splitting:
        log.warning("%s: max_execution_batch_size is ignored unless enable_large_batch_splitting is true", path)
    # With splitting on, batches are cut to max_execution_batch_size and the
    # allowed sizes describe those execution batches (bundle_factory_util.h).
    batch_limit_name = "max_batch_size"
    if splitting:
        if max_execution is not None and max_execution > max_batch_size:
            raise ConfigError(
                f"{path}: max_execution_batch_size ({max_execution}) must be <= max_batch_size ({max_batch_size})"
            )
        if max_execution is not None:
            max_batch_size, batch_limit_name = max_execution, "max_execution_batch_size"

    sizes = list(params.allowed_batch_sizes)
    if sizes:
        if sizes[0] < 1:
            raise ConfigError(f"{path}: allowed_batch_sizes entries must be positive, got {sizes[0]}")
        for previous, current in zip(sizes, sizes[1:]):
            if current <= previous:
                raise ConfigError(
                    f"{path}: allowed_batch_sizes must be strictly increasing, got {previous} then {current}"
                )
        if sizes[-1] != max_batch_size:
            raise ConfigError(
                f"{path}: the last allowed_batch_sizes entry ({sizes[-1]}) must equal {batch_limit_name} ({max_batch_size})"
            )
    return params


def read_monitoring_config(path: str | Path) -> Message:
    """Parse a --monitoring_config_file (tensorflow.serving.MonitoringConfig text proto)."""
    config = _parse(path, tfs_protos.MonitoringConfig())
    metrics_path = config.prometheus_config.path
    if metrics_path and not metrics_path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/', got {metrics_path!r}")
    return config


def prometheus_path(config: Message) -> str | None:
    """The HTTP path TF Serving exposes metrics on, or None when Prometheus is disabled."""
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or PROMETHEUS_PATH


def read_ssl_config(path: str | Path) -> Message:
    """Parse and check a --ssl_config_file (tensorflow.serving.SSLConfig text proto).

    As in TF Serving, ``server_key``, ``server_cert`` and ``custom_ca`` hold the
    PEM text itself, not file names. TF Serving CHECK-fails on a file it cannot
    parse and leaves bad PEM to gRPC; here every problem is a ConfigError naming
    the file and the field: an empty or malformed key or certificate, a key that
    does not match the certificate, ``client_verify`` without a ``custom_ca`` to
    verify client certificates against (gRPC refuses that too).
    """
    config = _parse(path, tfs_protos.SSLConfig())
    for field in ("server_key", "server_cert"):
        if not getattr(config, field).strip():
            raise ConfigError(f"{path}: {field} is empty; it must hold the PEM text itself (not a file name)")
    if config.client_verify and not config.custom_ca.strip():
        raise ConfigError(f"{path}: client_verify is true but custom_ca is empty: client certificates need a CA "
                          "(PEM text) to be verified against")
    _check_pem_pair(path, config.server_cert, config.server_key)
    if config.custom_ca.strip():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_verify_locations(cadata=config.custom_ca)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"{path}: custom_ca is not a PEM certificate: {e}") from e
    return config


def _check_pem_pair(path: str | Path, cert: str, key: str) -> None:
    """What gRPC would fail on at the first handshake, found at startup: both parse and belong together."""
    for field, text, marker in (("server_cert", cert, "CERTIFICATE"), ("server_key", key, "PRIVATE KEY")):
        if "-----BEGIN" not in text or marker not in text:
            raise ConfigError(f"{path}: {field} is not PEM text (no '-----BEGIN ...{marker}-----' block); it must "
                              "hold the PEM itself, not a file name")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="ssl-config-") as folder:  # load_cert_chain reads files only
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_text(cert)
        key_file.touch(mode=0o600)
        key_file.write_text(key)
        try:
            context.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as e:
            raise ConfigError(f"{path}: server_cert and server_key are not a matching PEM certificate and private "
                              f"key: {e.reason or e}") from e


def ssl_config_text(server_cert: str, server_key: str, custom_ca: str = "", client_verify: bool = False) -> str:
    """An SSLConfig text proto holding the given PEM texts, e.g. from credentials/server.pem and server.key."""
    config = tfs_protos.SSLConfig(server_cert=server_cert, server_key=server_key, custom_ca=custom_ca,
                                  client_verify=client_verify)
    return text_format.MessageToString(config)
