"""A guarded, labelled rollout under load, with the local server (`make test-rollout`).

One `python -m serving` polling a labelled model config (--model_config_file_poll_wait_seconds,
as compose's TF Serving), version 1 pinned as `stable`, 16 Locust users for the whole run:

1. a deliberately bad run (one epoch per stage at learning rates that diverge, no item-to-item model) is exported:
   refused, exit 1, its figures named; nothing is written and clients keep version 1;
2. a good run is exported: version 2 is written but not served (the config lists only 1);
3. `python -m export.rollout canary` makes it the canary: `--label canary` answers with 2,
   `stable` with 1;
4. `promote`: stable answers with 2; 5. `rollback`: stable answers with 1 again;

and Locust counts 0 failed requests. The figures go to reports/rollout/rollout.json. Runs take
the small synthetic fixture (seconds to train); the whole scenario about 2 minutes (steps done in 37-42 s of the 75 s load here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from client import RecommenderClient, errors
from common import contract as c
from export import rollout
from loadtest import runner
from loadtest.runner import LoadTest, run_load_test

pytestmark = pytest.mark.skipif(
    not os.environ.get("RUN_ROLLOUT_SCENARIO"),
    reason="a rollout under a 2-minute Locust load: run `make test-rollout`",
)

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / c.REPORTS_DIR / "rollout"
USERS = 16
RUN_S = 75
GOOD = {"epochs": 2, "retrieval_epochs": 2}
# Both stages diverge (the ranking network's rating is what the refusal names); without the item-to-item model.
BAD = {"epochs": 1, "retrieval_epochs": 1, "retrieval_learning_rate": 1000.0, "item_neighbours": 0,
       "learning_rate": 1000.0}


def _train(data_dir: Path, run_dir: Path, **overrides) -> Path:
    from train import trainer
    from train.config import DEFAULT_PRESET, PRESETS, TrainConfig

    config = TrainConfig(**{**PRESETS[DEFAULT_PRESET], "preset": DEFAULT_PRESET, **overrides})
    trainer.run(config, data_dir, run_dir, verbose=0)
    return run_dir


def _export(run: Path, base: Path, config: Path, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", "--run", str(run), "--model-base-path", str(base),
         "--models-config", str(config), "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _rollout(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export.rollout", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def _version(target: str, label: str | None = None) -> int:
    with RecommenderClient(target, label=label, timeout_s=10) as client:
        return client.metadata().version


def _card(target: str, label: str) -> dict:
    with RecommenderClient(target, label=label, timeout_s=10) as client:
        return client.model_card()


def _eventually(predicate, seconds: float = 20.0) -> float:
    """Seconds until ``predicate()`` held (the server re-reads its config every second)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, "the servers never followed the config"
        time.sleep(0.2)
    return round(time.monotonic() - started, 2)


@pytest.fixture(autouse=True)
def locust_yields_the_cpu(monkeypatch):
    # As in tests/replicas_test.py: on 2 cores the exports and the server must not queue behind Locust.
    original = runner.locust_command
    monkeypatch.setattr(runner, "locust_command", lambda test: ["nice", "-n", "10", *original(test)])


def test_a_bad_run_is_refused_and_a_good_one_goes_canary_stable_and_back(fixture_dir, tmp_path):
    from serving.launcher import start_local_server

    runs = {name: _train(fixture_dir, tmp_path / "runs" / name, **overrides)
            for name, overrides in (("served", GOOD), ("bad", BAD), ("good", GOOD))}
    base = tmp_path / "models" / c.MODEL_NAME
    config = tmp_path / "serving" / "models.config"
    config.parent.mkdir()
    shutil.copy(ROOT / "serving" / "models.config", config)
    first = _export(runs["served"], base, config, fixture_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    common = ["--config", str(config), "--model-base-path", str(base)]
    assert _rollout("init", *common).returncode == 0

    figures: dict = {}
    with start_local_server(base, poll_seconds=1.0,
                            extra_args=["--model_config_file", str(config),
                                        "--model_config_file_poll_wait_seconds", "1"]) as server:
        target = server.grpc_target
        assert _version(target) == 1 and _version(target, "stable") == 1
        load = LoadTest(target=target, out=REPORTS, users=USERS, spawn_rate=USERS, run_time=f"{RUN_S}s")
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(summary=run_load_test(load)), daemon=True)
        started = time.monotonic()
        thread.start()
        time.sleep(10)  # the load is running

        # 1. The bad run: refused with its figures; nothing changes for clients.
        bad = _export(runs["bad"], base, config, fixture_dir)
        figures["bad_export"] = {"exit_code": bad.returncode, "error": bad.stderr.strip(),
                                 "gate": [line.strip() for line in bad.stdout.splitlines() if "gate:" in line]}
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "refused" in bad.stderr and "rmse" in bad.stderr
        assert sorted(p.name for p in base.iterdir()) == ["1"]
        assert _version(target) == 1 and _version(target, "stable") == 1

        # 2. The good run: passes, written as version 2, not served (the config lists only 1).
        good = _export(runs["good"], base, config, fixture_dir)
        assert good.returncode == 0, good.stdout + good.stderr
        figures["good_export"] = [line.strip() for line in good.stdout.splitlines() if "gate:" in line]
        time.sleep(3)  # three file-system polls
        assert (base / "2").is_dir() and _version(target) == 1

        # 3. Canary: asked for by label.
        canary = _rollout("canary", "2", *common, "--server", target, "--wait-seconds", "60")
        assert canary.returncode == 0, canary.stdout + canary.stderr
        figures["canary_label_after_s"] = _eventually(lambda: _safe_version(target, "canary") == 2)
        assert _version(target, "stable") == 1
        card = _card(target, "canary")
        assert card["run"] == "good" and card["rollout_gate"]["passed"]
        figures["canary_gate"] = {k: card["rollout_gate"][k] for k in ("candidate", "served", "tolerance")}

        # 4. Promote: stable is 2, the canary label is gone.
        assert _rollout("promote", *common).returncode == 0
        figures["promoted_after_s"] = _eventually(lambda: _safe_version(target, "stable") == 2)
        with RecommenderClient(target, label="canary", timeout_s=10) as client, pytest.raises(errors.InvalidArgument):
            client.metadata()

        # 5. Roll back: stable is 1 again, for everyone.
        assert _rollout("rollback", *common).returncode == 0
        figures["rolled_back_after_s"] = _eventually(lambda: _safe_version(target, "stable") == 1)
        _eventually(lambda: _safe_version(target) == 1)
        figures["steps_done_at_s"] = round(time.monotonic() - started, 1)
        assert figures["steps_done_at_s"] < RUN_S - 5, "the steps outlasted the load: raise RUN_S"
        thread.join(RUN_S + 120)
        assert not thread.is_alive(), "Locust did not finish"
    summary = result["summary"]
    figures["locust"] = {k: summary[k] for k in ("requests", "failures", "rps", "p50_ms", "p99_ms", "max_ms")}
    figures["config_after"] = rollout.read_state(config).describe()
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "rollout.json").write_text(json.dumps(figures, indent=2) + "\n")
    sys.__stdout__.write(f"\n[rollout] {json.dumps(figures)}\n")
    assert summary["failures"] == 0 and summary["requests"] > 0, summary
    assert summary["locust_exceptions"] == 0 and summary["locust_exit_code"] == 0


def _safe_version(target: str, label: str | None = None) -> int | None:
    try:
        return _version(target, label)
    except errors.RecommenderError:
        return None
