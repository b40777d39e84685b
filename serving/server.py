"""Assembles the local model server from its options and runs it until SIGTERM/SIGINT.

Kept apart from the CLI so the order of startup and shutdown lives in one
place: load the first versions synchronously, then open the ports, then report
SERVING on grpc.health.v1; on a signal report NOT_SERVING, stop accepting,
let in-flight gRPC and REST requests finish, unload, exit 0 -- all of the
shutdown within one --drain_seconds deadline. That ordering is what makes a
rolling restart lose no requests. A port that cannot be opened stops whatever
had started and fails with a StartupError naming the port. With
--model_config_file_poll_wait_seconds the config file is re-read on that period
and the served models follow it (TF Serving's PollFilesystemAndReloadConfig).

Transport security: --ssl_config_file (a tensorflow.serving.SSLConfig) serves
gRPC over TLS, with client certificates required when it says client_verify;
REST stays plain, as in TF Serving. A file that cannot be read or used stops the
server before it listens. Cleartext is for loopback: a TCP listener in the clear
(gRPC without --ssl_config_file, REST, metrics) on any other address is refused
at startup unless --allow_insecure_non_loopback says the network is private
(replicas behind Envoy in compose or Kubernetes).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tensorflow_serving.config import model_server_config_pb2

from common.contract import MODEL_NAME, MODELS_DIR, PROMETHEUS_PATH
from serving import config, example_apis
from serving.batching import BatchingOptions
from serving.grpc_service import HealthReporter, build_grpc_server, server_credentials
from serving.metrics import ServingMetrics, start_metrics_server
from serving.model_manager import ModelManager, ModelSource, ServerCore, VersionPolicy, seconds_until
from serving.rest import MAX_BODY_BYTES, MAX_CONCURRENT_REQUESTS, MAX_CONNECTIONS, RestLimits, start_rest_server
from serving.servable import load_version

log = logging.getLogger("serving")

# TF Serving sets the gRPC max message size to INT32_MAX (server.cc).
DEFAULT_MAX_MESSAGE_SIZE = 2**31 - 1


@dataclass
class ServerOptions:
    model_name: str = MODEL_NAME
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    host: str = "127.0.0.1"
    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 8501
    rest_api_timeout_in_ms: int = 30000
    monitoring_port: int = 0
    monitoring_config_file: str | None = None
    file_system_poll_wait_seconds: float = 1.0
    saved_model_tags: str = "serve"
    enable_signature_method_name_check: bool = False
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    enable_model_warmup: bool = True
    grpc_max_threads: int = 16
    grpc_max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    grpc_channel_arguments: str = ""
    # RPCs in progress or waiting for a thread; beyond, RESOURCE_EXHAUSTED at once. None: 4 x grpc_max_threads.
    grpc_max_concurrent_rpcs: int | None = None
    rest_api_max_body_bytes: int = MAX_BODY_BYTES
    rest_api_max_concurrent_requests: int = MAX_CONCURRENT_REQUESTS
    rest_api_max_connections: int = MAX_CONNECTIONS
    ssl_config_file: str | None = None
    allow_insecure_non_loopback: bool = False
    drain_seconds: float = 30.0

    @property
    def max_concurrent_rpcs(self) -> int:
        """--grpc_max_concurrent_rpcs, default 4 x --grpc_max_threads (0: no limit)."""
        if self.grpc_max_concurrent_rpcs is None:
            return 4 * self.grpc_max_threads
        return self.grpc_max_concurrent_rpcs


class StartupError(Exception):
    """The server could not start (a port is taken); everything it had started is stopped."""


class InsecureListenerError(ValueError):
    """A listener would serve cleartext on a non-loopback address without --allow_insecure_non_loopback."""


ALLOW_INSECURE_FLAG = "--allow_insecure_non_loopback"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, or a name that resolves to loopback addresses only (localhost).

    0.0.0.0 and :: (every interface) are not loopback; neither is a name that
    cannot be resolved (the bind would fail anyway).
    """
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(bare, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def cleartext_listeners(options: ServerOptions) -> list[str]:
    """The TCP listeners that would carry cleartext on a non-loopback address ("gRPC 0.0.0.0:8500", ...)."""
    if is_loopback(options.host):
        return []
    plain = []
    if options.port and not options.ssl_config_file:
        plain.append(f"gRPC {options.host}:{options.port} (no --ssl_config_file)")
    if options.rest_api_port:
        plain.append(f"REST {options.host}:{options.rest_api_port} (REST has no TLS, as in TF Serving)")
    if options.monitoring_port:
        plain.append(f"metrics {options.host}:{options.monitoring_port}")
    return plain


def check_transport_security(options: ServerOptions) -> None:
    """Refuses cleartext beyond loopback unless --allow_insecure_non_loopback; raises InsecureListenerError."""
    plain = cleartext_listeners(options)
    if not plain or options.allow_insecure_non_loopback:
        if plain:
            log.warning("serving cleartext on a non-loopback address (%s) because of %s: keep this network "
                        "private (replicas behind Envoy)", "; ".join(plain), ALLOW_INSECURE_FLAG)
        return
    raise InsecureListenerError(
        f"refusing to serve cleartext on {options.host}, which is not a loopback address: {'; '.join(plain)}. "
        f"Bind --host 127.0.0.1, give gRPC TLS with --ssl_config_file and turn REST off with --rest_api_port=0, "
        f"or pass {ALLOW_INSECURE_FLAG} if only a private network (e.g. Envoy in compose or Kubernetes) can reach it"
    )


def resolve_base_path(raw: str) -> Path:
    """Relative paths are relative to the working directory, as in TF Serving.

    models.config names container paths (/models/movielens). When such a path
    does not exist on this machine, the same layout under the working
    directory's models/ (where ``python -m export`` writes) is used instead, so
    one config file serves both.
    """
    path = Path(raw)
    if not path.is_absolute():
        return (Path.cwd() / path).resolve()
    if path.exists():
        return path
    parts = path.parts
    if len(parts) >= 3 and parts[1] == MODELS_DIR:
        local = Path.cwd().joinpath(MODELS_DIR, *parts[2:])
        log.info("base_path %s does not exist here; using %s", path, local)
        return local
    return path


def model_sources(options: ServerOptions) -> list[ModelSource]:
    if options.model_config_file:
        return config_sources(options, config.read_model_server_config(options.model_config_file))
    return [ModelSource(name=options.model_name, base_path=Path(options.model_base_path).resolve())]


def config_sources(options: ServerOptions, parsed: model_server_config_pb2.ModelServerConfig) -> list[ModelSource]:
    """The models of a parsed ModelServerConfig, base paths resolved for this machine."""
    entries = list(parsed.model_config_list.config)
    sources = []
    for entry in entries:
        override = options.model_base_path and (len(entries) == 1 or entry.name == options.model_name)
        base = Path(options.model_base_path).resolve() if override else resolve_base_path(entry.base_path)
        sources.append(
            ModelSource(
                name=entry.name,
                base_path=base,
                policy=VersionPolicy.from_proto(entry.model_version_policy),
                labels=dict(entry.version_labels),
            )
        )
    return sources


def batching_options(options: ServerOptions) -> BatchingOptions | None:
    if not options.enable_batching:
        return None
    if options.batching_parameters_file:
        return BatchingOptions.from_proto(config.read_batching_parameters(options.batching_parameters_file))
    return BatchingOptions(thread_pool_name="model_server_batch_threads")


def rest_metrics_path(options: ServerOptions) -> str | None:
    if not options.monitoring_config_file:
        return None
    return config.prometheus_path(config.read_monitoring_config(options.monitoring_config_file))


class LocalModelServer:
    def __init__(self, options: ServerOptions):
        self.options = options
        check_transport_security(options)
        # Read before anything loads: a TLS config that cannot be used stops the server, never cleartext.
        self._credentials = (
            server_credentials(config.read_ssl_config(options.ssl_config_file)) if options.ssl_config_file else None
        )
        self.metrics = ServingMetrics()
        self.health = HealthReporter()
        self._stopped = threading.Event()
        batching = batching_options(options)
        self._rest_metrics_path = rest_metrics_path(options)

        tags = [tag for tag in options.saved_model_tags.split(",") if tag]

        def loader(name: str, version: int, path: Path):
            def on_batch(signature: str, padded: int) -> None:
                self.metrics.batch_size.labels(name, signature).observe(padded)

            def on_run(signature: str, cpu_seconds: float) -> None:
                self.metrics.observe_graph_run(name, signature, cpu_seconds)

            return load_version(
                name, version, path, batching=batching, warmup=options.enable_model_warmup, on_batch=on_batch,
                on_run=on_run, tags=tags,
            )

        self._loader = loader
        example_apis.set_method_name_check(options.enable_signature_method_name_check)
        self._channel_arguments = config.parse_grpc_channel_arguments(options.grpc_channel_arguments)
        self._config_text = _read_text(options.model_config_file) if options.model_config_file else None
        managers = {source.name: self._new_manager(source) for source in model_sources(options)}
        self.core = ServerCore(managers, options.file_system_poll_wait_seconds)
        self.grpc_server = None
        self.rest_server = None
        self.metrics_server = None
        self._config_thread: threading.Thread | None = None

    def _new_manager(self, source: ModelSource) -> ModelManager:
        labels = ", ".join(f"{label}={version}" for label, version in sorted(dict(source.labels).items()))
        log.info("model %s: base path %s, serving the %s%s", source.name, source.base_path,
                 source.policy.describe(), f", labels {labels}" if labels else "")
        return ModelManager(source, self._loader, on_change=self._on_versions_changed)

    def reload_config_if_changed(self) -> bool:
        """Server::PollFilesystemAndReloadConfig: re-reads --model_config_file and serves what it says now.

        A file that cannot be read or parsed is logged and changes nothing: the
        models being served stay served. Returns whether a new config was applied.
        """
        path = self.options.model_config_file
        try:
            text = _read_text(path)
        except OSError as exc:
            log.error("Failed to read ModelServerConfig file: %s: %s", path, exc.strerror or exc)
            return False
        if text == self._config_text:
            return False
        try:
            parsed = config.read_model_server_config(path)
        except config.ConfigError as exc:
            log.error("Failed to read ModelServerConfig file: %s", exc)
            return False
        self._config_text = text
        self.apply_config(parsed)
        return True

    def apply_config(self, parsed: model_server_config_pb2.ModelServerConfig, where: str = "") -> None:
        """ServerCore::ReloadConfig, from the polled file or ModelService/HandleReloadConfigRequest."""
        if where:  # from a request: the same rules as a config file
            config.check_model_server_config(parsed, where)
        self.core.reconfigure(config_sources(self.options, parsed), self._new_manager)
        for manager in self.core.managers.values():
            self._on_versions_changed(manager)
        if not self._stopped.is_set():
            self.health.set_serving(self.core.any_available())

    def _config_poll_loop(self) -> None:
        while not self._stopped.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                self.reload_config_if_changed()
            except Exception:  # the config poller must outlive any one bad reload
                log.exception("reloading %s failed", self.options.model_config_file)

    def _on_versions_changed(self, manager: ModelManager) -> None:
        self.metrics.set_versions(manager.name, manager.available_versions())
        if not self._stopped.is_set():
            self.health.set_serving(self.core.any_available())

    def start(self) -> None:
        """Loads, then opens the ports; on failure stops whatever had started, then raises."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        options = self.options
        self.core.start()
        if not self.core.any_available():
            log.warning("no model version is loaded yet; health stays NOT_SERVING until one loads")
        self.grpc_server, grpc_port = _listen("gRPC", options.host, options.port, lambda: build_grpc_server(
            self.core, self.metrics, self.health, host=options.host, port=options.port,
            max_workers=options.grpc_max_threads, max_message_size=options.grpc_max_message_size,
            socket_path=options.grpc_socket_path, channel_arguments=self._channel_arguments,
            reload_config=lambda parsed: self.apply_config(parsed, where="ReloadConfigRequest.config"),
            credentials=self._credentials, max_concurrent_rpcs=options.max_concurrent_rpcs,
        ))
        self.grpc_server.start()
        if self._credentials is not None:
            log.info("gRPC uses SSL credentials from %s", options.ssl_config_file)
        if options.port:
            log.info("Running gRPC ModelServer at: %s:%d ...", options.host, grpc_port)
        if options.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)
        if options.rest_api_port:
            self.rest_server = _listen("REST", options.host, options.rest_api_port, lambda: start_rest_server(
                self.core, self.metrics, options.host, options.rest_api_port, self._rest_metrics_path,
                timeout=options.rest_api_timeout_in_ms / 1000 if options.rest_api_timeout_in_ms > 0 else None,
                limits=RestLimits(
                    max_body_bytes=options.rest_api_max_body_bytes,
                    max_concurrent_requests=options.rest_api_max_concurrent_requests,
                    max_connections=options.rest_api_max_connections,
                ),
            ))
            log.info("Exporting HTTP/REST API at: %s:%d ...", options.host, options.rest_api_port)
        if options.monitoring_port:
            self.metrics_server = _listen("metrics", options.host, options.monitoring_port, lambda: (
                start_metrics_server(self.metrics, options.host, options.monitoring_port, PROMETHEUS_PATH)
            ))
            log.info("Prometheus metrics at: http://%s:%d%s", options.host, options.monitoring_port, PROMETHEUS_PATH)
        for manager in self.core.managers.values():
            self._on_versions_changed(manager)
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(target=self._config_poll_loop, name="config-poller", daemon=True)
            self._config_thread.start()

    def stop(self) -> None:
        """Drain: refuse new work, finish what is running, then unload, all within --drain_seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        deadline = time.monotonic() + self.options.drain_seconds
        log.info("Shutting down: draining in-flight requests (up to %.0fs)", self.options.drain_seconds)
        self.health.shutdown()
        if self.rest_server is not None:
            self.rest_server.stop_accepting()  # new requests get 503; running handlers continue
        # stop(grace) rejects new RPCs at once and lets running ones finish until the
        # deadline; it returns at once, so gRPC and REST drain side by side.
        grpc_stopped = self.grpc_server.stop(seconds_until(deadline)) if self.grpc_server is not None else None
        if self.rest_server is not None:
            if not self.rest_server.drain(seconds_until(deadline)):
                log.warning("REST requests still running at the drain deadline")
            self.rest_server.server_close()
        if grpc_stopped is not None:
            grpc_stopped.wait(seconds_until(deadline))
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.core.stop(seconds_until(deadline))
        log.info("Server stopped")

    def serve_until_signalled(self) -> int:
        done = threading.Event()

        def handle(signum, _frame):
            log.info("Received %s", signal.Signals(signum).name)
            done.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        self.start()
        while not done.wait(1.0):
            pass
        self.stop()
        return 0


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def _listen(what: str, host: str, port: int, open_port):
    """Opens one port; a taken port becomes a StartupError naming it instead of a traceback."""
    try:
        return open_port()
    except OSError as exc:
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}") from exc


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("SERVING_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
