"""The bench's batching ceiling: arithmetic on measured CPU per request, checked on round numbers."""

from __future__ import annotations

import pytest

from common.contract import PREDICT_SIGNATURE, RECOMMEND_SIGNATURE
from loadtest.bench import batching_ceiling, batching_lines

COSTS = {
    RECOMMEND_SIGNATURE: {1: 400.0, 8: 1600.0, 32: 6400.0},  # per row at 32: 0.5 of batch 1
    PREDICT_SIGNATURE: {1: 100.0, 8: 200.0, 32: 800.0},  # 0.25: the cheapest share
}
# 1000 requests: Locust 0.5 ms, server 1.5 ms of which the graph 1.0 ms, per request.
MIX_OFF = {"requests": 1000, "rps": 500.0, "server_cpu_s": 1.5, "load_generator_cpu_s": 0.5, "graph_cpu_s": 1.0,
           "graph_runs": 1000}
MIX_ON = {**MIX_OFF, "rps": 600.0, "graph_cpu_s": 0.6, "graph_runs": 400}


def test_the_ceiling_keeps_everything_but_the_graph_and_shrinks_the_graph_to_the_cheapest_share():
    ceiling = batching_ceiling(COSTS, MIX_OFF)
    assert ceiling["share_32"] == pytest.approx(0.25)
    assert ceiling["best_graph_ms"] == pytest.approx(0.25)
    # (0.5 + 1.5) / (0.5 + 1.5 - 1.0 + 0.25) and, without Locust, 1.5 / (1.5 - 1.0 + 0.25)
    assert ceiling["ceiling"] == pytest.approx(2.0 / 1.25)
    assert ceiling["server_only_ceiling"] == pytest.approx(1.5 / 0.75)


def test_no_ceiling_without_the_servers_graph_count():
    assert batching_ceiling(COSTS, {k: v for k, v in MIX_OFF.items() if k != "graph_cpu_s"}) is None
    assert batching_ceiling(COSTS, {**MIX_OFF, "requests": 0}) is None


def test_the_section_shows_the_breakdown_and_the_measured_ratio_next_to_the_ceiling():
    text = "\n".join(batching_lines(COSTS, {"mix, off": MIX_OFF, "mix, on": MIX_ON}, MIX_OFF, MIX_ON, 2))
    assert "| mix, off | 500 | 0.50 | 0.50 | 1.00 | 1.0 |" in text
    assert "| mix, on | 600 | 0.50 | 0.90 | 0.60 | 2.5 |" in text
    assert "cannot exceed **1.60×**; (d) measured 1.20×" in text
    assert batching_lines(None, {}, MIX_OFF, MIX_ON, 2) == []
