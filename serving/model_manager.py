"""Which versions are loaded: file-system polling, version policy, atomic switch, labels.

This is the local counterpart of TF Serving's ServerCore + file-system storage
path source + availability-preserving policy. Every poll it lists the model's
base path, keeps the integer-named directories (the exporter's dot-prefixed
temp dirs are skipped), picks the aspired versions by the model's version
policy, loads and warms up new ones *before* publishing them, then publishes
a new version map in one reference assignment. A base path that does not
exist skips the poll, so a briefly missing directory never unloads what is
serving; only an existing directory without versions does. Old versions are
unloaded only after an aspired version is available, once their in-flight
requests have finished or ``unload_timeout`` has passed, whichever comes first.
A version that fails to load is logged, shown in GetModelStatus as END with
its error, and not retried until its directory changes; whatever was serving
keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from common.versions import list_versions
from serving.errors import ServingError, invalid_argument, not_found
from serving.servable import LoadedVersion, LoadError

log = logging.getLogger(__name__)


Loader = Callable[[str, int, Path], LoadedVersion]
_State = get_model_status_pb2.ModelVersionStatus


def seconds_until(deadline: float) -> float:
    """Seconds left until a time.monotonic() deadline, never negative."""
    return max(0.0, deadline - time.monotonic())


@dataclass(frozen=True)
class VersionPolicy:
    """FileSystemStoragePathSourceConfig.ServableVersionPolicy."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def describe(self) -> str:
        """For the startup log: "latest 1 version", "all versions", "specific versions 1, 3"."""
        if self.kind == "all":
            return "all versions"
        if self.kind == "specific":
            return "specific versions " + (", ".join(map(str, sorted(self.versions))) or "(none)")
        return f"latest {self.num_versions} version{'s' if self.num_versions != 1 else ''}"

    def aspired(self, present: set[int]) -> set[int]:
        if self.kind == "all":
            return set(present)
        if self.kind == "specific":
            return present & set(self.versions)
        return set(sorted(present)[-self.num_versions :]) if present else set()

    @classmethod
    def from_proto(cls, policy) -> VersionPolicy:
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            return cls("all")
        if kind == "specific":
            return cls("specific", versions=frozenset(policy.specific.versions))
        if kind == "latest":
            return cls("latest", num_versions=max(1, policy.latest.num_versions))
        return cls()


@dataclass(frozen=True)
class ModelSource:
    """One entry of model_config_list, with its base path resolved for this machine."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass
class _VersionState:
    state: int
    error_code: int = 0
    error_message: str = ""
    dir_mtime: float | None = None  # for failed loads: retry only when the directory changes


class ModelManager:
    """The loaded versions of one model."""

    def __init__(
        self,
        source: ModelSource,
        loader: Loader,
        *,
        on_change: Callable[[ModelManager], None] | None = None,
        unload_timeout: float = 60.0,
    ):
        self.source = source
        self._loader = loader
        self._on_change = on_change
        self._unload_timeout = unload_timeout
        # Replaced, never mutated, and only under _serving_lock: a request looks a
        # version up and counts itself in flight under the same lock, so a version
        # retired by _unload can never pick up a request after its in-flight check.
        self._available: dict[int, LoadedVersion] = {}
        self._serving_lock = threading.Lock()
        self._states: dict[int, _VersionState] = {}
        self._states_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._last_warning: str | None = None
        self._retired = False  # removed from the config: never polled (so never loads) again

    @property
    def name(self) -> str:
        return self.source.name

    def available_versions(self) -> list[int]:
        return sorted(self._available)

    # -- request side ------------------------------------------------------------

    def _request_debug_string(self, version: int | None) -> str:
        # ServableRequest::DebugString() in TF Serving's NOT_FOUND message.
        return f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"

    def resolve_version(self, spec: model_pb2.ModelSpec) -> int | None:
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            return spec.version.value
        if choice == "version_label":
            if spec.version_label not in self.source.labels:
                raise invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            return self.source.labels[spec.version_label]
        return None

    def _lookup(self, version: int | None) -> LoadedVersion:
        available = self._available
        servable = available.get(max(available, default=None) if version is None else version)
        if servable is None:
            raise not_found(f"Servable not found for request: {self._request_debug_string(version)}")
        return servable

    @contextlib.contextmanager
    def acquire(self, spec: model_pb2.ModelSpec) -> Iterator[LoadedVersion]:
        version = self.resolve_version(spec)
        with self._serving_lock:
            servable = self._lookup(version)
            servable.enter()
        try:
            yield servable
        finally:
            servable.leave()

    def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        """get_model_status_impl.cc: one version, or every version the monitor has seen.

        Like TF Serving, only ``version`` narrows the answer: a ``version_label``
        is ignored and every version is reported.
        """
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._states_lock:
            states = dict(self._states)
        if spec.HasField("version"):
            versions = [spec.version.value]
        else:
            versions = sorted(states, reverse=True)
            if not versions:
                raise not_found(f"Could not find any versions of model {self.name}")
        for version in versions:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {self.name}")
            state = states[version]
            entry = response.model_version_status.add(version=version, state=state.state)
            entry.status.error_code = state.error_code
            entry.status.error_message = state.error_message
        return response

    # -- polling side --------------------------------------------------------------

    def _set_state(self, version: int, state: int, **kwargs) -> None:
        with self._states_lock:
            self._states[version] = _VersionState(state, **kwargs)

    def _warn_once(self, message: str | None) -> None:
        """Logs a poll problem when it first appears, not on every poll; None clears it."""
        if message is not None and message != self._last_warning:
            log.warning("%s", message)
        self._last_warning = message

    def poll(self) -> None:
        """One pass over the base path: load what is aspired and new, then unload what is not."""
        with self._poll_lock:
            if self._retired:
                return
            base = self.source.base_path
            present = list_versions(base)
            # Checked after listing, so a directory that vanished mid-listing counts as missing too.
            if not present and not base.is_dir():
                self._warn_once(f"model {self.name}: base path {base} does not exist; "
                                "nothing is loaded or unloaded until it does")
                return
            aspired = self.source.policy.aspired(set(present))
            self._warn_once(None if aspired else f"model {self.name}: no versions to serve under {base} "
                            f"(found {sorted(present)}, policy {self.source.policy})")
            for version in sorted(aspired - set(self._available)):
                self._maybe_load(version, present[version])
            if aspired & set(self._available) or not aspired:
                for version in sorted(set(self._available) - aspired):
                    self._unload(version)

    def _maybe_load(self, version: int, path: Path) -> None:
        with self._states_lock:
            previous = self._states.get(version)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if previous is not None and previous.error_code and previous.dir_mtime == mtime:
            return  # failed before and unchanged since: do not spin on a broken export
        self._set_state(version, _State.LOADING)
        log.info("Loading servable: {name: %s version: %d} from %s", self.name, version, path)
        try:
            servable = self._loader(self.name, version, path)
        except (LoadError, ServingError) as exc:
            code = exc.code
            self._fail(version, code, str(exc if isinstance(exc, LoadError) else exc.message), mtime)
            return
        except Exception as exc:  # any loader crash is a failed version, never a dead poller
            self._fail(version, grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}", mtime)
            return
        with self._serving_lock:
            self._available = {**self._available, version: servable}  # the switch: new requests see it
        self._set_state(version, _State.AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}", self.name, version)
        if self._on_change:
            self._on_change(self)

    def _fail(self, version: int, code: grpc.StatusCode, message: str, mtime: float) -> None:
        log.error("Loading servable: {name: %s version: %d} failed: %s", self.name, version, message)
        self._set_state(version, _State.END, error_code=code.value[0], error_message=message, dir_mtime=mtime)
        if self._on_change:
            self._on_change(self)

    def _unload(self, version: int, deadline: float | None = None) -> None:
        """Retires a version, waits for its requests until ``deadline`` (default: unload_timeout), releases it."""
        if deadline is None:
            deadline = time.monotonic() + self._unload_timeout
        with self._serving_lock:
            servable = self._available.get(version)
            if servable is None:
                return
            self._available = {v: s for v, s in self._available.items() if v != version}
        self._set_state(version, _State.UNLOADING)
        if self._on_change:
            self._on_change(self)
        if not servable.wait_idle(seconds_until(deadline)):
            log.warning("model %s version %d: in-flight requests still running at the unload deadline; "
                        "unloading anyway", self.name, version)
        servable.release(seconds_until(deadline))
        self._set_state(version, _State.END)
        log.info("Done unloading servable version {name: %s version: %d}", self.name, version)

    def unload_all(self, deadline: float, *, retire: bool = False) -> None:
        """Unloads every version, waiting for requests and a running poll only until ``deadline``.

        ``retire``: the model left the config, so no later poll may load it again.
        """
        if not self._poll_lock.acquire(timeout=seconds_until(deadline)):
            log.warning("model %s: a version is still loading at the shutdown deadline; not unloading", self.name)
            return
        try:
            self._retired = self._retired or retire
            for version in sorted(self._available):
                self._unload(version, deadline)
        finally:
            self._poll_lock.release()


class ServerCore:
    """All configured models; the front ends' single entry point for lookups."""

    def __init__(self, managers: Mapping[str, ModelManager], poll_seconds: float):
        # Replaced, never mutated, so request threads can read it without a lock.
        self.managers = dict(managers)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reconfigure_lock = threading.Lock()

    def manager(self, spec: model_pb2.ModelSpec) -> ModelManager:
        manager = self.managers.get(spec.name)
        if manager is None:
            choice = spec.WhichOneof("version_choice")
            if choice == "version_label":
                # TF Serving looks the label up per model; an unknown model has no labels.
                raise invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            what = f"Specific({spec.name}, {spec.version.value})" if choice == "version" else f"Latest({spec.name})"
            raise not_found(f"Servable not found for request: {what}")
        return manager

    @contextlib.contextmanager
    def acquire(self, spec: model_pb2.ModelSpec) -> Iterator[LoadedVersion]:
        with self.manager(spec).acquire(spec) as servable:
            yield servable

    def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        manager = self.managers.get(spec.name)
        if manager is None:
            if spec.HasField("version"):
                raise not_found(f"Could not find version {spec.version.value} of model {spec.name}")
            raise not_found(f"Could not find any versions of model {spec.name}")
        return manager.status(spec)

    def any_available(self) -> bool:
        return any(m.available_versions() for m in self.managers.values())

    def reconfigure(
        self, sources: Sequence[ModelSource], new_manager: Callable[[ModelSource], ModelManager],
        unload_timeout: float = 60.0,
    ) -> None:
        """ServerCore::ReloadConfig: serve exactly ``sources`` from now on.

        A new model loads before it is published (its first requests find it
        ready); a model that stays keeps its loaded versions and picks up a new
        base path, policy or labels on this poll; a model that left the config
        is unpublished, then unloaded once its requests finish.
        """
        with self._reconfigure_lock:
            current = self.managers
            wanted = {source.name: source for source in sources}
            added = {name: new_manager(source) for name, source in wanted.items() if name not in current}
            for manager in added.values():
                log.info("Adding/updating models: %s (base path %s)", manager.name, manager.source.base_path)
                manager.poll()
            kept = {}
            for name, manager in current.items():
                if name in wanted:
                    if manager.source != wanted[name]:
                        log.info("Updating model %s: %s", name, wanted[name])
                        manager.source = wanted[name]
                        manager.poll()
                    kept[name] = manager
            self.managers = {**kept, **added}
            for name in sorted(current.keys() - wanted.keys()):
                log.info("Removing model %s: no longer in the model config", name)
                current[name].unload_all(time.monotonic() + unload_timeout, retire=True)

    def poll_all(self) -> None:
        for manager in self.managers.values():
            try:
                manager.poll()
            except Exception:  # the poller must survive anything a file system can do
                log.exception("polling model %s failed", manager.name)

    def start(self) -> None:
        """First poll synchronously (so startup loads before serving), then poll in the background."""
        self.poll_all()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
            self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.poll_all()

    def stop(self, timeout: float = 60.0) -> None:
        """Stops polling and unloads everything, waiting for running work at most ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=seconds_until(deadline))
        for manager in self.managers.values():
            manager.unload_all(deadline)
