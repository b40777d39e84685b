"""``python -m serving``: the local model server's command line.

Flag names follow ``tensorflow_model_server`` (``--port``, ``--rest_api_port``,
``--model_name``, ``--model_base_path``, ``--model_config_file``,
``--file_system_poll_wait_seconds``, ``--enable_batching``,
``--batching_parameters_file``, ``--monitoring_config_file``,
``--enable_model_warmup``, ``--grpc_max_threads``), so a command line copied
from the container works here; each also accepts the dashed spelling
(``--rest-api-port``). Flags TF Serving does not have (``--host``,
``--monitoring-port``, ``--grpc_max_message_size``, ``--drain_seconds``) exist
because a local process, unlike a container, shares the host's network.

Exit codes: 0 after a clean stop (SIGTERM or Ctrl-C is how a server is asked to
stop, so a drained shutdown is success); 1 when it cannot start (a bad config
file, a taken port); 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import sys

from common import cli
from common.contract import GRPC_PORT, MODEL_NAME, MONITORING_PORT, REST_PORT
from serving.server import (
    DEFAULT_MAX_MESSAGE_SIZE,
    LocalModelServer,
    ServerOptions,
    StartupError,
    configure_logging,
)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Local model server speaking the TensorFlow Serving gRPC and REST APIs.",
        allow_abbrev=False,
    )
    _flag(parser, "port", type=int, default=GRPC_PORT, help="gRPC port (default %(default)s)")
    _flag(parser, "rest_api_port", type=int, default=REST_PORT, help="REST port; 0 disables (default %(default)s)")
    _flag(parser, "host", default="127.0.0.1", help="address to bind (default %(default)s; 0.0.0.0 for all)")
    _flag(parser, "model_name", default=MODEL_NAME, help="model name with --model_base_path (default %(default)s)")
    _flag(parser, "model_base_path", help="directory holding integer version subdirectories")
    _flag(parser, "model_config_file", help="ModelServerConfig text proto (e.g. serving/models.config)")
    _flag(parser, "file_system_poll_wait_seconds", type=float, default=1.0,
          help="seconds between version polls; 0 polls once at startup (default %(default)s)")
    _flag(parser, "enable_batching", type=_bool, nargs="?", const=True, default=False,
          help="batch concurrent Predict calls (default false)")
    _flag(parser, "batching_parameters_file", help="BatchingParameters text proto (e.g. serving/batching.config)")
    _flag(parser, "enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
          help="replay assets.extra/tf_serving_warmup_requests before serving a version (default true)")
    _flag(parser, "monitoring_config_file",
          help="MonitoringConfig text proto; when Prometheus is enabled, metrics are also served on the REST port")
    _flag(parser, "monitoring_port", type=int, default=MONITORING_PORT,
          help="port for Prometheus metrics; 0 disables (default %(default)s)")
    _flag(parser, "grpc_max_threads", type=int, default=16, help="gRPC worker threads (default %(default)s)")
    _flag(parser, "grpc_max_message_size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE,
          help="max gRPC message size in bytes, both directions (default INT32_MAX, as TF Serving)")
    _flag(parser, "drain_seconds", type=float, default=30.0,
          help="on SIGTERM, how long in-flight requests may take to finish (default %(default)s)")
    cli.add_verbose(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.model_base_path or args.model_config_file):
        parser.error("give --model_base_path or --model_config_file")
    cli.apply_verbose(args)
    configure_logging()
    options = ServerOptions(**{k: v for k, v in vars(args).items() if k in ServerOptions.__dataclass_fields__})
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
