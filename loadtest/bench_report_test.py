"""The bench's report rendered from hand-made results (round numbers, nothing measured): its tables,
its ratio lines and the batching ceiling's arithmetic."""

from __future__ import annotations

import json

import pytest

from common.contract import PREDICT_SIGNATURE, RECOMMEND_SIGNATURE
from loadtest import bench_report as report

COSTS = {
    RECOMMEND_SIGNATURE: {1: 400.0, 8: 1600.0, 32: 6400.0},  # per row at 32: 0.5 of batch 1
    PREDICT_SIGNATURE: {1: 100.0, 8: 200.0, 32: 800.0},  # 0.25: the cheapest share
}
# 1000 requests: Locust 0.5 ms, server 1.5 ms of which the graph 1.0 ms, per request.
MIX_OFF = {"requests": 1000, "rps": 500.0, "server_cpu_s": 1.5, "load_generator_cpu_s": 0.5, "graph_cpu_s": 1.0,
           "graph_runs": 1000}
MIX_ON = {**MIX_OFF, "rps": 600.0, "graph_cpu_s": 0.6, "graph_runs": 400}


def _load_run(p50: float, **extra) -> dict:
    """A load run's summary: every request name with the run's own figures, ``extra`` (req/s, CPU) on top."""
    stats = {"rps": extra["rps"], "p50_ms": p50, "p95_ms": 2 * p50, "p99_ms": 3 * p50, "max_ms": 4 * p50, "failures": 0}
    return {**stats, "by_name": {RECOMMEND_SIGNATURE: stats, PREDICT_SIGNATURE: stats}, "load_average_1m": 2.5,
            **extra}


def _ms(p50: float) -> dict[str, float]:
    return {"p50_ms": p50, "p99_ms": 2 * p50}


def results() -> dict:
    """What ``python -m loadtest.bench`` writes to results.json, by hand: JSON round-tripped, as render reads it."""
    hand_made = {
        "version": 3,
        "run": {"date": "2026-01-02", "elapsed_s": 180.0, "model": "models/movielens/3", "machine": "2 cores (a CPU)",
                "cores": 2, "python": "3.11.7", "tensorflow": "TensorFlow 2.21.0 on the CPU only",
                "batching": "max batch 64, 1 ms timeout, 2 batch threads", "users": 32, "grpc_threads": 64,
                "calls": 1000, "one_user_time": "15s", "load_time": "30s", "reports": "reports/bench"},
        "client_overhead_us": {"recommend 1 user, k=10": 50.0},
        "floor": {report.PREDICT: _ms(0.5), report.RECOMMEND: _ms(1.0), report.SERVER_CALL_PATH: _ms(0.25),
                  report.FROM_RATINGS: _ms(1.5)},
        "batch_costs": COSTS,
        "client_loop": {report.PREDICT: _ms(1.6), report.RECOMMEND: _ms(2.0), report.EMPTY_ROUND_TRIP: _ms(0.5),
                        report.BARE_PREDICT: _ms(1.5)},
        "thin_vs_stub": {report.THIN_RECOMMEND: _ms(2.0), report.PREVIOUS_RECOMMEND: _ms(2.5),
                         report.OLD_PATH_RECOMMEND: _ms(2.2), report.STUB_RECOMMEND: _ms(1.6)},
        "one_user": _load_run(1.75, rps=400.0),
        "predict_off": _load_run(20.0, rps=1000.0, requests=30000, server_cpu_s=30.0, load_generator_cpu_s=15.0,
                                 graph_cpu_s=9.0, graph_runs=30000),
        "predict_on": _load_run(15.0, rps=1500.0, requests=45000, server_cpu_s=27.0, load_generator_cpu_s=18.0,
                                graph_cpu_s=4.5, graph_runs=9000),
        "mix": _load_run(30.0, **MIX_OFF),
        "mix_on": _load_run(25.0, **MIX_ON),
    }  # fmt: skip
    return json.loads(json.dumps(hand_made))


def test_the_ceiling_keeps_everything_but_the_graph_and_shrinks_the_graph_to_the_cheapest_share():
    ceiling = report.batching_ceiling(COSTS, MIX_OFF)
    assert ceiling["share_32"] == pytest.approx(0.25)
    assert ceiling["best_graph_ms"] == pytest.approx(0.25)
    # (0.5 + 1.5) / (0.5 + 1.5 - 1.0 + 0.25) and, without Locust, 1.5 / (1.5 - 1.0 + 0.25)
    assert ceiling["ceiling"] == pytest.approx(2.0 / 1.25)
    assert ceiling["server_only_ceiling"] == pytest.approx(1.5 / 0.75)


def test_no_ceiling_without_the_servers_graph_count():
    assert report.batching_ceiling(COSTS, {k: v for k, v in MIX_OFF.items() if k != "graph_cpu_s"}) is None
    assert report.batching_ceiling(COSTS, {**MIX_OFF, "requests": 0}) is None


def test_the_report_has_every_section_and_its_tables():
    text = report.render(results())
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h[3:6] for h in headings] == ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "Rep"]
    assert "One run of `make bench` on 2026-01-02 (3.0 min), model `models/movielens/3`." in text
    assert "**Machine:** 2 cores (a CPU), Python 3.11.7, TensorFlow 2.21.0 on the CPU only." in text
    assert f"| {report.SERVER_CALL_PATH} | 0.250 | 0.500 |" in text  # (a)
    assert "| predict batch 1 | 1.75 | 5.25 | 1.60 | 3.20 | 3.2x |" in text  # (b): Locust, loop, loop / floor
    assert f"| {report.PREVIOUS_RECOMMEND} | 2.50 | 5.00 |" in text
    assert "| on | 1500 | 15.00 | 45.00 | 60.00 | 0 | 27 s / 18 s | 0.60 | 2.5 |" in text  # (c)
    assert f"| off | {RECOMMEND_SIGNATURE} | 500 | 30.00 | 60.00 | 90.00 | 120.00 | 0 | 30x |" in text  # (d)
    assert "| recommend 1 user, k=10 | 50.0 |" in text  # (e)
    assert f"| {RECOMMEND_SIGNATURE} | 400 | 1600 | 6400 | 0.50 |" in text  # (f), row counts back from JSON's strings
    assert "| mix, off | 500 | 0.50 | 0.50 | 1.00 | 1.0 |" in text
    assert "| mix, on | 600 | 0.50 | 0.90 | 0.60 | 2.5 |" in text
    assert "--users 32 --spawn-rate 32 --run-time 30s --out reports/mix\n" in text


def test_each_ratio_and_bound_is_one_line():
    lines = report.render(results()).splitlines()
    for expected in [
        "- recommend_from_ratings (20 ratings) / recommend, p50: **1.50×**",
        "- Locust p50 − client loop p50: +0.15 ms (predict batch 1), -0.25 ms (recommend k=10)",
        "- Bare stub predict / (empty round trip + in-process predict), p50: 1.50 / (0.50 + 0.50 = 1.00) ms = **1.50×**",
        "- `RecommenderClient` predict / (empty round trip + in-process predict), p50: 1.60 / 1.00 ms = 1.60×",
        "- Bare stub predict / (empty round trip + the server's call path), p50: 1.50 / (0.50 + 0.25) ms = 2.00×; "
        "the server's own share: 0.75 ms per call",
        "- Thin client / previous client, recommend p50: **0.80×** (-0.500 ms)",
        "- Thin client / bare stub, recommend p50: 1.25× (+0.400 ms per call)",
        "- Batching on / off: **1.50× throughput**",
        "- Batching on / off, whole mix: **1.20× throughput**",
        "- p99 off → on: 90.0 → 75.0 ms (no worse)",
        "- Server CPU per request: off 1.50 ms, on 1.50 ms",
        "- CPU per mix request, batching off: 2.00 ms (Locust 0.50, server 1.50, of which graph runs 1.00)",
        "- The same with every graph run cut to the cheapest per-row share (0.25) and batching free: 1.25 ms",
        "- Ceiling of the mix's batching on / off throughput on these 2 cores: **1.60×**; (d) measured 1.20×",
        "- The same ceiling with a load generator that cost nothing: 2.00×",
    ]:
        assert expected in lines


def test_without_the_previous_client_or_batch_costs_the_report_says_what_it_compared():
    partial = results()
    del partial["thin_vs_stub"][report.PREVIOUS_RECOMMEND], partial["batch_costs"]
    text = report.render(partial)
    assert "- Thin client / previous path rebuilt, recommend p50: **0.91×** (-0.200 ms)" in text.splitlines()
    assert "## (f)" not in text and "## Reproduce" in text
