"""``python -m train``'s command line: exit codes, the data-dir rule, help texts, the progress lines."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from train import __main__ as train_main
from train import config as train_config

REPO_ROOT = Path(__file__).resolve().parent.parent
NOISE = ("I0000", "W0000", "E0000", "WARNING: All log messages")


def test_missing_data_dir_exits_1_naming_the_directory_and_the_files():
    completed = subprocess.run(
        [sys.executable, "-m", "train", "--data-dir", "/nonexistent", "--run-name", "x"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.startswith("error: --data-dir /nonexistent does not exist: no u.data, u.item, u.user")
    assert completed.stderr.count("\n") == 1


def test_an_explicit_data_dir_never_falls_through(tmp_path, fixture_dir, monkeypatch, capsys):
    (tmp_path / "u.data").write_text("")  # a folder with one of the three files
    monkeypatch.setenv("MOVIELENS_DIR", str(fixture_dir))  # would have the files: must not be used
    assert train_main.main(["--data-dir", str(tmp_path), "--run-name", "x", "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --data-dir {tmp_path} has no u.item, u.user") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_malformed_data_exits_1(tmp_path, fixture_dir, capsys):
    data = tmp_path / "ml"
    shutil.copytree(fixture_dir, data)
    with (data / "u.data").open("a") as f:
        f.write("1\tnot-a-movie\t5\t874724710\n")
    assert train_main.main(["--data-dir", str(data), "--run-name", "x", "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "u.data" in err


@pytest.mark.parametrize("argv", [[], ["--run-name", "x", "--epochs", "three"], ["--run-name", "x", "--preset", "huge"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        train_main.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m train")


def test_ctrl_c_exits_130(fixture_dir, tmp_path, monkeypatch, capsys):
    from train import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "run", interrupted)
    assert train_main.main(["--data-dir", str(fixture_dir), "--run-name", "x", "--runs-dir", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_every_flag_has_plain_help_with_the_presets_values():
    help_text = train_main.build_parser().format_help()
    assert "``" not in help_text
    actions = train_main.build_parser()._actions
    assert all(action.help for action in actions), [a.dest for a in actions if not a.help]
    # Every config field is documented, and shows each preset's value where they differ.
    assert set(train_config.FIELD_HELP) == {f.name for f in train_config.dataclasses.fields(train_config.TrainConfig)}
    epochs = next(a for a in actions if a.dest == "epochs")
    assert "two-stage: 30, reference-basic: 3, reference-tuned: 50" in epochs.help
    seed = next(a for a in actions if a.dest == "seed")
    assert seed.help.endswith("(default 42)")


def test_progress_prints_a_short_line_per_epoch_at_most_ten_per_stage():
    from train.progress import EpochLines

    out = io.StringIO()
    lines = EpochLines("ranking", stream=out)
    lines.set_params({"epochs": 30})
    lines.on_train_begin()
    for epoch in range(14):  # stopped early at 14 of 30
        lines.on_epoch_end(epoch, {"root_mean_squared_error": 1.0 - epoch / 100, "val_root_mean_squared_error": 0.9 + abs(epoch - 5) / 100})
    lines.on_train_end()
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("ranking epoch 1/30  RMSE 1.000  val 0.950  (")
    assert [line.split()[2] for line in printed[:-1]] == ["1/30", "3/30", "6/30", "9/30", "12/30", "14/30"]
    assert printed[-1] == "ranking: stopped early after 14/30 epochs; best val RMSE 0.900 at epoch 6"
