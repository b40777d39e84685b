"""``python -m client``: tables, JSON, and one-line errors with a non-zero exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from portpicker import pick_unused_port

from client import cli
from client.cli import main
from client.table import format_table
from common.contract import USER_ID
from testing.fake_serving import fake_server

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_format_table_aligns_columns():
    table = format_table(("rank", "title"), [(1, "A"), (10, "Long title")], (True, False)).splitlines()
    assert table == ["rank  title", "----  ----------", "   1  A", "  10  Long title"]


def test_recommend_table(local_server, capsys):
    assert main(["--target", local_server.grpc_target, "recommend", "--user", "42", "-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "movie_id", "score", "title"]
    assert len(lines) == 2 + 5 and lines[2].split()[0] == "1"


def test_recommend_json(local_server, capsys):
    assert main(["--target", local_server.grpc_target, "recommend", "--user", "42", "-k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 3 and all(set(r) == {"movie_id", "title", "score"} for r in recs)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)


def test_predict_status_metadata_card(local_server, capsys):
    target = ["--target", local_server.grpc_target]
    assert main([*target, "predict", "--user", "42", "--movie", "50", "--movie", "51", "--json"]) == 0
    ratings = json.loads(capsys.readouterr().out)
    assert [r["movie_id"] for r in ratings] == ["50", "51"] and all(isinstance(r["predicted_rating"], float) for r in ratings)
    assert main([*target, "predict", "--user", "42", "--movie", "50"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["42", "50"]
    assert main([*target, "status"]) == 0
    assert "AVAILABLE" in capsys.readouterr().out
    assert main([*target, "metadata"]) == 0
    assert "recommend" in capsys.readouterr().out
    assert main([*target, "card"]) == 0
    assert json.loads(capsys.readouterr().out)["model_name"] == "movielens"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recommend", "--user", "42", "-k", "0"], "error: k must be a positive number of recommendations, got 0"),
        (["--model", "no-such-model", "status"], "error: NOT_FOUND: "),
        (["--version", "999", "recommend", "--user", "1"], "error: NOT_FOUND: "),
    ],
)
def test_bad_requests_exit_1_with_one_line(local_server, capsys, argv, message):
    assert main(["--target", local_server.grpc_target, *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1


def test_server_down_is_one_line_without_traceback():
    # A real subprocess: proves nothing else (TensorFlow's import noise, gRPC logs) reaches stderr.
    target = f"127.0.0.1:{pick_unused_port()}"
    for timeout, message in (("10", "cannot reach the recommender at"), ("0.5", "no answer from the recommender at")):
        # 10 s outlasts the channel's retries (UNAVAILABLE); 0.5 s ends inside them (DEADLINE_EXCEEDED).
        completed = subprocess.run(
            [sys.executable, "-m", "client", "--target", target, "--timeout", timeout, "recommend", "--user", "1"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert completed.returncode == 1
        assert completed.stdout == ""
        assert completed.stderr.startswith(f"error: {message} {target}"), completed.stderr
        assert completed.stderr.count("\n") == 1, completed.stderr


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args, client):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    assert main(["status"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_closed_pipe_ends_quietly():
    # The reader is gone before anything is written, as with `| head` after its lines.
    read, write = os.pipe()
    os.close(read)
    try:
        with fake_server() as (target, _):
            completed = subprocess.run(
                [sys.executable, "-m", "client", "--target", target, "recommend", "--user", "1"],
                cwd=REPO_ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60,
            )  # fmt: skip
    finally:
        os.close(write)
    assert (completed.returncode, completed.stderr) == (1, "")


# --- several users in one recommend call, against the fake -------------------


def test_several_users_are_one_call_a_table_each_and_json(capsys):
    with fake_server() as (target, behaviour):
        assert main(["--target", target, "recommend", "--user", "1", "2", "--user", "3", "-k", "2"]) == 0
        assert behaviour.calls == 1
        assert list(behaviour.last_request.inputs[USER_ID].string_val) == [b"1", b"2", b"3"]
        blocks = capsys.readouterr().out.split("\n\n")
        assert [b.splitlines()[0] for b in blocks] == ["user 1", "user 2", "user 3"]
        assert all(len(b.splitlines()) == 1 + 2 + 2 for b in blocks)
        assert main(["--target", target, "recommend", "--user", "1", "2", "-k", "2", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
    assert [r["user_id"] for r in rows] == ["1", "2"] and all(len(r["recommendations"]) == 2 for r in rows)
    assert set(rows[0]["recommendations"][0]) == {"movie_id", "title", "score"}


def test_more_users_than_one_call_takes_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--target", "127.0.0.1:1", "recommend", "--user", *map(str, range(1, 102))])
    assert exited.value.code == 2
    assert "argument --user: at most 100 users per call" in capsys.readouterr().err


# --- recommend --rated (recommend_from_ratings), against the fake ------------


def test_recommend_from_rated_movies_table_and_json(capsys):
    with fake_server() as (target, behaviour):
        rated = ["--rated", "50=5", "--rated", "52=4", "--rated", "tt-unknown=4.5"]
        assert main(["--target", target, "recommend", *rated, "-k", "3"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["rank", "movie_id", "score", "title"] and len(lines) == 2 + 3
        assert main(["--target", target, "recommend", *rated, "-k", "4", "--json"]) == 0
        recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 4 and all(set(r) == {"movie_id", "title", "score"} for r in recs)
    assert not {"50", "52"} & {r["movie_id"] for r in recs}
    assert behaviour.last_request.model_spec.signature_name == "recommend_from_ratings"


@pytest.mark.parametrize(
    "rated, message",
    [
        (["--rated", "50"], "argument --rated: expected MOVIE=RATING, e.g. 50=4.5, got '50'"),
        (["--rated", "=5"], "expected MOVIE=RATING"),
        (["--rated", "50="], "expected MOVIE=RATING"),
        (["--rated", "50=five"], "argument --rated: the rating must be a number"),
        (["--rated", "50=0"], "argument --rated: the rating must be within 0.5-5, got '50=0'"),
        (["--rated", "50=5.5"], "within 0.5-5"),
        (["--rated", "50=nan"], "within 0.5-5"),
        (["--rated", "50=5", "--rated", "50=4"], "argument --rated: movie 50 is given twice (50=5 and 50=4)"),
        (["--user", "42", "--rated", "50=5"], "argument --rated: not allowed with argument --user"),
        ([], "one of the arguments --user --rated is required"),
    ],
)
def test_bad_rated_is_a_usage_error(capsys, rated, message):
    with pytest.raises(SystemExit) as exited:
        main(["--target", "127.0.0.1:1", "recommend", *rated])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m client recommend") and message in err


def test_rated_on_a_model_without_the_signature_exits_1(capsys):
    with fake_server() as (target, behaviour):
        behaviour.missing_signatures = {"recommend_from_ratings"}
        assert main(["--target", target, "recommend", "--rated", "50=5"]) == 1
        assert main(["--target", target, "recommend", "--rated", "50=5", "-k", "0"]) == 1
    captured = capsys.readouterr()
    first, second = captured.err.splitlines()
    assert captured.out == ""
    assert first.startswith(
        "error: FAILED_PRECONDITION: the model 'movielens' served at "
    ) and "has no 'recommend_from_ratings' signature: only models of the default (two-stage) preset" in first
    assert second == "error: k must be a positive number of recommendations, got 0"
