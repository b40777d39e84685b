"""The scale bench's report: table, acceptance lines and plot from measured rows (no training here)."""

from loadtest import scale_bench


def _row(size: str, wall: float, rss: float, mb: float, p50: float) -> dict:
    users, movies, _ = scale_bench.SIZES[size]
    return {"size": size, "users": users, "movies": movies, "wall_s": wall, "peak_rss_gib": rss, "model_mb": mb,
            "recommend_p50_ms": p50, "recommend_p99_ms": 2 * p50, "train_stages_s": {"retrieval": 1.0, "ranking": 2.0},
            "batch_sizes": {"retrieval": 1024, "ranking": 1024}, "evaluate_s": 3.0, "recall_at_10": 0.2,
            "popularity_recall_at_10": 0.1, "load_average_1min": 2.0}


def test_acceptance_lines_check_each_limit_and_the_growth_ratio():
    results = [_row("1M", 40.0, 1.0, 50.0, 1.5), _row("25M", 1300.0, 6.0, 150.0, 2.0)]
    lines = scale_bench.checks(results)
    assert len(lines) == 5
    assert "1300 s (limit 1200 s): **NOT met**" in lines[0]
    assert "6.00 GiB (limit 12.00 GiB): met" in lines[1]
    assert "× 32.5 for × 25 the ratings (limit × 30): **NOT met**" in lines[4]
    assert scale_bench.checks(results[:1]) == []  # without a 25M row there is nothing to check


def test_table_and_plot(tmp_path):
    results = [_row("100K", 10.0, 0.9, 4.0, 0.8), _row("1M", 40.0, None, 50.0, 1.5)]
    text = scale_bench.table(results, "a machine", "plot.png")
    assert text.startswith(scale_bench.START) and text.endswith(scale_bench.END)
    assert "| 1M | 20,000 | 45,000 | 1,024 / 1,024 | 1 + 2 s | 3 s | **40 s** | — |" in text
    assert "![" in text and "(plot.png)" in text and "--sizes 100K 1M`" in text
    scale_bench.plot(results, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
