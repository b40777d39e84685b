"""``python -m loadtest.edge_bench``: one caller floods the public entry, another keeps its pace.

Two replicas behind the real Envoy (``serving.cluster``, compose's envoy.yaml), two callers
with their own development tokens, each a separate process with its own TLS connection,
sending Predict (batch 1) open-loop at a fixed rate:

1. baseline: the steady caller alone, ``--seconds`` long (after a 5 s warm-up that is not counted);
2. flood: the same steady caller, and a flooder sending ``--flood-factor`` times its rate
   limit for the same time.

The per-caller limit in this run is ``--limit`` requests/s with a burst of one second's
worth (envoy.yaml's default is 100/s, burst 200): the rendered config differs from the
file only in that token bucket, so that a Python load generator sharing the 2 cores with
Envoy and both replicas can offer 20x the limit. The mechanism (one bucket per token
``sub``, refusals answered by Envoy) is the file's.

What it shows: the flooder gets RESOURCE_EXHAUSTED for the excess (about ``limit`` per
second answered), the steady caller has no failures and its p99 stays within 2x of its
baseline p99. The replicas' own Predict counters say how much of the flood reached them.
``--out BENCHMARKS.md`` writes the figures into that file's edge section (between markers;
the rest of the file is left alone). tests/replicas_test.py asserts the same on a run
(``make test-replicas``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import json
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from common import cli
from common.contract import MODEL_BASE_PATH, MODEL_NAME, MOVIE_ID, USER_ID

START, END = "<!-- edge:start -->", "<!-- edge:end -->"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
DEFAULT_LIMIT = 20  # requests/s per caller in this run (envoy.yaml: 100)
DEFAULT_STEADY = 10  # the steady caller's rate, half its limit
DEFAULT_FACTOR = 20
DEFAULT_SECONDS = 30
FILL_S = 0.1  # envoy.yaml's fill interval
WARMUP_S = 5


# --- the config of this run -----------------------------------------------------------------


def with_caller_limit(template: dict, per_second: int) -> dict:
    """envoy.yaml with every caller's default bucket at ``per_second`` (burst: one second's worth)."""
    if per_second % round(1 / FILL_S):
        raise ValueError(f"the limit must be a multiple of {round(1 / FILL_S)}/s, got {per_second}")
    config = copy.deepcopy(template)
    changed = 0
    for listener in config["static_resources"]["listeners"]:
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for http_filter in manager.get("http_filters", []):
            if http_filter["name"] != "envoy.filters.http.local_ratelimit":
                continue
            for descriptor in http_filter["typed_config"]["descriptors"]:
                if descriptor["entries"] == [{"key": "caller", "value": ""}]:  # the wildcard: every other caller
                    descriptor["token_bucket"] = {"max_tokens": per_second,
                                                  "tokens_per_fill": int(per_second * FILL_S),
                                                  "fill_interval": f"{FILL_S}s"}  # fmt: skip
                    changed += 1
    if changed != 2:
        raise ValueError(f"expected the per-caller bucket on both listeners, changed {changed}")
    return config


# --- one caller (a process of its own) ----------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _call_at_rate(target: str, ca: bytes, token: str, body: bytes, rate: float, seconds: float) -> dict:
    import grpc

    latencies: list[float] = []
    codes: Counter[str] = Counter()
    async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:
        predict = channel.unary_unary(PREDICT)  # bytes in, bytes out: the request is serialized once
        metadata = (("authorization", f"Bearer {token}"),)
        await predict(body, metadata=metadata, timeout=10)  # the TLS connection, before the clock starts

        async def one() -> None:
            sent = time.perf_counter()
            try:
                await predict(body, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] += 1
            else:
                codes["OK"] += 1
                latencies.append((time.perf_counter() - sent) * 1000)

        tasks = []
        started = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):  # open loop: each call at its time, whatever the earlier ones are doing
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        sending_s = time.perf_counter() - started
        await asyncio.gather(*tasks)
    return {"sent": total, "offered_rps": round(total / sending_s, 1), "codes": dict(codes),
            "p50_ms": _percentile(latencies, 0.50), "p99_ms": _percentile(latencies, 0.99),
            "max_ms": max(latencies) if latencies else None}  # fmt: skip


def _caller_process(queue, target: str, ca: bytes, token: str, body: bytes, rate: float, seconds: float) -> None:
    queue.put(asyncio.run(_call_at_rate(target, ca, token, body, rate, seconds)))


def _predict_body() -> bytes:
    from client.messages import PredictRequest  # TF Serving's message without TensorFlow

    request = PredictRequest()
    request.model_spec.name = MODEL_NAME
    for name, value in ((USER_ID, b"42"), (MOVIE_ID, b"50")):
        tensor = request.inputs[name]
        tensor.dtype = 7  # DT_STRING
        tensor.tensor_shape.dim.add().size = 1
        tensor.string_val.append(value)
    return request.SerializeToString()


def run_callers(target: str, ca: bytes, callers: dict[str, tuple[str, float]], body: bytes,
                seconds: float) -> dict[str, dict]:  # fmt: skip
    """``callers``: name -> (token, requests/s), all at once, each in a fresh process."""
    context = multiprocessing.get_context("spawn")  # gRPC and fork do not mix
    queues, processes = {}, {}
    for name, (token, rate) in callers.items():
        queues[name] = context.Queue()
        processes[name] = context.Process(target=_caller_process, name=name,
                                          args=(queues[name], target, ca, token, body, rate, seconds))  # fmt: skip
        processes[name].start()
    results = {name: queue.get(timeout=seconds + 120) for name, queue in queues.items()}
    for process in processes.values():
        process.join(30)
    return results


# --- the measurement --------------------------------------------------------------------------


def measure(model_base_path: Path, limit: int = DEFAULT_LIMIT, steady_rps: float = DEFAULT_STEADY,
            factor: float = DEFAULT_FACTOR, seconds: float = DEFAULT_SECONDS, workdir: Path | None = None) -> dict:  # fmt: skip
    from serving.cluster import LocalCluster, load_envoy_template, served_requests, write_envoy_config

    import os

    load_before = os.getloadavg()[0]
    workdir = Path(workdir or tempfile.mkdtemp(prefix="edge-bench-"))
    template = workdir / "envoy-template.yaml"
    write_envoy_config(with_caller_limit(load_envoy_template(), limit), template)
    body = _predict_body()
    with LocalCluster(model_base_path, 2, workdir=workdir / "cluster", credentials=workdir / "credentials",
                      envoy_config=template) as cluster:  # fmt: skip
        ca = cluster.tls_ca.read_bytes()
        steady, flooder = cluster.token("steady"), cluster.token("flooder")

        def predicts() -> int:
            return sum(served_requests(m.metrics_url(cluster.host), "Predict") for m in cluster.members)

        # Warm-up (not measured): both callers' first seconds on fresh replicas and a fresh Envoy.
        run_callers(cluster.grpc_target, ca, {"steady": (steady, steady_rps)}, body, WARMUP_S)
        before = predicts()
        baseline = run_callers(cluster.grpc_target, ca, {"steady": (steady, steady_rps)}, body, seconds)
        middle = predicts()
        flood = run_callers(cluster.grpc_target, ca, {"steady": (steady, steady_rps),
                                                      "flooder": (flooder, factor * limit)}, body, seconds)  # fmt: skip
        after = predicts()
    return {
        "limit_rps": limit, "burst": limit, "steady_rps": steady_rps, "flood_rps": factor * limit, "factor": factor,
        "seconds": seconds, "baseline": baseline["steady"], "steady": flood["steady"], "flooder": flood["flooder"],
        # Minus the one connection-opening call each caller makes before its clock starts.
        "replica_predicts": {"baseline": middle - before - 1, "flood": after - middle - 2},
        # The machine's 1-minute load average before and after: other work on the same 2 cores shows here.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }  # fmt: skip


def verdict(results: dict) -> dict[str, bool]:
    steady, baseline, flooder = results["steady"], results["baseline"], results["flooder"]
    admitted_max = results["burst"] + results["limit_rps"] * results["seconds"] * 1.1
    return {
        "flooder refused with RESOURCE_EXHAUSTED": flooder["codes"].get("RESOURCE_EXHAUSTED", 0) > 0
        and flooder["codes"].get("OK", 0) <= admitted_max,
        "steady caller: 0 failures": steady["codes"] == {"OK": steady["sent"]}
        and baseline["codes"] == {"OK": baseline["sent"]},
        "steady caller p99 within 2x of its baseline": steady["p99_ms"] <= 2 * baseline["p99_ms"],
    }


def render(results: dict, machine: str, elapsed_s: float) -> str:
    steady, baseline, flooder = results["steady"], results["baseline"], results["flooder"]
    codes = flooder["codes"]
    checks = verdict(results)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def row(name: str, r: dict) -> str:
        failures = r["sent"] - r["codes"].get("OK", 0)
        return (f"| {name} | {r['offered_rps']:.0f} | {r['sent']:,} | {r['codes'].get('OK', 0):,} | {failures:,} | "
                f"{ms(r['p50_ms'])} | {ms(r['p99_ms'])} |")  # fmt: skip

    lines = [
        START,
        "## Edge: a flooding caller next to a steady one",
        "",
        f"One run of `make bench-edge` on {dt.date.today().isoformat()} ({elapsed_s / 60:.1f} min): two replicas "
        "behind the real Envoy (`python -m serving.cluster`, compose's `serving/envoy/envoy.yaml`), two callers "
        "with their own development tokens, each its own process and TLS connection, sending Predict (batch 1) "
        f"open-loop for {results['seconds']:.0f} s per phase.",
        "",
        f"**Machine:** {machine}. **The callers, Envoy and both replicas share these 2 cores**: the flooder's "
        "own CPU (a Python gRPC client) competes with the steady caller and the servers. 1-minute load average "
        f"{results['load_average'][0]:.1f} before the run, {results['load_average'][1]:.1f} after.",
        "",
        f"Per-caller limit in this run: **{results['limit_rps']} requests/s, burst {results['burst']}** (the "
        "config differs from envoy.yaml only in that bucket, whose default is 100/s, burst 200, so that a Python "
        f"load generator on these cores can offer {results['factor']:.0f}x it). Steady caller "
        f"{results['steady_rps']:.0f}/s (within its limit); flooder {results['flood_rps']:.0f}/s "
        f"({results['factor']:.0f}x its limit).",
        "",
        "| caller | offered req/s | sent | answered | refused / failed | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("steady, alone (baseline)", baseline),
        row("steady, during the flood", steady),
        row("flooder", flooder),
        "",
        f"Flooder's answers: {', '.join(f'{k} {v:,}' for k, v in sorted(codes.items()))}. "
        f"The replicas' own Predict counters rose by {results['replica_predicts']['flood']:,} during the flood "
        f"phase (steady + the flooder's admitted calls), {results['replica_predicts']['baseline']:,} in the "
        "baseline: the refused calls never reached a replica.",
        "",
        f"Steady caller p99 during the flood / alone: **{steady['p99_ms'] / baseline['p99_ms']:.2f}x** "
        "(target: within 2x).",
        "",
        *[f"- {'met' if ok else 'NOT met'}: {name}" for name, ok in checks.items()],
        "",
        "Reproduce: `make bench-edge` (`python -m loadtest.edge_bench --out BENCHMARKS.md`); "
        "`make test-replicas` runs the same measurement as a test.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replaces the edge section of ``path`` (or appends it), leaving the rest of the file alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.edge_bench", description=cli.plain(__doc__))
    parser.add_argument("--model-base-path", type=Path, default=Path(MODEL_BASE_PATH))
    parser.add_argument("--out", type=Path, default=None, help="write the edge section of this file (BENCHMARKS.md)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="per-caller requests/s (default %(default)s)")
    parser.add_argument("--steady-rps", type=float, default=DEFAULT_STEADY)
    parser.add_argument("--flood-factor", type=float, default=DEFAULT_FACTOR)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per phase (default %(default)s)")
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    cli.apply_verbose(args)
    from common.versions import list_versions
    from loadtest.machine import this_machine

    if not list_versions(args.model_base_path):
        return cli.fail(f"no exported model under {args.model_base_path} (run `make export`)")
    started = time.monotonic()
    results = measure(args.model_base_path, args.limit, args.steady_rps, args.flood_factor, args.seconds)
    text = render(results, this_machine().describe(), time.monotonic() - started)
    print(json.dumps(results, indent=1))
    print(text)
    if args.out:
        write_section(args.out, text)
        print(f"wrote the edge section of {args.out}")
    return cli.EXIT_OK if all(verdict(results).values()) else cli.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
