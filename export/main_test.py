"""``python -m export``'s command line: steps while it works, exit codes 0 / 1 / 2 / 130."""

from __future__ import annotations

import pytest

from export import __main__ as export_main
from export import exporter


def test_export_shows_its_steps_and_exits_0(trained_run, tmp_path, capsys):
    assert export_main.main(["--run", str(trained_run), "--model-base-path", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    steps = [line.strip().split()[0] for line in out[:7]]
    # gate: nothing is served from this base path yet, so nothing to compare with.
    assert steps == ["exporting", "loading", "gate:", "writing", "writing", "verifying:", "renaming"], out
    assert out[7].startswith(f"exported {trained_run} -> {tmp_path}/1 in ")


@pytest.mark.parametrize("problem", ["not a run", "version exists"])
def test_a_failed_export_exits_1_in_one_line(trained_run, tmp_path, capsys, problem):
    (tmp_path / "1").mkdir()
    run = tmp_path / "nothing" if problem == "not a run" else trained_run
    assert export_main.main(["--run", str(run), "--model-base-path", str(tmp_path), "--version", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [[], ["--run", "runs/x", "--version", "one"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        export_main.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m export")


def test_ctrl_c_exits_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "export_run", interrupted)
    assert export_main.main(["--run", str(tmp_path), "--model-base-path", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"
