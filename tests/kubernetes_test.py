"""Static checks of the Kubernetes manifests (deploy/kubernetes): rendered, validated, invariants.

No cluster is involved: each overlay is rendered with `kubectl kustomize` (kustomize v5), every
rendered object is validated against the Kubernetes 1.30 and newest bundled schemas offline
(kubernetes-validate, strict: an unknown field fails), and the properties docs/kubernetes.md promises
are asserted on the rendered objects. The policy scanner (checkov) runs in `make check-k8s`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common import contract
# tests/ is not a package: pytest puts it on sys.path, and compose_test is imported once, by name.
import compose_test

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("gpu", "cpu")
SCHEMA_VERSIONS = ("1.30.0", "1.32.0")
NAMESPACE = "movielens"
WORKLOADS = ("Deployment", "Job", "StatefulSet", "DaemonSet")
SERVING_DIR = ROOT / "serving"
ENVOY_CONFIG = SERVING_DIR / "envoy" / "envoy.yaml"


def _render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (it ships kustomize: `kubectl kustomize`)")
    result = subprocess.run([kubectl, "kustomize", str(KUBERNETES_DIR / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, _render(request.param)


@pytest.fixture(scope="module")
def gpu() -> list[dict]:
    return _render("gpu")


@pytest.fixture(scope="module")
def cpu() -> list[dict]:
    return _render("cpu")


@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict:
    return compose_test._resolved(tmp_path_factory.mktemp("compose-home"), compose_test.COMPOSE_FILE)


def _one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def _configmap(objects: list[dict], prefix: str) -> dict:
    # Generated names carry a content hash suffix (except models.config's, see serving/kustomization.yaml).
    found = [o for o in objects if o["kind"] == "ConfigMap"
             and (o["metadata"]["name"] == prefix or o["metadata"]["name"].rsplit("-", 1)[0] == prefix)]
    assert len(found) == 1, f"expected one ConfigMap {prefix}[-hash], got {[o['metadata']['name'] for o in found]}"
    return found[0]


def _pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in WORKLOADS]


def _container(workload: dict, name: str | None = None) -> dict:
    containers = _pod_spec(workload)["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    (container,) = [c for c in containers if c["name"] == name]
    return container


def _matches(selector: dict, labels: dict) -> bool:
    assert not selector.get("matchExpressions"), "the tests only read matchLabels"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


# --- renders and validates --------------------------------------------------------------------


def test_every_overlay_renders_the_whole_stack(rendered) -> None:
    overlay, objects = rendered
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for expected in [("Namespace", NAMESPACE), ("Deployment", "tfserving"), ("Service", "tfserving"),
                     ("PodDisruptionBudget", "tfserving"), ("HorizontalPodAutoscaler", "tfserving"),
                     ("Deployment", "envoy"), ("Service", "envoy"), ("Job", "trainer"),
                     ("Job", "trainer-distributed"), ("Service", "trainer-workers"),
                     ("Deployment", "locust"), ("Deployment", "locust-worker"), ("Service", "locust"),
                     ("PersistentVolumeClaim", "models"), ("NetworkPolicy", "default-deny")]:
        assert expected in kinds, f"{overlay}: {expected} missing"
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(rendered, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    overlay, objects = rendered
    for o in objects:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {o['kind']}/{o['metadata']['name']} against {version}: {e.path}: {e.message}")


def test_the_namespace_enforces_the_restricted_pod_security_standard(gpu: list[dict]) -> None:
    labels = _one(gpu, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- every pod is hardened and bounded ----------------------------------------------------------


def test_every_pod_is_non_root_read_only_unprivileged_and_limited(rendered) -> None:
    overlay, objects = rendered
    for workload in _workloads(objects):
        where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
        pod = _pod_spec(workload)
        assert pod.get("automountServiceAccountToken") is False, where
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, where
        assert int(pod_security.get("runAsUser", 0)) >= 1000, where
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container.get("securityContext", {})
            assert security.get("readOnlyRootFilesystem") is True, f"{where} {container['name']}"
            assert security.get("allowPrivilegeEscalation") is False, f"{where} {container['name']}"
            assert security.get("privileged") in (None, False), f"{where} {container['name']}"
            assert security.get("capabilities", {}).get("drop") == ["ALL"], f"{where} {container['name']}"
            assert not security.get("capabilities", {}).get("add"), f"{where} {container['name']}"
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where} {container['name']}"
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                assert resources.get("limits", {}).get(kind), f"{where} {container['name']}: no {kind} limit"
                assert resources.get("requests", {}).get(kind), f"{where} {container['name']}: no {kind} request"
            # The read-only root filesystem leaves /tmp as the scratch space every program expects.
            assert any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", [])), f"{where}: no /tmp"


def test_long_running_pods_have_probes(rendered) -> None:
    overlay, objects = rendered
    for workload in (o for o in objects if o["kind"] == "Deployment"):
        for container in _pod_spec(workload)["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert container.get(probe), f"{overlay}: {workload['metadata']['name']} has no {probe}"


# --- TF Serving: the same server as compose --------------------------------------------------------


def test_tf_serving_runs_compose_flags_with_the_same_config_files(rendered, compose: dict) -> None:
    overlay, objects = rendered
    container = _container(_one(objects, "Deployment", "tfserving"), "tfserving")
    service = compose["services"]["tfserving"]
    assert container["command"] == service["entrypoint"]
    assert container["args"] == service["command"], "TF Serving's flags differ from docker-compose.yml's"
    image = "tensorflow/serving:2.21.0" + ("-gpu" if overlay == "gpu" else "")
    assert container["image"] == image
    assert service["image"].rsplit(":", 1)[1].startswith(compose_test.DEFAULT_TF_SERVING_VERSION)


def test_tf_serving_config_maps_are_the_files_compose_mounts(rendered) -> None:
    overlay, objects = rendered
    pod = _pod_spec(_one(objects, "Deployment", "tfserving"))
    (mount,) = [m for m in _pod_spec(_one(objects, "Deployment", "tfserving"))["containers"][0]["volumeMounts"]
                if m["mountPath"] == compose_test.CONFIG_MOUNT]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    mounted: dict[str, str] = {}
    for source in volume["projected"]["sources"]:
        configmap = _one(objects, "ConfigMap", source["configMap"]["name"])
        for key, value in configmap["data"].items():
            assert key not in mounted, f"{key} mounted twice"
            mounted[key] = value
    batching = "batching.config" if overlay == "gpu" else "batching.cpu.config"
    expected = {
        "models.config": SERVING_DIR / "models.config",
        "batching.config": SERVING_DIR / batching,
        "monitoring.config": SERVING_DIR / "monitoring.config",
    }
    assert set(mounted) == set(expected)
    for key, path in expected.items():
        assert mounted[key] == path.read_text(encoding="utf-8"), f"{key} differs from {path.relative_to(ROOT)}"
    # Every --*_file flag names a file of that mount.
    args = _container(_one(objects, "Deployment", "tfserving"), "tfserving")["args"]
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{flag}=")]
        assert value.startswith(compose_test.CONFIG_MOUNT + "/") and value.rsplit("/", 1)[1] in mounted


def test_models_config_map_updates_in_place_for_rollouts(gpu: list[dict]) -> None:
    # No hash suffix: `kubectl apply -k` after `python -m export.rollout` changes the mounted file,
    # which TF Serving re-reads (--model_config_file_poll_wait_seconds) without a restart.
    _one(gpu, "ConfigMap", "tfserving-models")
    args = _container(_one(gpu, "Deployment", "tfserving"), "tfserving")["args"]
    assert any(a.startswith("--model_config_file_poll_wait_seconds=") and int(a.split("=")[1]) > 0 for a in args)


def test_only_the_gpu_overlay_requests_a_gpu(gpu: list[dict], cpu: list[dict]) -> None:
    gpu_resources = _container(_one(gpu, "Deployment", "tfserving"), "tfserving")["resources"]
    assert str(gpu_resources["limits"]["nvidia.com/gpu"]) == "1"
    cpu_resources = _container(_one(cpu, "Deployment", "tfserving"), "tfserving")["resources"]
    assert "nvidia.com/gpu" not in json.dumps(cpu_resources)
    for objects in (gpu, cpu):  # one batching file each, no unused one
        assert len([o for o in objects if o["metadata"]["name"].startswith("tfserving-batching-")]) == 1


def test_tf_serving_is_ready_only_when_the_model_is_available(rendered, compose: dict) -> None:
    overlay, objects = rendered
    container = _container(_one(objects, "Deployment", "tfserving"), "tfserving")
    healthcheck = compose["services"]["tfserving"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    # The same bash /dev/tcp request and grep as compose's health check (TF Serving has no
    # grpc.health.v1 and its image no curl): ready = the version status says AVAILABLE.
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["exec"]["command"] == healthcheck[1:], probe
    assert container["livenessProbe"]
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 120


def test_tf_serving_replicas_are_spread_protected_and_autoscaled(rendered) -> None:
    overlay, objects = rendered
    deployment = _one(objects, "Deployment", "tfserving")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    spread = _pod_spec(deployment)["topologySpreadConstraints"]
    assert any(c["topologyKey"] == "kubernetes.io/hostname" and _matches(c["labelSelector"], labels) for c in spread)
    pdb = _one(objects, "PodDisruptionBudget", "tfserving")
    assert _matches(pdb["spec"]["selector"], labels) and pdb["spec"]["minAvailable"] >= 1
    hpa = _one(objects, "HorizontalPodAutoscaler", "tfserving")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tfserving"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    claim = _pod_spec(deployment)["volumes"]
    (models,) = [v for v in claim if v.get("persistentVolumeClaim")]
    assert models["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


# --- the public entry ----------------------------------------------------------------------------------


def _envoy_config() -> dict:
    return yaml.safe_load(ENVOY_CONFIG.read_text(encoding="utf-8"))


def _walk(node, key: str):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def test_envoy_runs_the_one_config_file(rendered, compose: dict) -> None:
    overlay, objects = rendered
    assert _configmap(objects, "envoy-config")["data"] == {"envoy.yaml": ENVOY_CONFIG.read_text(encoding="utf-8")}
    container = _container(_one(objects, "Deployment", "envoy"), "envoy")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/envoy/envoy.yaml"]
    assert mount["subPath"] == "envoy.yaml"
    assert container["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]
    # The compose service mounts the same file at the same place and runs the same image.
    envoy = compose["services"]["envoy"]
    assert any(v["target"] == "/etc/envoy/envoy.yaml" and Path(v["source"]) == ENVOY_CONFIG for v in envoy["volumes"])
    assert container["image"] == envoy["image"]


def test_every_file_the_envoy_config_names_is_mounted(rendered) -> None:
    # TLS certificate and key, the JWKS: whatever absolute paths serving/envoy/envoy.yaml names
    # (the edge config decides them) must be in a volume of the Envoy pod.
    overlay, objects = rendered
    container = _container(_one(objects, "Deployment", "envoy"), "envoy")
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for filename in _walk(_envoy_config(), "filename"):
        if isinstance(filename, str) and filename.startswith("/") and not filename.startswith("/dev/"):
            assert any(filename == m or filename.startswith(m.rstrip("/") + "/") for m in mounts), (
                f"{filename} (named in serving/envoy/envoy.yaml) is not mounted into the Envoy pod: {mounts}")


def test_replicas_are_found_through_a_headless_service_named_as_in_the_envoy_config(rendered) -> None:
    overlay, objects = rendered
    service = _one(objects, "Service", "tfserving")
    assert service["spec"]["clusterIP"] == "None"
    assert {p["port"] for p in service["spec"]["ports"]} == {contract.GRPC_PORT, contract.REST_PORT}
    labels = _one(objects, "Deployment", "tfserving")["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    addresses = {(a["address"], a["port_value"]) for a in _walk(_envoy_config(), "socket_address")
                 if a.get("address") == service["metadata"]["name"]}
    assert addresses == {("tfserving", contract.GRPC_PORT), ("tfserving", contract.REST_PORT)}


# --- network policies ---------------------------------------------------------------------------------


def _policies_for(objects: list[dict], labels: dict) -> list[dict]:
    return [o for o in objects if o["kind"] == "NetworkPolicy" and _matches(o["spec"]["podSelector"], labels)]


def test_default_deny_covers_every_pod_both_ways(rendered) -> None:
    overlay, objects = rendered
    deny = _one(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress") and not deny.get("egress")


def test_only_the_entry_reaches_the_replicas_ports(rendered) -> None:
    overlay, objects = rendered
    tfserving_labels = _one(objects, "Deployment", "tfserving")["spec"]["template"]["metadata"]["labels"]
    envoy_labels = _one(objects, "Deployment", "envoy")["spec"]["template"]["metadata"]["labels"]
    allowed_ports = set()
    for policy in _policies_for(objects, tfserving_labels):
        for rule in policy["spec"].get("ingress", []):
            # Every rule that admits anything names its peers: Envoy's pods in this namespace,
            # never an IP block, another namespace or everyone.
            assert rule.get("from"), f"{policy['metadata']['name']}: an ingress rule open to every source"
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: {peer}"
                assert _matches(peer["podSelector"], envoy_labels), f"{policy['metadata']['name']}: {peer}"
                assert not _matches(peer["podSelector"], tfserving_labels)
            assert rule.get("ports"), "an ingress rule for every port"
            allowed_ports |= {p["port"] for p in rule["ports"]}
    assert allowed_ports == {contract.GRPC_PORT, contract.REST_PORT}
    # Nothing else (Locust, the trainers) may send to them.
    for workload in _workloads(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if labels == envoy_labels or labels == tfserving_labels:
            continue
        for policy in _policies_for(objects, labels):
            for rule in policy["spec"].get("egress", []):
                for peer in rule.get("to", []):
                    assert not (peer.get("podSelector") and _matches(peer["podSelector"], tfserving_labels)), (
                        f"{workload['metadata']['name']} may reach the replicas")


def test_the_entry_listens_to_everyone_on_its_two_ports_only(rendered) -> None:
    overlay, objects = rendered
    envoy_labels = _one(objects, "Deployment", "envoy")["spec"]["template"]["metadata"]["labels"]
    ports = {p["port"] for policy in _policies_for(objects, envoy_labels)
             for rule in policy["spec"].get("ingress", []) for p in rule["ports"]}
    assert ports == {contract.GRPC_PORT, contract.REST_PORT}  # not the admin port


# --- training and load generation ----------------------------------------------------------------------


def test_the_training_job_exports_into_the_shared_model_store(rendered, compose: dict) -> None:
    overlay, objects = rendered
    job = _one(objects, "Job", "trainer")
    command = " ".join(_container(job)["command"])
    assert "python -m train" in command and f"--model-base-path /{contract.MODEL_BASE_PATH}" in command
    claim = _one(objects, "PersistentVolumeClaim", "models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (mount,) = [m for m in _container(job)["volumeMounts"] if m["mountPath"] == "/" + contract.MODELS_DIR]
    (volume,) = [v for v in _pod_spec(job)["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == "models" and not mount.get("readOnly")
    # The same uid the trainer image (and compose) run as.
    assert _pod_spec(job)["securityContext"]["runAsUser"] == int(compose["services"]["trainer"]["user"].split(":")[0])


def test_multi_worker_training_is_an_indexed_job_behind_a_headless_service(rendered) -> None:
    overlay, objects = rendered
    job = _one(objects, "Job", "trainer-distributed")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] >= 2
    assert spec["suspend"] is True  # started on demand
    subdomain = _pod_spec(job)["subdomain"]
    service = _one(objects, "Service", subdomain)
    assert service["spec"]["clusterIP"] == "None"
    assert _matches({"matchLabels": service["spec"]["selector"]}, spec["template"]["metadata"]["labels"])
    command = " ".join(_container(job)["command"])
    for index in range(spec["completions"]):
        assert f'\\"{job["metadata"]["name"]}-{index}.{subdomain}:{contract.TRAINER_WORKER_PORT}\\"' in command
    assert "$JOB_COMPLETION_INDEX" in command and 'if [ "$JOB_COMPLETION_INDEX" = 0 ]' in command


def test_locust_master_and_workers_load_the_public_entry(rendered) -> None:
    overlay, objects = rendered
    master = _container(_one(objects, "Deployment", "locust"))
    worker = _container(_one(objects, "Deployment", "locust-worker"))
    assert "--master" in master["command"] and "--worker" in worker["command"]
    assert "--master-host=locust" in worker["command"]
    for container in (master, worker):
        assert f"--host=envoy:{contract.GRPC_PORT}" in container["command"]
    assert _one(objects, "Service", "locust")["spec"]["type"] == "ClusterIP"  # UI via port-forward only


def test_each_indexed_worker_gets_a_tf_config_the_trainer_accepts(gpu: list[dict]) -> None:
    from train import distribute

    job = _one(gpu, "Job", "trainer-distributed")
    script = _container(job)["command"][2].replace("python -m", "echo python -m")
    roles = []
    for index in range(job["spec"]["completions"]):
        result = subprocess.run(["sh", "-c", script + '; echo "$TF_CONFIG"'], capture_output=True, text=True,
                                env={"JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"}, timeout=10, check=True)
        lines = result.stdout.strip().splitlines()
        task = distribute.task_from_environment({distribute.TF_CONFIG: lines[-1]})
        assert task.index == index
        roles.append((task.is_chief, any(line.startswith("python -m export") for line in lines)))
    # Every worker trains; only the chief (worker 0) exports.
    assert roles == [(True, True)] + [(False, False)] * (len(roles) - 1)
