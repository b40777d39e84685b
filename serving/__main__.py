"""``python -m serving``: the local model server's command line.

Flag names follow ``tensorflow_model_server``, so a command line copied from
the container (or from TF Serving's own tests) works here: every flag of TF
Serving's main.cc is accepted. The ones this server acts on are listed in
``--help``; the others (TLS, TPU, TF Lite, thread pools, ...) are accepted with
one warning line saying they have no effect, never a usage error (except
``--use_alts_credentials=true``: asking for a secure transport this server does
not have is refused rather than served in the clear). Each flag
also accepts the dashed spelling (``--rest-api-port``). Flags TF Serving does
not have (``--host``, ``--monitoring-port``, ``--grpc_max_message_size``,
``--drain_seconds``) exist because a local process, unlike a container, shares
the host's network; none of them opens a port by default. Others bound what one
caller can make the server hold (``--grpc_max_concurrent_rpcs``,
``--rest_api_max_*``), and ``--allow_insecure_non_loopback`` is required to
serve cleartext (gRPC without ``--ssl_config_file``, REST, metrics) on an
address other than loopback.

Exit codes: 0 after a clean stop (SIGTERM or Ctrl-C is how a server is asked to
stop, so a drained shutdown is success); 1 when it cannot start (a bad config
file, a taken port); 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from common import cli
from common.contract import GRPC_PORT, MODEL_NAME, REST_PORT
from serving import config
from serving.rest import MAX_BODY_BYTES, MAX_CONCURRENT_REQUESTS, MAX_CONNECTIONS
from serving.server import (
    DEFAULT_MAX_MESSAGE_SIZE,
    InsecureListenerError,
    LocalModelServer,
    ServerOptions,
    StartupError,
    check_transport_security,
    configure_logging,
)

log = logging.getLogger("serving")


def version_text() -> str:
    """What ``tensorflow_model_server --version`` prints, for this server."""
    import tensorflow as tf

    return f"TensorFlow ModelServer: local (python -m serving)\nTensorFlow Library: {tf.__version__}"


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    parser.add_argument(*sorted(spellings), dest=name, **kwargs)


# tensorflow_model_server flags (main.cc) this server accepts but does not act on, with
# their types: a command line written for the container must start here too.
INERT_TF_SERVING_FLAGS: dict[str, type] = {
    "rest_api_num_threads": int,
    "rest_api_enable_cors_support": bool,
    "allow_version_labels_for_unavailable_models": bool,
    "enable_per_model_batching_parameters": bool,
    "num_load_threads": int,
    "num_unload_threads": int,
    "max_num_load_retries": int,
    "load_retry_interval_micros": int,
    "flush_filesystem_caches": bool,
    "tensorflow_session_parallelism": int,
    "tensorflow_session_config_file": str,
    "tensorflow_intra_op_parallelism": int,
    "tensorflow_inter_op_parallelism": int,
    "platform_config_file": str,
    "per_process_gpu_memory_fraction": float,
    "num_request_iterations_for_warmup": int,
    "remove_unused_fields_from_bundle_metagraph": bool,
    "prefer_tflite_model": bool,
    "num_tflite_pools": int,
    "num_tflite_interpreters_per_pool": int,
    "xla_cpu_compilation_enabled": bool,
    "xla_gpu_compilation_enabled": bool,
    "enable_profiler": bool,
    "thread_pool_factory_config_file": str,
    "mixed_precision": str,
    "skip_initialize_tpu": bool,
    "enable_grpc_healthcheck_service": bool,
    "enable_serialization_as_tensor_content": bool,
}


def _inert_flag(parser: argparse.ArgumentParser, name: str, kind: type) -> None:
    if kind is bool:
        _flag(parser, name, type=_bool, nargs="?", const=True, default=None, help=argparse.SUPPRESS)
    else:
        _flag(parser, name, type=kind, default=None, help=argparse.SUPPRESS)


def inert_flag_warnings(args: argparse.Namespace) -> list[str]:
    """One line per TF Serving flag that was given but changes nothing here."""
    return [
        f"--{name}={getattr(args, name)} is a tensorflow_model_server flag this local server accepts "
        "but does not act on; ignored"
        for name in INERT_TF_SERVING_FLAGS
        if getattr(args, name) is not None
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Local model server speaking the TensorFlow Serving gRPC and REST APIs.",
        allow_abbrev=False,
    )
    _flag(parser, "port", type=int, default=GRPC_PORT, help="gRPC port; 0 disables (default %(default)s)")
    _flag(parser, "grpc_socket_path", default="",
          help="also serve gRPC on this Unix socket path (default: none)")
    _flag(parser, "rest_api_port", type=int, default=REST_PORT, help="REST port; 0 disables (default %(default)s)")
    _flag(parser, "rest_api_timeout_in_ms", type=int, default=30000,
          help="a REST request still running after this long is answered DEADLINE_EXCEEDED (default %(default)s)")
    _flag(parser, "host", default="127.0.0.1", help="address to bind (default %(default)s; 0.0.0.0 for all)")
    _flag(parser, "model_name", default=MODEL_NAME, help="model name with --model_base_path (default %(default)s)")
    _flag(parser, "model_base_path", help="directory holding integer version subdirectories")
    _flag(parser, "model_config_file", help="ModelServerConfig text proto (e.g. serving/models.config)")
    _flag(parser, "model_config_file_poll_wait_seconds", type=float, default=0.0,
          help="seconds between re-reads of --model_config_file; 0 reads it once (default %(default)s)")
    _flag(parser, "saved_model_tags", default="serve",
          help="comma-separated tags of the MetaGraphDef to load (default %(default)s)")
    _flag(parser, "file_system_poll_wait_seconds", type=float, default=1.0,
          help="seconds between version polls; 0 polls once at startup (default %(default)s)")
    _flag(parser, "enable_batching", type=_bool, nargs="?", const=True, default=False,
          help="batch concurrent Predict calls (default false)")
    _flag(parser, "batching_parameters_file", help="BatchingParameters text proto (e.g. serving/batching.config)")
    _flag(parser, "enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
          help="replay assets.extra/tf_serving_warmup_requests before serving a version (default true)")
    _flag(parser, "monitoring_config_file",
          help="MonitoringConfig text proto; when Prometheus is enabled, metrics are also served on the REST port")
    _flag(parser, "monitoring_port", type=int, default=0,
          help="also serve Prometheus metrics on this port; 0 (default) opens none, as TF Serving, whose "
               "metrics are on the REST port with --monitoring_config_file (e.g. serving/monitoring.config)")
    _flag(parser, "grpc_max_threads", type=int, default=16, help="gRPC worker threads (default %(default)s)")
    _flag(parser, "grpc_channel_arguments", default="",
          help="comma-separated key=value gRPC server arguments, e.g. grpc.max_connection_age_ms=2000")
    _flag(parser, "enable_signature_method_name_check", type=_bool, nargs="?", const=True, default=False,
          help="Classify/Regress require the signature's method_name to match (default false)")
    _flag(parser, "grpc_max_message_size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE,
          help="max gRPC message size in bytes, both directions (default INT32_MAX, as TF Serving)")
    _flag(parser, "grpc_max_concurrent_rpcs", type=int, default=None,
          help="gRPC calls in progress or waiting for a worker thread; beyond, RESOURCE_EXHAUSTED at once "
               "(default 4 x --grpc_max_threads; 0: no limit)")
    _flag(parser, "ssl_config_file",
          help="tensorflow.serving.SSLConfig text proto (server_key, server_cert, custom_ca: PEM text; "
               "client_verify): serve gRPC over TLS, as TF Serving (REST stays plain)")
    _flag(parser, "use_alts_credentials", type=_bool, nargs="?", const=True, default=False,
          help="TF Serving's ALTS transport: not available here, so true is refused (never served in the clear)")
    _flag(parser, "allow_insecure_non_loopback", type=_bool, nargs="?", const=True, default=False,
          help="allow cleartext listeners (gRPC without --ssl_config_file, REST, metrics) on a --host that is not "
               "loopback; only for a private network, e.g. replicas behind Envoy (default false: refused)")
    _flag(parser, "rest_api_max_body_bytes", type=int, default=MAX_BODY_BYTES,
          help="largest REST request body; larger is 413 (default %(default)s)")
    _flag(parser, "rest_api_max_concurrent_requests", type=int, default=MAX_CONCURRENT_REQUESTS,
          help="REST requests in progress at once; beyond, 429 RESOURCE_EXHAUSTED at once (default %(default)s; "
               "0: no limit)")
    _flag(parser, "rest_api_max_connections", type=int, default=MAX_CONNECTIONS,
          help="open REST connections (one thread each); beyond, 503 and close (default %(default)s; 0: no limit)")
    _flag(parser, "drain_seconds", type=float, default=30.0,
          help="on SIGTERM, how long in-flight requests may take to finish (default %(default)s)")
    _flag(parser, "version", action="store_true", help="print the versions and exit")
    for name, kind in INERT_TF_SERVING_FLAGS.items():
        _inert_flag(parser, name, kind)
    cli.add_verbose(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_text())
        return cli.EXIT_OK
    if not (args.model_base_path or args.model_config_file):
        parser.error("give --model_base_path or --model_config_file")
    if not (args.port or args.grpc_socket_path):
        parser.error("give --port or --grpc_socket_path (at least one gRPC listener, as TF Serving)")
    try:
        config.parse_grpc_channel_arguments(args.grpc_channel_arguments)
    except config.ConfigError as exc:
        parser.error(str(exc))
    if args.use_alts_credentials:
        parser.error("--use_alts_credentials: ALTS is not available in this local server; use --ssl_config_file "
                     "for TLS (it never falls back to cleartext when a secure transport was asked for)")
    for name in ("grpc_max_concurrent_rpcs", "rest_api_max_concurrent_requests", "rest_api_max_connections"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name} must be >= 0 (0: no limit), got {getattr(args, name)}")
    if args.rest_api_max_body_bytes < 1:
        parser.error(f"--rest_api_max_body_bytes must be >= 1, got {args.rest_api_max_body_bytes}")
    cli.apply_verbose(args)
    configure_logging()
    for warning in inert_flag_warnings(args):
        log.warning("%s", warning)
    options = ServerOptions(**{k: v for k, v in vars(args).items() if k in ServerOptions.__dataclass_fields__})
    try:
        check_transport_security(options)
    except InsecureListenerError as exc:
        parser.error(str(exc))
    try:
        server = LocalModelServer(options)
    except Exception as exc:  # config errors: one clear line, not a traceback
        print(f"serving: {exc}", file=sys.stderr)
        return cli.EXIT_FAILED
    try:
        return server.serve_until_signalled()
    except StartupError as exc:  # a taken port: one clear line; start() has stopped what it started
        print(f"serving: {exc}", file=sys.stderr)
        return cli.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
