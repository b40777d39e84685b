"""``newest_version`` picks what the server will serve and explains an empty base path."""

import pytest

from loadtest.local import newest_version


def test_newest_integer_version_ignores_staging_and_files(tmp_path):
    for name in ("1", "2", "10", ".11-staging", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert newest_version(tmp_path) == 10


def test_no_versions_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no exported model under {tmp_path}.*make export"):
        newest_version(tmp_path)
    with pytest.raises(FileNotFoundError, match="no exported model"):
        newest_version(tmp_path / "missing")


def test_a_bad_setting_fails_in_one_line_before_the_server_starts(tmp_path, monkeypatch, capsys):
    import serving.launcher
    from loadtest.local import main

    (tmp_path / "1").mkdir()
    monkeypatch.setattr(serving.launcher, "start_local_server", lambda *a, **k: pytest.fail("server started"))
    assert main(["--model-base-path", str(tmp_path), "--users", "0"]) == 2  # usage
    err = capsys.readouterr().err
    assert err.startswith("error: users must be >= 1") and err.count("\n") == 1


def test_no_model_exits_1_before_the_server_starts(tmp_path, monkeypatch, capsys):
    import serving.launcher
    from loadtest import demo
    from loadtest.local import main

    monkeypatch.setattr(serving.launcher, "start_local_server", lambda *a, **k: pytest.fail("server started"))
    assert main(["--model-base-path", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: no exported model under {tmp_path}")
    assert demo.main(["--model-base-path", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: no exported model under {tmp_path}")
    assert demo.main(["--model-base-path", str(tmp_path), "--users", "0"]) == 2


def test_a_server_that_does_not_start_exits_1_in_one_line_for_both_commands(tmp_path, monkeypatch, capsys):
    import contextlib

    import serving.launcher
    from loadtest import demo
    from loadtest.local import main

    @contextlib.contextmanager
    def broken(*args, **kwargs):
        raise RuntimeError("server exited with code 1 before it was SERVING")
        yield

    (tmp_path / "3").mkdir()
    monkeypatch.setattr(serving.launcher, "start_local_server", broken)
    for command, announced in ((main, "starting the local server on"), (demo.main, "== starting the local server on")):
        assert command(["--model-base-path", str(tmp_path)]) == 1
        out, err = capsys.readouterr()
        assert out.startswith(f"{announced} {tmp_path}/3")
        assert err == "error: the local server did not start: server exited with code 1 before it was SERVING\n"
