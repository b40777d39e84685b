"""The edge bench's own pieces (the 30 s run itself is in tests/replicas_test.py, `make test-replicas`)."""

from __future__ import annotations

import pytest

from loadtest import edge_bench
from serving.cluster import load_envoy_template


def _buckets(config: dict) -> list[dict]:
    found = []
    for listener in config["static_resources"]["listeners"]:
        for http_filter in listener["filter_chains"][0]["filters"][0]["typed_config"].get("http_filters", []):
            if http_filter["name"] == "envoy.filters.http.local_ratelimit":
                found += [d for d in http_filter["typed_config"]["descriptors"] if d["entries"][0]["value"] == ""]
    return found


def test_only_the_per_caller_bucket_changes():
    template = load_envoy_template()
    changed = edge_bench.with_caller_limit(template, 20)
    assert [b["token_bucket"] for b in _buckets(changed)] == [
        {"max_tokens": 20, "tokens_per_fill": 2, "fill_interval": "0.1s"}] * 2  # fmt: skip
    for bucket in _buckets(changed):
        bucket["token_bucket"] = None
    for bucket in _buckets(template):
        bucket["token_bucket"] = None
    assert changed == template
    with pytest.raises(ValueError, match="multiple of 10"):
        edge_bench.with_caller_limit(load_envoy_template(), 25)


def _results(steady_p99: float, flooder_ok: int = 600) -> dict:
    caller = {"sent": 300, "offered_rps": 10.0, "codes": {"OK": 300}, "p50_ms": 3.0, "p99_ms": 6.0, "max_ms": 9.0}
    return {
        "limit_rps": 20, "burst": 20, "steady_rps": 10, "flood_rps": 400, "factor": 20, "seconds": 30,
        "baseline": caller, "steady": {**caller, "p99_ms": steady_p99},
        "flooder": {"sent": 12000, "offered_rps": 400.0, "codes": {"OK": flooder_ok, "RESOURCE_EXHAUSTED": 12000 - flooder_ok},
                    "p50_ms": 3.0, "p99_ms": 8.0, "max_ms": 10.0},
        "replica_predicts": {"baseline": 300, "flood": 900}, "load_average": [1.0, 2.0],
    }  # fmt: skip


def test_the_verdict_and_the_section_say_what_was_met(tmp_path):
    assert all(edge_bench.verdict(_results(11.0)).values())
    assert not edge_bench.verdict(_results(13.0))["steady caller p99 within 2x of its baseline"]
    assert not edge_bench.verdict(_results(6.0, flooder_ok=2000))["flooder refused with RESOURCE_EXHAUSTED"]
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nkept\n")
    edge_bench.write_section(out, edge_bench.render(_results(11.0), "2 cores", 75))
    edge_bench.write_section(out, edge_bench.render(_results(7.0), "2 cores", 75))
    text = out.read_text()
    assert text.count(edge_bench.START) == 1 and "kept" in text and "**1.17x**" in text
    assert "share these 2 cores" in text


def test_make_bench_keeps_the_edge_section(tmp_path):
    from loadtest.bench import keep_scale_section

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# old bench\n\n" + edge_bench.render(_results(7.0), "2 cores", 75))
    kept = keep_scale_section(out, "# new bench\n")
    assert kept.startswith("# new bench") and kept.count(edge_bench.START) == 1 and "# old bench" not in kept
