"""The load test end to end (real server, and a fake that answers wrongly) and its summary maths."""

from __future__ import annotations

import json

import pytest

from client.fakes import FakeBehaviour, fake_server
from common.contract import PREDICT_SIGNATURE, RECOMMEND_SIGNATURE
from loadtest.runner import LoadTest, gate, main, run_load_test
from loadtest.summary import summarize

SUMMARY_KEYS = {"requests", "failures", "fail_ratio", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"}


def test_short_load_test_against_local_server(local_server, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["--host", local_server.grpc_target, "--users", "4", "--spawn-rate", "4", "--run-time", "5s",
         "--out", str(out), "--max-fail-ratio", "0"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["failures"] == 0 and summary["requests"] > 0
    assert set(summary["by_name"]) == {RECOMMEND_SIGNATURE, PREDICT_SIGNATURE}
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # Our raw counts agree with Locust's own statistics to within the last in-flight requests.
    assert abs(summary["locust_counts"]["Aggregated"]["requests"] - summary["requests"]) <= 4 * 2
    assert (out / "report.html").is_file() and (out / "locust_stats.csv").is_file()
    assert "share these cores" in printed


def test_wrong_answers_count_as_failures_and_fail_the_gate(tmp_path, capsys):
    with fake_server(behaviour=FakeBehaviour(unsorted_scores=True)) as (target, _):
        code = main(
            ["--host", target, "--users", "2", "--spawn-rate", "2", "--run-time", "3s",
             "--out", str(tmp_path), "--max-fail-ratio", "0.01"]
        )  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    recommend = summary["by_name"][RECOMMEND_SIGNATURE]
    assert recommend["requests"] > 0 and recommend["failures"] == recommend["requests"]
    assert summary["by_name"][PREDICT_SIGNATURE]["failures"] == 0
    assert code == 1
    assert "GATE FAILED: failure ratio" in capsys.readouterr().err
    assert "not sorted by descending score" in (tmp_path / "locust_failures.csv").read_text()


def test_summarize_exact_percentiles_over_successes_only():
    samples = [("a", 100.0 + i / 1000, float(i), True) for i in range(1, 101)]
    samples += [("b", 100.0, 0.1, False)]  # a fast failure must not pull latency down
    summary = summarize(samples)
    assert summary["requests"] == 101 and summary["failures"] == 1
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["max_ms"] == 100.0
    assert summary["by_name"]["b"]["p50_ms"] is None and summary["by_name"]["b"]["fail_ratio"] == 1.0
    # 101 requests from t=100.0 to the last end (100.1 + 0.1 s)
    assert summary["rps"] == pytest.approx(101 / 0.2, rel=1e-3)


def test_gate():
    summary = {"fail_ratio": 0.02, "p99_ms": 12.0}
    assert gate(summary, None, None) == []
    assert gate(summary, 20, 0.05) == []
    assert gate(summary, 10, 0.01) == ["failure ratio 2.00% > limit 1.00%", "p99 12.0 ms > limit 10 ms"]
    assert gate({"fail_ratio": 1.0, "p99_ms": None}, 10, None) == ["p99 None ms > limit 10 ms"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"host": "http://x:1"}, "no scheme"),
        ({"users": 0}, "users must be"),
        ({"processes": 0}, "processes"),
        ({"user_class": "Nobody"}, "user_class"),
    ],
)
def test_load_test_config_is_validated(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoadTest(**{"host": "127.0.0.1:1", "out": tmp_path, **kwargs})


def test_no_measurements_is_an_error_not_an_empty_report(tmp_path):
    from loadtest.runner import LoadTestError

    # A run time Locust rejects: the run must fail loudly with Locust's own words.
    with pytest.raises(LoadTestError, match="recorded no requests"):
        run_load_test(LoadTest(host="127.0.0.1:1", out=tmp_path, run_time="not-a-time"))
