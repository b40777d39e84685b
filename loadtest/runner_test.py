"""The load test end to end (real server, and a fake that answers wrongly) and its summary maths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client import RecommenderClient
from common.contract import MOVIE_TITLES, PREDICT_SIGNATURE, RECOMMEND_FROM_RATINGS_SIGNATURE, RECOMMEND_SIGNATURE
from loadtest import runner
from loadtest.runner import LoadTest, gate, main, run_load_test
from loadtest.summary import summarize
from testing.fake_serving import FakeBehaviour, fake_server

REPO_ROOT = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = {"requests", "failures", "fail_ratio", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}


def test_short_load_test_against_local_server(local_server, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["--target", local_server.grpc_target, "--users", "4", "--spawn-rate", "4", "--run-time", "5s",
         "--out", str(out), "--max-fail-ratio", "0", "-k", "7", "--predict-batch", "2-3"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["failures"] == 0 and summary["requests"] > 0
    with RecommenderClient(local_server.grpc_target, timeout_s=30) as client:
        served = set(client.model_card().get("signatures", []))
    expected = {RECOMMEND_SIGNATURE, PREDICT_SIGNATURE} | ({RECOMMEND_FROM_RATINGS_SIGNATURE} & served)
    assert set(summary["by_name"]) == expected
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # Our raw counts agree with Locust's own statistics to within the last in-flight requests.
    assert abs(summary["locust_counts"]["Aggregated"]["requests"] - summary["requests"]) <= 4 * 2
    assert (out / "report.html").is_file() and (out / "locust_stats.csv").is_file()
    assert "share these cores" in printed
    assert summary["config"]["k"] == 7 and summary["config"]["predict_batch"] == "2-3"


@pytest.mark.parametrize(
    "behaviour, message",
    [
        (FakeBehaviour(unsorted_scores=True), "not sorted by descending score"),
        # An answer the client cannot parse is a failed request too, not an uncounted task exception.
        (FakeBehaviour(drop_outputs={MOVIE_TITLES}), "no output 'movie_titles'"),
    ],
)
def test_wrong_answers_count_as_failures_and_fail_the_gate(tmp_path, capsys, behaviour, message):
    with fake_server(behaviour=behaviour) as (target, _):
        code = main(
            ["--target", target, "--users", "2", "--spawn-rate", "2", "--run-time", "3s",
             "--out", str(tmp_path), "--max-fail-ratio", "0.01"]
        )  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    recommend = summary["by_name"][RECOMMEND_SIGNATURE]
    assert recommend["requests"] > 0 and recommend["failures"] == recommend["requests"]
    assert summary["by_name"][PREDICT_SIGNATURE]["failures"] == 0
    assert summary["locust_exceptions"] == 0 and summary["locust_exit_code"] == 1  # Locust's code for failures
    assert code == 1
    assert "GATE FAILED: failure ratio" in capsys.readouterr().err
    assert any(message in f["error"] for f in summary["locust_failures"]), summary["locust_failures"]


def test_k_above_the_models_max_k_expects_max_k_results(tmp_path):
    with fake_server() as (target, _):
        summary = run_load_test(
            LoadTest(target=target, out=tmp_path, users=2, spawn_rate=2, run_time="2s", k=150)
        )
    assert summary["by_name"][RECOMMEND_SIGNATURE]["requests"] > 0 and summary["failures"] == 0
    assert summary["by_name"][RECOMMEND_FROM_RATINGS_SIGNATURE]["requests"] > 0


def test_the_default_mix_skips_from_ratings_on_a_model_without_it(tmp_path):
    with fake_server(behaviour=FakeBehaviour(missing_signatures={RECOMMEND_FROM_RATINGS_SIGNATURE})) as (target, _):
        summary = run_load_test(LoadTest(target=target, out=tmp_path, users=2, spawn_rate=2, run_time="2s"))
    assert set(summary["by_name"]) == {RECOMMEND_SIGNATURE, PREDICT_SIGNATURE}
    assert summary["failures"] == 0 and summary["locust_exceptions"] == 0
    assert all(s["requests"] > 0 for s in summary["by_name"].values())


RAISING_LOCUSTFILE = """
import sys
sys.path.insert(0, {repo!r})

from locust import task
from loadtest.locustfile import GrpcUser


class PredictUser(GrpcUser):
    @task
    def predict_then_fail(self):
        self.predict()
        raise RuntimeError("a bug outside the timed request")
"""


def test_users_that_raise_fail_the_run_without_limits(tmp_path, monkeypatch, capsys):
    locustfile = tmp_path / "raising_locustfile.py"
    locustfile.write_text(RAISING_LOCUSTFILE.format(repo=str(REPO_ROOT)))
    monkeypatch.setattr(runner, "LOCUSTFILE", locustfile)
    with fake_server() as (target, _):
        code = main(  # --host: the old name of --target, still accepted
            ["--host", target, "--users", "1", "--spawn-rate", "1", "--run-time", "2s",
             "--user-class", "PredictUser", "--out", str(tmp_path / "run")]
        )  # fmt: skip
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["failures"] == 0
    assert summary["locust_exceptions"] > 0 and summary["locust_exit_code"] == 1
    assert code == 1
    assert "GATE FAILED: Locust users raised" in capsys.readouterr().err


def test_summarize_exact_percentiles_over_successes_only():
    samples = [("a", 100.0 + i / 1000, float(i), True) for i in range(1, 101)]
    samples += [("b", 100.0, 0.1, False)]  # a fast failure must not pull latency down
    summary = summarize(samples)
    assert summary["requests"] == 101 and summary["failures"] == 1
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["max_ms"] == 100.0
    assert summary["by_name"]["b"]["p50_ms"] is None and summary["by_name"]["b"]["fail_ratio"] == 1.0
    # 101 requests from t=100.0 to the last end (100.1 + 0.1 s)
    assert summary["rps"] == pytest.approx(101 / 0.2, rel=1e-3)


def _summary(**values) -> dict:
    return {"requests": 100, "failures": 2, "p99_ms": 12.0, "locust_exceptions": 0, "locust_exit_code": 1, **values}


def test_gate():
    assert gate(_summary(), None, None) == []
    assert gate(_summary(), 20, 0.05) == []
    assert gate(_summary(), 10, 0.01) == ["failure ratio 2.00% (2 of 100) > limit 1.00%", "p99 12.0 ms > limit 10 ms"]
    assert gate(_summary(failures=100, p99_ms=None), 10, None) == [
        "every request failed (100 of 100; see locust_failures.csv)",
        "no successful requests, so no p99 to hold to the limit of 10 ms",
    ]


def test_gate_compares_the_exact_failure_ratio():
    # 1 in 10 million rounds to 0.000000 in summary.json, but is still above a limit of 0.
    assert gate(_summary(requests=10_000_000, failures=1), None, 0) == [
        "failure ratio 0.00% (1 of 10000000) > limit 0.00%"
    ]


@pytest.mark.parametrize(
    "values, problems",
    [
        ({"failures": 0, "locust_exit_code": 0}, []),
        ({"failures": 2, "locust_exit_code": 1}, []),  # Locust's code for failed requests, counted already
        ({"failures": 0, "locust_exit_code": 1}, ["Locust exited with code 1 (see locust.log)"]),
        ({"failures": 2, "locust_exit_code": 2}, ["Locust exited with code 2 (see locust.log)"]),
        (
            {"failures": 0, "locust_exceptions": 3},
            ["Locust users raised 3 exception(s) outside the timed requests (see locust_exceptions.csv)"],
        ),
    ],
)
def test_gate_fails_on_what_locust_reports_beyond_the_counted_requests(values, problems):
    assert gate(_summary(**values), None, None) == problems


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "http://x:1"}, "no scheme"),
        ({"users": 0}, "users must be"),
        ({"processes": 0}, "processes"),
        ({"user_class": "Nobody"}, "user_class"),
        ({"k": 0}, "k must be >= 1"),
        ({"predict_batch": "5-2"}, "predict_batch must be N or N-M"),
        ({"predict_batch": "x"}, "predict_batch must be N or N-M"),
    ],
)
def test_load_test_config_is_validated(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoadTest(**{"target": "127.0.0.1:1", "out": tmp_path, **kwargs})


def test_no_measurements_is_an_error_not_an_empty_report(tmp_path):
    from loadtest.runner import LoadTestError

    # A run time Locust rejects: the run must fail loudly with Locust's own words.
    with pytest.raises(LoadTestError, match="recorded no requests"):
        run_load_test(LoadTest(target="127.0.0.1:1", out=tmp_path, run_time="not-a-time"))


# --- exit codes: 0 passed (above), 1 failed, 2 usage, 130 interrupted -----------


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: --target"),
        (["--target", "localhost:8500", "--users", "0"], "users must be >= 1"),
        (["--target", "localhost:8500", "-k", "0"], "k must be >= 1"),
        (["--target", "localhost:8500", "--predict-batch", "0"], "predict_batch must be N or N-M"),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--out", str(tmp_path)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_unreachable_target_exits_1_in_one_line_without_starting_locust(tmp_path, monkeypatch, capsys):
    from portpicker import pick_unused_port

    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(runner, "run_load_test", lambda test: pytest.fail("Locust started"))
    target = f"127.0.0.1:{pick_unused_port()}"
    assert main(["--target", target, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: cannot reach the recommender at {target} (no gRPC connection within 1s)\n"


def test_ctrl_c_exits_130(tmp_path, monkeypatch, capsys):
    def interrupted(test, max_p99_ms, max_fail_ratio):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_and_report", interrupted)
    assert main(["--target", "localhost:8500", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


# --- TLS and a bearer token (client/auth.py) -------------------------------------


def test_locust_users_pass_tls_and_token(tmp_path, capsys, monkeypatch):
    """The Locust user sends the CA and token ``python -m loadtest`` was given; without the token
    every request is refused (UNAUTHENTICATED) and the run fails; the token never reaches the report."""
    from testing.tls import BearerTokenInterceptor, write_test_pki

    for name in ("MOVIELENS_TLS_CA", "MOVIELENS_TOKEN", "MOVIELENS_TOKEN_FILE", "MOVIELENS_TLS_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    pki = write_test_pki(tmp_path / "pki")
    token = "locust.test.token"
    (tmp_path / "locust.jwt").write_text(token)
    checker = BearerTokenInterceptor(token)
    run = ["--users", "2", "--spawn-rate", "2", "--run-time", "2s", "--tls-ca", str(pki.ca)]
    with fake_server(server_credentials=pki.server_credentials(), interceptors=[checker]) as (target, behaviour):
        code = main(["--target", target, *run, "--token-file", str(tmp_path / "locust.jwt"),
                     "--out", str(tmp_path / "ok"), "--max-fail-ratio", "0"])  # fmt: skip
        assert code == 0, capsys.readouterr()
        assert checker.refused == 0 and behaviour.calls > 0
        # Longer than the first run: on busy cores the two users may take seconds to start at all.
        refused_run = ["--users", "2", "--spawn-rate", "2", "--run-time", "5s", "--tls-ca", str(pki.ca)]
        code = main(["--target", target, *refused_run, "--out", str(tmp_path / "refused")])
    ok = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert ok["requests"] > 0 and ok["failures"] == 0 and ok["config"]["tls_ca"] == str(pki.ca)
    assert token not in (tmp_path / "ok" / "summary.json").read_text()
    refused = json.loads((tmp_path / "refused" / "summary.json").read_text())
    assert code == 1 and refused["requests"] > 0 and refused["failures"] == refused["requests"]
    assert all("UNAUTHENTICATED" in f["error"] for f in refused["locust_failures"]) and refused["locust_failures"]


def test_a_token_in_clear_to_a_remote_target_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--target", "recommender.example:8500", "--token", "t.t.t", "--out", str(tmp_path)])
    assert exited.value.code == 2 and "a token needs TLS" in capsys.readouterr().err
