"""The ``make bench`` part of BENCHMARKS.md, rendered from the results ``loadtest.bench`` measured.

Figures only: each section's tables, and one line per ratio or bound worked out from them. What a
section measures, why a bound holds and how to read it is written once, in docs/benchmarks.md (the
page that includes BENCHMARKS.md), which names these tables and lines without repeating their
numbers. ``render`` reads nothing but the results dict, which ``python -m loadtest.bench`` also
writes as JSON (``reports/bench/results.json``), so it runs on hand-made results without measuring.
"""

from __future__ import annotations

from common.contract import PREDICT_SIGNATURE, RECOMMEND_SIGNATURE
from loadtest.summary import format_ms

# Row names, shared by the measurements (loadtest.bench) and the tables.
PREDICT = "predict batch 1"
RECOMMEND = "recommend k=10"
FROM_RATINGS = "recommend_from_ratings 20 ratings k=10"
EMPTY_ROUND_TRIP = "empty round trip (health check)"
SERVER_CALL_PATH = "predict batch 1, the server's call path (numpy in and out, session in the calling thread)"
BARE_PREDICT = "predict batch 1, bare stub"
THIN_RECOMMEND = "recommend k=10, RecommenderClient (thin: described protos, generic method handle)"
STUB_RECOMMEND = "recommend k=10, tensorflow-serving-api's stub (its classes, prebuilt request, answer not decoded)"
OLD_PATH_RECOMMEND = "recommend k=10, the previous client's path rebuilt (tensorflow-serving-api's classes and stub, build + decode per call)"
# The last commit before the client became thin: its client/ and common/, run from git, are the thin client's baseline.
PREVIOUS_CLIENT_COMMIT = "c79cf34dfac6a8b19d3f99d5fa3f13d78b67f4cc"
PREVIOUS_RECOMMEND = (
    "recommend k=10, the previous RecommenderClient (tensorflow-serving-api's classes and stubs, "
    f"commit {PREVIOUS_CLIENT_COMMIT[:7]})"
)
DOCS_PAGE = "docs/benchmarks.md"


def render(results: dict) -> str:
    """The whole ``make bench`` part, from ``# Benchmarks`` to the reproduce commands."""
    sections = (header, floor_section, grpc_section, thin_client_section, predict_section, mix_section,
                client_section, batching_section, reproduce_section)  # fmt: skip
    return "\n".join(line for section in sections for line in section(results))


def header(results: dict) -> list[str]:
    run = results["run"]
    return [
        "# Benchmarks",
        "",
        f"One run of `make bench` on {run['date']} ({run['elapsed_s'] / 60:.1f} min), model `{run['model']}`.",
        "",
        f"**Machine:** {run['machine']}, Python {run['python']}, {run['tensorflow']}.",
        "",
        "Figures only: what each section measures, how its ratios and bounds are worked out and how to read "
        f"them is on the documentation's Benchmarks page (`{DOCS_PAGE}`, *Reading the figures of make bench*).",
        "",
    ]


def _ms_table(rows: dict[str, dict[str, float]], digits: int) -> list[str]:
    return [
        "| call | p50 ms | p99 ms |",
        "|---|---:|---:|",
        *(f"| {name} | {r['p50_ms']:.{digits}f} | {r['p99_ms']:.{digits}f} |" for name, r in rows.items()),
    ]


def floor_section(results: dict) -> list[str]:
    fl = results["floor"]
    lines = ["## (a) Floor: signature called in-process", "", *_ms_table(fl, 3), ""]
    if FROM_RATINGS in fl:
        ratio = fl[FROM_RATINGS]["p50_ms"] / fl[RECOMMEND]["p50_ms"]
        lines += [f"- recommend_from_ratings (20 ratings) / recommend, p50: **{ratio:.2f}×**", ""]
    return lines


def _locust_minus_loop(one_user: dict, loop: dict) -> str:
    """How far Locust's 1-user p50s sit from the plain loop's in this run, e.g. "+0.04 ms (predict batch 1)"."""
    parts = [
        f"{one_user['by_name'][name]['p50_ms'] - loop[label]['p50_ms']:+.2f} ms ({label})"
        for label, name in ((PREDICT, PREDICT_SIGNATURE), (RECOMMEND, RECOMMEND_SIGNATURE))
        if one_user["by_name"].get(name, {}).get("p50_ms") is not None
    ]
    return ", ".join(parts) or "not measured (no successful Locust requests)"


def grpc_section(results: dict) -> list[str]:
    run, fl, loop, one = results["run"], results["floor"], results["client_loop"], results["one_user"]
    lines = [
        "## (b) gRPC, one user",
        "",
        f"Locust: 1 user for {run['one_user_time']} (`RecommenderUser`, predict batch 1); client loop: "
        f"{run['calls']} calls per row.",
        "",
        "| call | Locust p50 ms | Locust p99 ms | client loop p50 ms | client loop p99 ms | loop p50 vs floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, name in ((PREDICT, PREDICT_SIGNATURE), (RECOMMEND, RECOMMEND_SIGNATURE)):
        s, mine = one["by_name"].get(name, {}), loop[label]
        lines.append(
            f"| {label} | {format_ms(s.get('p50_ms'))} | {format_ms(s.get('p99_ms'))} | {mine['p50_ms']:.2f} | "
            f"{mine['p99_ms']:.2f} | {mine['p50_ms'] / fl[label]['p50_ms']:.1f}x |"
        )
    bare, empty = loop[BARE_PREDICT], loop[EMPTY_ROUND_TRIP]
    lines += [
        f"| {BARE_PREDICT} (`PredictionService/Predict`, prebuilt request) | | | {bare['p50_ms']:.2f} | {bare['p99_ms']:.2f} | |",
        f"| empty round trip (`grpc.health.v1.Health/Check`) | | | {empty['p50_ms']:.2f} | {empty['p99_ms']:.2f} | |",
        "",
        f"- Locust p50 − client loop p50: {_locust_minus_loop(one, loop)}",
        *_over_transport_lines(fl, loop),
        "",
    ]
    return lines


def _over_transport_lines(fl: dict, loop: dict) -> list[str]:
    """Predict over gRPC against an empty round trip plus the in-process call, p50."""
    bare, empty, floor_predict = loop[BARE_PREDICT]["p50_ms"], loop[EMPTY_ROUND_TRIP]["p50_ms"], fl[PREDICT]["p50_ms"]
    client = loop[PREDICT]["p50_ms"]
    expected = empty + floor_predict
    lines = [
        f"- Bare stub predict / (empty round trip + in-process predict), p50: {bare:.2f} / ({empty:.2f} + "
        f"{floor_predict:.2f} = {expected:.2f}) ms = **{bare / expected:.2f}×**",
        f"- `RecommenderClient` predict / (empty round trip + in-process predict), p50: {client:.2f} / "
        f"{expected:.2f} ms = {client / expected:.2f}×",
    ]
    if SERVER_CALL_PATH in fl:
        path = fl[SERVER_CALL_PATH]["p50_ms"]
        lines.append(
            f"- Bare stub predict / (empty round trip + the server's call path), p50: {bare:.2f} / ({empty:.2f} + "
            f"{path:.2f}) ms = {bare / (empty + path):.2f}×; the server's own share: {bare - empty - path:.2f} ms per call"
        )
    return lines


def thin_client_section(results: dict) -> list[str]:
    """(b)'s thin client against the client before it and tensorflow-serving-api's stub, recommend k=10."""
    rows = results.get("thin_vs_stub")
    if not rows:
        return []
    thin, stub = rows[THIN_RECOMMEND], rows[STUB_RECOMMEND]
    old = rows.get(PREVIOUS_RECOMMEND, rows[OLD_PATH_RECOMMEND])
    baseline = "previous client" if PREVIOUS_RECOMMEND in rows else "previous path rebuilt"
    return [
        "### (b) The thin client against the previous one",
        "",
        *_ms_table(rows, 2),
        "",
        f"- Thin client / {baseline}, recommend p50: **{thin['p50_ms'] / old['p50_ms']:.2f}×** "
        f"({thin['p50_ms'] - old['p50_ms']:+.3f} ms)",
        f"- Thin client / bare stub, recommend p50: {thin['p50_ms'] / stub['p50_ms']:.2f}× "
        f"({thin['p50_ms'] - stub['p50_ms']:+.3f} ms per call)",
        "",
    ]


def _cpu(s: dict) -> str:
    return f"{s['server_cpu_s']:.0f} s / {s['load_generator_cpu_s']:.0f} s"


def _server_ms_per_request(s: dict) -> str:
    return f"{s['server_cpu_s'] / s['requests'] * 1000:.2f}" if s.get("requests") else "-"


def predict_section(results: dict) -> list[str]:
    run, off, on = results["run"], results["predict_off"], results["predict_on"]
    lines = [
        f"## (c) Predict throughput at {run['users']} users: server-side batching off vs on",
        "",
        f"`PredictUser` x{run['users']}, {run['load_time']} per run, predict batch 1. On: `--enable_batching` with "
        f"`serving/batching.cpu.config` ({run['batching']}), warmup on. Both servers: `--grpc_max_threads "
        f"{run['grpc_threads']}`.",
        "",
        "| batching | req/s | p50 ms | p99 ms | max ms | failures | CPU server / Locust | server CPU ms per request | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, s in (("off", off), ("on", on)):
        lines.append(
            f"| {label} | {s['rps']:.0f} | {format_ms(s['p50_ms'])} | {format_ms(s['p99_ms'])} | {format_ms(s['max_ms'])} | "
            f"{s['failures']} | {_cpu(s)} | {_server_ms_per_request(s)} | {s.get('load_average_1m', '-')} |"
        )
    return [*lines, "", f"- Batching on / off: **{on['rps'] / off['rps']:.2f}× throughput**", ""]


def _mix_rows(label: str, run: dict, floor_recommend_ms: float) -> list[str]:
    rows = []
    for name, s in run["by_name"].items():
        ratio = f"{(s['p50_ms'] or float('nan')) / floor_recommend_ms:.0f}x" if name == RECOMMEND_SIGNATURE else ""
        rows.append(
            f"| {label} | {name} | {s['rps']:.0f} | {format_ms(s['p50_ms'])} | {format_ms(s['p95_ms'])} | "
            f"{format_ms(s['p99_ms'])} | {format_ms(s['max_ms'])} | {s['failures']} | {ratio} |"
        )
    rows.append(
        f"| {label} | **all** | {run['rps']:.0f} | {format_ms(run['p50_ms'])} | {format_ms(run['p95_ms'])} | "
        f"{format_ms(run['p99_ms'])} | {format_ms(run['max_ms'])} | {run['failures']} | |"
    )
    return rows


def mix_section(results: dict) -> list[str]:
    run, off, on = results["run"], results["mix"], results["mix_on"]
    floor_recommend = results["floor"][RECOMMEND]["p50_ms"]
    p99_off, p99_on = off["p99_ms"] or float("nan"), on["p99_ms"] or float("nan")
    return [
        f"## (d) The default mix at {run['users']} users: batching off vs on",
        "",
        f"`RecommenderUser` x{run['users']} (the default mix), {run['load_time']} per run; servers as in (c).",
        "",
        "| batching | request | req/s | p50 ms | p95 ms | p99 ms | max ms | failures | p50 vs floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *_mix_rows("off", off, floor_recommend),
        *_mix_rows("on", on, floor_recommend),
        "",
        f"- Batching on / off, whole mix: **{on['rps'] / off['rps']:.2f}× throughput**",
        f"- p99 off → on: {p99_off:.1f} → {p99_on:.1f} ms ({'no worse' if p99_on <= p99_off else 'worse'})",
        f"- CPU server / Locust: off {_cpu(off)}, on {_cpu(on)}",
        f"- Server CPU per request: off {_server_ms_per_request(off)} ms, on {_server_ms_per_request(on)} ms",
        f"- 1-minute load average at the end of each run: off {off.get('load_average_1m', '-')}, "
        f"on {on.get('load_average_1m', '-')}",
        "",
    ]


def client_section(results: dict) -> list[str]:
    return [
        "## (e) Client overhead",
        "",
        "| call | µs per call |",
        "|---|---:|",
        *(f"| {name} | {us:.1f} |" for name, us in results["client_overhead_us"].items()),
        "",
    ]


def batch_costs(results: dict) -> dict[str, dict[int, float]] | None:
    """(f)'s CPU µs per graph run by signature and rows; JSON turns the row counts into strings, this turns them back."""
    costs = results.get("batch_costs")
    return {name: {int(n): us for n, us in by_size.items()} for name, by_size in costs.items()} if costs else None


def batching_ceiling(costs: dict[str, dict[int, float]], mix: dict) -> dict[str, float] | None:
    """The best batching on / off throughput ratio the mix could reach on these cores, from (d)'s off run and (f).

    Every request keeps its Locust and server CPU outside the graph; its graph CPU shrinks at best to
    the cheapest per-row share of a 32-row batch. docs/benchmarks.md says why that bounds the ratio.
    """
    requests = mix.get("requests") or 0
    if not requests or not mix.get("graph_runs") or "graph_cpu_s" not in mix:
        return None
    share = min(by_size[32] / 32 / by_size[1] for by_size in costs.values())
    graph = mix["graph_cpu_s"] / requests * 1000
    server = mix["server_cpu_s"] / requests * 1000
    locust = mix["load_generator_cpu_s"] / requests * 1000
    best_graph = graph * share
    return {
        "share_32": share,
        "graph_ms": graph,
        "best_graph_ms": best_graph,
        "server_ms": server,
        "locust_ms": locust,
        "ceiling": (locust + server) / (locust + server - graph + best_graph),
        # A load generator that cost nothing: only the server's own CPU per request left.
        "server_only_ceiling": server / (server - graph + best_graph),
    }


def _cost_table(costs: dict[str, dict[int, float]]) -> list[str]:
    sizes = sorted({n for by_size in costs.values() for n in by_size})
    lines = [
        "| signature | " + " | ".join(f"{n} rows µs" for n in sizes) + " | per row at 32 / at 1 |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for name, by_size in costs.items():
        cells = [f"{by_size[n]:.0f}" if n in by_size else "" for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {by_size[32] / 32 / by_size[1]:.2f} |")
    return lines


def _cpu_breakdown_table(runs: dict[str, dict]) -> list[str]:
    lines = [
        "| run | req/s | Locust | server outside the graph | graph runs | requests per graph run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, run in runs.items():
        n = run.get("requests") or 0
        if not n or "graph_cpu_s" not in run:
            continue
        lines.append(
            f"| {label} | {run['rps']:.0f} | {run['load_generator_cpu_s'] / n * 1000:.2f} | "
            f"{(run['server_cpu_s'] - run['graph_cpu_s']) / n * 1000:.2f} | {run['graph_cpu_s'] / n * 1000:.2f} | "
            f"{n / max(run['graph_runs'], 1):.1f} |"
        )
    return lines


def _ceiling_lines(ceiling: dict[str, float], measured: float, cores: int) -> list[str]:
    least = ceiling["locust_ms"] + ceiling["server_ms"] - ceiling["graph_ms"] + ceiling["best_graph_ms"]
    return [
        f"- CPU per mix request, batching off: {ceiling['locust_ms'] + ceiling['server_ms']:.2f} ms (Locust "
        f"{ceiling['locust_ms']:.2f}, server {ceiling['server_ms']:.2f}, of which graph runs {ceiling['graph_ms']:.2f})",
        f"- The same with every graph run cut to the cheapest per-row share ({ceiling['share_32']:.2f}) and batching "
        f"free: {least:.2f} ms",
        f"- Ceiling of the mix's batching on / off throughput on these {cores} cores: **{ceiling['ceiling']:.2f}×**; "
        f"(d) measured {measured:.2f}×",
        f"- The same ceiling with a load generator that cost nothing: {ceiling['server_only_ceiling']:.2f}×",
    ]


def batching_section(results: dict) -> list[str]:
    """(f): what a merged batch costs here, where the load runs' CPU went, and the ceiling that puts on (d)'s ratio."""
    costs = batch_costs(results)
    if not costs:
        return []
    mix, mix_on = results["mix"], results["mix_on"]
    runs = {"predict-only, off": results["predict_off"], "predict-only, on": results["predict_on"],
            "mix, off": mix, "mix, on": mix_on}  # fmt: skip
    lines = [
        "## (f) What batching can save on these cores",
        "",
        "### (f) CPU per graph run by batch size",
        "",
        *_cost_table(costs),
        "",
        "### (f) CPU per request in the load runs of (c) and (d), ms",
        "",
        *_cpu_breakdown_table(runs),
        "",
    ]
    ceiling = batching_ceiling(costs, mix)
    if ceiling is not None:
        lines += ["### (f) The ceiling on batching's gain", "", *_ceiling_lines(ceiling, mix_on["rps"] / mix["rps"],
                                                                              results["run"]["cores"]), ""]
    return lines


def reproduce_section(results: dict) -> list[str]:
    run = results["run"]
    load = f"--users {run['users']} --spawn-rate {run['users']} --run-time {run['load_time']}"
    return [
        "## Reproduce",
        "",
        "```sh",
        "make bench    # = .venv/bin/python -m loadtest.bench --model-base-path models/movielens --out BENCHMARKS.md",
        "# single pieces:",
        ".venv/bin/python -m loadtest.client_bench",
        f".venv/bin/python -m loadtest.local --predict-batch 1 {load} --user-class PredictUser --out reports/predict-off",
        f".venv/bin/python -m loadtest.local --enable-batching --predict-batch 1 {load} --user-class PredictUser "
        "--out reports/predict-on",
        f".venv/bin/python -m loadtest.local {load} --out reports/mix",
        f".venv/bin/python -m loadtest.local --enable-batching {load} --out reports/mix-on",
        "```",
        "",
        f"(b) and (c) use `--predict-batch 1`. Raw summaries and Locust's HTML reports of this run: `{run['reports']}/*/`; "
        f"every figure above: `{run['reports']}/results.json`.",
        "",
    ]
