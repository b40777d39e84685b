"""Turn a load test's raw timings into summary.json and a compact table.

Percentiles are computed from every request's exact response time (written by
the locustfile's workers), not from Locust's CSV, whose percentiles are
bucketed to whole milliseconds and coarser above 100 ms; for ~2 ms calls that
bucketing alone would move p50 by 25%. Locust's own counts are kept alongside
as a cross-check.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from client.table import format_table
from loadtest.machine import SHARED_CORES_NOTE, Machine

ALL = "all"


def load_samples(directory: Path) -> list[tuple[str, float, float, bool]]:
    samples: list[tuple[str, float, float, bool]] = []
    for path in sorted(directory.glob("samples-*.json")):
        samples.extend(tuple(s) for s in json.loads(path.read_text()))
    return samples


def _stats(samples: list[tuple[str, float, float, bool]]) -> dict:
    count = len(samples)
    failures = sum(1 for s in samples if not s[3])
    # Latency of answered requests only: a refused connection "answers" in 0.1 ms
    # and would make a broken server look fast. Failures are reported separately.
    ok_ms = np.array([s[2] for s in samples if s[3]], dtype=np.float64)
    window_s = max(s[1] + s[2] / 1000 for s in samples) - min(s[1] for s in samples) if samples else 0.0

    def pct(q: float) -> float | None:
        return round(float(np.percentile(ok_ms, q)), 3) if ok_ms.size else None

    return {
        "requests": count,
        "failures": failures,
        "fail_ratio": round(failures / count, 6) if count else 0.0,
        "rps": round(count / window_s, 2) if window_s > 0 else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(float(ok_ms.max()), 3) if ok_ms.size else None,
        "mean_ms": round(float(ok_ms.mean()), 3) if ok_ms.size else None,
    }


def summarize(samples: list[tuple[str, float, float, bool]]) -> dict:
    summary = _stats(samples)
    names = sorted({s[0] for s in samples})
    summary["by_name"] = {name: _stats([s for s in samples if s[0] == name]) for name in names}
    return summary


def locust_final(samples_dir: Path) -> dict | None:
    """What the locustfile wrote as Locust shut down (``locust-final.json``): its final counts per name,
    failures and exceptions. Locust's own CSV files are once-a-second snapshots without a last write,
    so they can miss the end of a run; None when the file is not there (a Locust that did not quit cleanly)."""
    path = samples_dir / "locust-final.json"
    return json.loads(path.read_text()) if path.is_file() else None


def locust_counts(stats_csv: Path, final: dict | None = None) -> dict[str, dict[str, int]]:
    """Request/failure counts per name (the 'Aggregated' row included): Locust's final ones when the
    locustfile recorded them, else its ``*_stats.csv`` snapshot."""
    if final is not None:
        return final["counts"]
    if not stats_csv.is_file():
        return {}
    with stats_csv.open(newline="") as f:
        return {
            row["Name"]: {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"])}
            for row in csv.DictReader(f)
        }


def locust_exceptions(exceptions_csv: Path, final: dict | None = None) -> int:
    """How often Locust users raised outside a timed request (on_start, a task's own code): Locust's final
    count when the locustfile recorded it, else its ``*_exceptions.csv`` snapshot."""
    if final is not None:
        return final["exceptions"]
    if not exceptions_csv.is_file():
        return 0
    with exceptions_csv.open(newline="") as f:
        return sum(int(row["Count"]) for row in csv.DictReader(f))


def format_ms(value: float | None, digits: int = 2) -> str:
    """A latency for a table; "-" when there is none (no successful request)."""
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(summary: dict, machine: Machine, title: str) -> str:
    headers = ("name", "requests", "fail", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    entries: Iterable[tuple[str, dict]] = [*summary["by_name"].items(), (ALL, summary)]
    rows = [
        (
            name,
            s["requests"],
            f"{s['failures']} ({s['fail_ratio']:.1%})" if s["failures"] else "0",
            f"{s['rps']:.1f}",
            format_ms(s["p50_ms"]),
            format_ms(s["p95_ms"]),
            format_ms(s["p99_ms"]),
            format_ms(s["max_ms"], 1),
        )
        for name, s in entries
    ]
    return "\n".join(
        [
            title,
            f"machine: {machine.describe()}; {SHARED_CORES_NOTE}",
            format_table(headers, rows, (False,) + (True,) * (len(headers) - 1)),
        ]
    )
