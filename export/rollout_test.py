"""export/rollout.py: each command is one atomic rewrite of the config the servers poll."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export import rollout
from serving import config as serving_config
from serving.model_manager import VersionPolicy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "serving" / "models.config"
    config.parent.mkdir()
    shutil.copy(ROOT / "serving" / "models.config", config)
    base = tmp_path / "models" / "movielens"
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
    return config, base


def _served(config: Path) -> tuple[VersionPolicy, dict]:
    # What the local server makes of the file (the same rules as TF Serving's).
    (entry,) = serving_config.read_model_server_config(config).model_config_list.config
    return VersionPolicy.from_proto(entry.model_version_policy), dict(entry.version_labels)


def test_the_repository_config_serves_the_latest_version_until_init(setup) -> None:
    config, base = setup
    assert rollout.read_state(config).policy == "latest"
    rollout.init(config, base)
    policy, labels = _served(config)
    assert policy.kind == "specific" and set(policy.versions) == {2} and labels == {"stable": 2}


def test_canary_promote_rollback(setup) -> None:
    config, base = setup
    rollout.init(config, base, 1, wait_seconds=0)
    state = rollout.canary(config, base, wait_seconds=0, progress=lambda m: None)  # the newest: 2
    assert state.versions == {1, 2} and state.labels == {"stable": 1, "canary": 2}
    assert _served(config)[1] == {"stable": 1, "canary": 2}
    state = rollout.promote(config)
    assert state.versions == {1, 2} and state.labels == {"stable": 2, "previous": 1}
    (base / "3").mkdir()
    state = rollout.canary(config, base, 3, wait_seconds=0, progress=lambda m: None)
    assert state.versions == {1, 2, 3} and state.labels == {"stable": 2, "previous": 1, "canary": 3}
    state = rollout.abort(config)
    assert state.versions == {1, 2} and state.labels == {"stable": 2, "previous": 1}
    state = rollout.rollback(config)
    assert state.versions == {1} and state.labels == {"stable": 1}
    policy, labels = _served(config)
    assert set(policy.versions) == {1} and labels == {"stable": 1}
    # Only the config itself: no temporary file left beside it.
    assert sorted(p.name for p in config.parent.iterdir()) == ["models.config"]


def test_canary_writes_the_version_before_the_label(setup) -> None:
    config, base = setup
    rollout.init(config, base, 1, wait_seconds=0)
    seen = []
    rollout.canary(config, base, 2, wait_seconds=0, progress=lambda m: seen.append(rollout.read_state(config)))
    (loading,) = seen
    # TF Serving refuses a label on a version it has not loaded: first the version, then the label.
    assert loading.versions == {1, 2} and loading.labels == {"stable": 1}


@pytest.mark.parametrize("command", ["promote", "abort", "rollback"])
def test_nothing_to_do_is_refused_and_leaves_the_file_alone(setup, command) -> None:
    config, base = setup
    rollout.init(config, base, 1, wait_seconds=0)
    before = config.read_bytes()
    with pytest.raises(rollout.RolloutError):
        getattr(rollout, command)(config)
    assert config.read_bytes() == before


def test_canary_needs_init_and_an_exported_version(setup) -> None:
    config, base = setup
    with pytest.raises(rollout.RolloutError, match="init"):
        rollout.canary(config, base, 2, wait_seconds=0)
    rollout.init(config, base, 1, wait_seconds=0)
    with pytest.raises(rollout.RolloutError, match="not in"):
        rollout.canary(config, base, 7, wait_seconds=0)


def test_the_command_line(setup, capsys) -> None:
    config, base = setup
    common = ["--config", str(config), "--model-base-path", str(base)]
    assert rollout.main(["init", "1", "--wait-seconds", "0", *common]) == 0
    assert rollout.main(["canary", "2", "--wait-seconds", "0", *common]) == 0
    assert rollout.main(["status", *common]) == 0
    assert "labels stable=1, canary=2" in capsys.readouterr().out
    assert rollout.main(["promote", *common]) == 0
    assert rollout.main(["promote", *common]) == 1
    assert capsys.readouterr().err.startswith("error: no canary")


def test_after_write_runs_after_each_rewrite_and_versions_can_live_elsewhere(setup, tmp_path, monkeypatch) -> None:
    config, base = setup
    log = tmp_path / "writes.log"
    monkeypatch.setattr(rollout, "CHECK_ON_DISK", True)
    monkeypatch.setattr(rollout, "AFTER_WRITE", [])
    common = ["--config", str(config), "--model-base-path", str(tmp_path / "elsewhere"), "--skip-version-check",
              "--after-write", f"grep -c stable {config} >> {log}"]
    assert rollout.main(["init", "5", "--wait-seconds", "0", *common]) == 0
    assert rollout.main(["canary", "6", "--wait-seconds", "0", *common]) == 0  # two writes
    assert rollout.main(["canary", "--wait-seconds", "0", *common]) == 1  # which version? not on this machine
    # init (what is loaded elsewhere is unknown: version, then label) and canary: two writes each.
    assert len(log.read_text().split()) == 4
    assert rollout.read_state(config).labels == {"stable": 5, "canary": 6}


def test_init_of_an_older_version_loads_it_before_labelling_it(setup, monkeypatch) -> None:
    config, base = setup
    writes = []
    original = rollout.write_state
    monkeypatch.setattr(rollout, "write_state", lambda path, state, *a, **k: (writes.append(state), original(path, state, *a, **k)))
    rollout.init(config, base, 1, wait_seconds=0)  # `latest` serves 2 now: 1 is not loaded
    assert [(w.versions, w.labels) for w in writes] == [({1}, {}), ({1}, {"stable": 1})]
    writes.clear()
    config.write_text((ROOT / "serving" / "models.config").read_text())
    rollout.init(config, base, wait_seconds=0)  # the newest, loaded now: one write
    assert [(w.versions, w.labels) for w in writes] == [({2}, {"stable": 2})]
