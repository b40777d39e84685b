"""Version management: polling, policies, atomic switch with in-flight requests, broken versions, lookups."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from common import contract as c
from serving.errors import ServingError
from serving.model_manager import ModelManager, ModelSource, ServerCore, VersionPolicy
from serving.servable import load_version

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def _spec(name: str = c.MODEL_NAME, version: int | None = None, label: str | None = None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


def _loader(name, version, path):
    return load_version(name, version, path)


@pytest.fixture()
def base(tmp_path: Path, exported_model: Path) -> Path:
    """A private base path holding a copy of the exported version 1."""
    source = next(p for p in exported_model.iterdir() if p.name.isdigit())
    target = tmp_path / c.MODEL_NAME
    target.mkdir()
    shutil.copytree(source, target / "1")
    return target


def _add_version(base: Path, version: int) -> None:
    # Same atomic move the exporter does: copy to a dot-dir, rename into place.
    tmp = base / f".tmp-{version}"
    shutil.copytree(base / "1", tmp)
    tmp.rename(base / str(version))


def _states(manager: ModelManager) -> dict[int, tuple[int, int]]:
    return {s.version: (s.state, s.status.error_code) for s in manager.status(_spec()).model_version_status}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), {5}),
        (VersionPolicy("latest", num_versions=2), {3, 5}),
        (VersionPolicy("all"), {1, 3, 5}),
        (VersionPolicy("specific", versions=frozenset({1, 4})), {1}),
    ],
)
def test_version_policies(policy: VersionPolicy, expected: set[int]):
    assert policy.aspired({1, 3, 5}) == expected


def test_new_version_takes_traffic_while_in_flight_requests_finish_on_the_old(base: Path):
    manager = ModelManager(ModelSource(c.MODEL_NAME, base), _loader)
    manager.poll()
    assert manager.available_versions() == [1]

    holding = threading.Event()
    release = threading.Event()
    answered_by: list[int] = []

    def slow_request():
        with manager.acquire(_spec()) as servable:
            holding.set()
            release.wait(30)
            answered_by.append(servable.version)

    request = threading.Thread(target=slow_request)
    request.start()
    assert holding.wait(10)

    _add_version(base, 2)
    poller = threading.Thread(target=manager.poll)
    poller.start()
    deadline = time.monotonic() + 60
    while 2 not in manager.available_versions() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The switch happened while version 1 still has a request in flight.
    with manager.acquire(_spec()) as servable:
        assert servable.version == 2
    time.sleep(0.2)
    assert poller.is_alive(), "version 1 was unloaded under a running request"
    assert _states(manager)[1][0] != END

    release.set()
    request.join(10)
    poller.join(30)
    assert answered_by == [1]
    assert manager.available_versions() == [2]
    assert _states(manager) == {2: (AVAILABLE, 0), 1: (END, 0)}


def test_broken_version_is_reported_and_the_current_one_keeps_serving(base: Path):
    calls: list[int] = []

    def counting_loader(name, version, path):
        calls.append(version)
        return load_version(name, version, path)

    manager = ModelManager(ModelSource(c.MODEL_NAME, base), counting_loader)
    manager.poll()
    broken = base / ".tmp-2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a protobuf")
    broken.rename(base / "2")
    manager.poll()
    manager.poll()  # an unchanged broken version is not retried every poll

    assert calls == [1, 2]
    assert manager.available_versions() == [1]
    with manager.acquire(_spec()) as servable:
        assert servable.version == 1
    states = _states(manager)
    assert states[1] == (AVAILABLE, 0)
    assert states[2][0] == END and states[2][1] != 0
    status = manager.status(_spec(version=2)).model_version_status[0].status
    assert "saved_model.pb" in status.error_message


def test_missing_base_path_keeps_serving_and_an_empty_one_unloads(base: Path, caplog):
    manager = ModelManager(ModelSource(c.MODEL_NAME, base), _loader)
    manager.poll()
    assert manager.available_versions() == [1]

    moved = base.with_name("moved-away")
    base.rename(moved)  # e.g. a volume remounted, or a directory swapped in two renames
    with caplog.at_level(logging.WARNING, logger="serving.model_manager"):
        manager.poll()
        manager.poll()
    assert manager.available_versions() == [1], "a missing base path must not unload what is serving"
    missing = [r for r in caplog.records if "does not exist" in r.getMessage()]
    assert len(missing) == 1, "the missing base path is logged once, not on every poll"
    with manager.acquire(_spec()) as servable:
        assert servable.version == 1

    moved.rename(base)
    manager.poll()
    assert manager.available_versions() == [1]

    shutil.rmtree(base / "1")  # the directory exists and holds no versions: that is an instruction
    manager.poll()
    assert manager.available_versions() == []
    assert _states(manager) == {1: (END, 0)}


def test_lookup_errors_match_tf_serving(base: Path):
    source = ModelSource(c.MODEL_NAME, base, labels={"stable": 1, "canary": 9})
    core = ServerCore({c.MODEL_NAME: ModelManager(source, _loader)}, poll_seconds=0)
    core.start()
    try:
        with core.acquire(_spec(label="stable")) as servable:
            assert servable.version == 1
        cases = [
            (_spec(version=9), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(movielens, 9)"),
            (_spec(label="canary"), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(movielens, 9)"),
            (_spec(label="nope"), grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope"),
            (_spec("other"), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(other)"),
        ]
        for spec, code, message in cases:
            with pytest.raises(ServingError) as err:
                with core.acquire(spec):
                    pass
            assert (err.value.code, err.value.message) == (code, message)
        with pytest.raises(ServingError) as err:
            core.status(_spec("other"))
        assert err.value.message == "Could not find any versions of model other"
        with pytest.raises(ServingError) as err:
            core.status(_spec(version=4))
        assert (err.value.code, err.value.message) == (grpc.StatusCode.NOT_FOUND, "Could not find version 4 of model movielens")
        # get_model_status_impl.cc ignores version_label: every version, even for an unknown label.
        for label in ("canary", "nope"):
            statuses = core.status(_spec(label=label)).model_version_status
            assert [(s.version, s.state) for s in statuses] == [(1, AVAILABLE)]
    finally:
        core.stop()


def test_version_policy_reads_as_words_in_the_startup_log():
    from serving.model_manager import VersionPolicy

    assert VersionPolicy().describe() == "latest 1 version"
    assert VersionPolicy("latest", num_versions=2).describe() == "latest 2 versions"
    assert VersionPolicy("all").describe() == "all versions"
    assert VersionPolicy("specific", versions=frozenset({3, 1})).describe() == "specific versions 1, 3"
