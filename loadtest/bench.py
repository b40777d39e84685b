"""``python -m loadtest.bench``: one benchmark run of the whole request path, written to BENCHMARKS.md.

Measures, on this machine, from the bottom up:
(a) the floor: the loaded SavedModel's signatures called in-process;
(b) gRPC latency with one user (a plain client loop, and Locust with one user);
    and an empty gRPC round trip (the health check), the transport's own floor;
(c) predict-only throughput and p99 at 32 users with TF-Serving-style batching off and on;
(d) the default 3:1:1 mix at 32 users with batching off and on (warmup on in both);
(e) the client's own overhead per call;
(f) what a merged batch costs by size, where each load run's CPU went (Locust, the server
    outside the graph, graph runs), and the ceiling that puts on batching's gain here.
It is a benchmark, not a test: it prints and writes numbers and never asserts on them. The
measurements go to ``--reports``/results.json, and loadtest.bench_report renders them into
``--out``'s bench part (the scale and edge sections there are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from common import cli
from common.quiet import native_stderr_silenced
from common.contract import (
    K,
    MODEL_BASE_PATH,
    MODEL_NAME,
    MODEL_CARD,
    MODEL_CARD_REQUEST,
    MODEL_CARD_SIGNATURE,
    MOVIE_ID,
    PREDICT_SIGNATURE,
    RATED_MOVIE_IDS,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    REPORTS_DIR,
    USER_ID,
)

with native_stderr_silenced():
    import numpy as np
    import tensorflow as tf

from client import NO_RETRIES, RecommenderClient
from loadtest.client_bench import measure as measure_client_overhead
from loadtest.local import BATCHING_CONFIG, newest_version
from loadtest.bench_report import (
    BARE_PREDICT,
    EMPTY_ROUND_TRIP,
    FROM_RATINGS,
    OLD_PATH_RECOMMEND,
    PREDICT,
    PREVIOUS_CLIENT_COMMIT,
    PREVIOUS_RECOMMEND,
    RECOMMEND,
    SERVER_CALL_PATH,
    STUB_RECOMMEND,
    THIN_RECOMMEND,
    render,
)
from loadtest.machine import SHARED_CORES_NOTE, this_machine
from loadtest.runner import LoadTest, gate, run_load_test

if TYPE_CHECKING:
    from serving.servable import LoadedVersion

USERS = 32
# gRPC handler threads for both servers of (b)-(d), batching off and on alike. A handler
# waiting in the batcher holds its thread, so with fewer threads than users in flight the
# rest wait in gRPC's queue and a batch can never hold more requests than there are
# threads (the server's default of 16 would cap it at half the users); 64 = max_batch_size.
GRPC_THREADS = 64
SAMPLE_USER = "42"
SAMPLE_MOVIE = "50"
_PREVIOUS_CLIENT_WORKER = """
import json, sys, time
from client import NO_RETRIES, RecommenderClient
client = RecommenderClient(sys.argv[1], retry=NO_RETRIES)
for _ in range(50):
    client.recommend("{user}", k=10)
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for _ in range(int(line)):
        start = time.perf_counter()
        client.recommend("{user}", k=10)
        times.append((time.perf_counter() - start) * 1000)
    print(json.dumps(times), flush=True)
"""


class PreviousClient:
    """The previous client (git PREVIOUS_CLIENT_COMMIT's client/ and common/) in a worker process,
    timing its own recommend calls in batches when asked; None when git or that commit is not at hand."""

    def __init__(self, process, folder: str) -> None:
        self.process, self.folder = process, folder

    @classmethod
    def start(cls, target: str) -> PreviousClient | None:
        import shutil
        import subprocess
        import tempfile

        repo = Path(__file__).resolve().parent.parent
        folder = tempfile.mkdtemp(prefix="previous-client-")
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", PREVIOUS_CLIENT_COMMIT, "client", "common"], capture_output=True
        )
        if archive.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": folder}
        process = subprocess.Popen(
            [sys.executable, "-c", _PREVIOUS_CLIENT_WORKER.format(user=SAMPLE_USER), target],
            cwd=folder, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        if process.stdout.readline().strip() != "ready":
            process.kill()
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return cls(process, folder)

    def times_ms(self, calls: int) -> list[float]:
        self.process.stdin.write(f"{calls}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        import shutil

        self.process.stdin.close()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def _percentiles_ms(fn: Callable[[], object], calls: int, warmup: int = 50) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    times *= 1000
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def floor(version_dir: Path, served: LoadedVersion, calls: int) -> dict[str, dict[str, float]]:
    """(a) The loaded signatures called directly: no network, no proto (de)serialization."""
    with native_stderr_silenced():  # TF logs a CUDA probe failure on first load; not news on a CPU box
        signatures = tf.saved_model.load(str(version_dir)).signatures
    predict, recommend = signatures[PREDICT_SIGNATURE], signatures[RECOMMEND_SIGNATURE]
    user, movie, k = tf.constant([SAMPLE_USER]), tf.constant([SAMPLE_MOVIE]), tf.constant([10], tf.int32)
    arrays = {USER_ID: np.array([SAMPLE_USER.encode()], dtype=object), MOVIE_ID: np.array([SAMPLE_MOVIE.encode()], dtype=object)}
    rows = {
        PREDICT: _percentiles_ms(lambda: predict(**{USER_ID: user, MOVIE_ID: movie}), calls),
        RECOMMEND: _percentiles_ms(lambda: recommend(**{USER_ID: user, K: k}), calls),
    }
    server_predict = served.runner(PREDICT_SIGNATURE)
    rows[SERVER_CALL_PATH] = _percentiles_ms(lambda: server_predict.run(arrays), calls)
    if RECOMMEND_FROM_RATINGS_SIGNATURE in signatures:  # default-preset models only
        card = json.loads(signatures[MODEL_CARD_SIGNATURE](**{MODEL_CARD_REQUEST: tf.constant([0])})[MODEL_CARD].numpy()[0])
        rated = tf.constant([card["vocabulary"]["movie_ids"][:20]])
        ratings = tf.constant([[float(1 + i % 5) for i in range(rated.shape[1])]])
        from_ratings = signatures[RECOMMEND_FROM_RATINGS_SIGNATURE]
        rows[FROM_RATINGS] = _percentiles_ms(
            lambda: from_ratings(**{USER_ID: tf.constant([""]), K: k, RATED_MOVIE_IDS: rated, RATINGS: ratings}), calls
        )
    return rows


BATCH_SIZES = (1, 8, 32)


def batch_costs(served: LoadedVersion, calls: int) -> dict[str, dict[int, float]]:
    """(f) CPU µs per call of each mix signature at batch 1, 8 and 32, on the server's call path.

    A merged batch costs what its graph run costs; whatever grows with the rows
    is what batching cannot save. CPU, not wall time: the load runs are bound by
    the cores, so CPU per request is what sets their throughput.
    """
    import random

    from tensorflow_serving.apis import predict_pb2

    from client import protocol
    from loadtest.traffic import sample_ratings

    card = json.loads(served.runner(MODEL_CARD_SIGNATURE).run({MODEL_CARD_REQUEST: np.array([0], np.int32)})[MODEL_CARD][0])
    users, movies = card["vocabulary"]["user_ids"], card["vocabulary"]["movie_ids"]
    rng = random.Random(0)

    def request(signature: str, n: int):
        if signature == PREDICT_SIGNATURE:
            return protocol.predict_request(MODEL_NAME, None, rng.choices(users, k=n), rng.choices(movies, k=n))
        if signature == RECOMMEND_SIGNATURE:
            return protocol.recommend_request(MODEL_NAME, None, rng.choices(users, k=n), 10)
        ids, rows = protocol.ratings_batch([sample_ratings(movies, rng) for _ in range(n)], None)
        return protocol.recommend_from_ratings_request(MODEL_NAME, None, ids, rows, 10)

    costs: dict[str, dict[int, float]] = {}
    for signature in (RECOMMEND_SIGNATURE, RECOMMEND_FROM_RATINGS_SIGNATURE, PREDICT_SIGNATURE):
        if signature not in served.signature_defs:
            continue
        runner = served.runner(signature)
        costs[signature] = {}
        for n in BATCH_SIZES:
            # The server decodes TF Serving's classes: the client's request, re-read as one.
            arrays = runner.arrays_from_protos(predict_pb2.PredictRequest.FromString(request(signature, n).SerializeToString()).inputs)
            repeats = max(50, 2 * calls // n)
            for _ in range(10):
                runner.run(arrays)
            start = time.process_time()
            for _ in range(repeats):
                runner.run(arrays)
            costs[signature][n] = (time.process_time() - start) / repeats * 1e6
    return costs


def _alternating_percentiles_ms(fns: dict[str, Callable[[], object]], calls: int, rounds: int = 4) -> dict[str, dict]:
    """Each of ``fns`` timed in turn, ``rounds`` times ``calls / rounds`` calls, so a slow spell of the
    shared machine hits them alike; percentiles over all of each one's calls."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        if not isinstance(fn, PreviousClient):  # the worker warmed up itself
            for _ in range(50):
                fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            if isinstance(fn, PreviousClient):
                samples[name] += fn.times_ms(max(calls // rounds, 1))
                continue
            for _ in range(max(calls // rounds, 1)):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
        for name, times in samples.items()
    }


def thin_client_vs_stub(target: str, calls: int) -> dict[str, dict[str, float]]:
    """(b) The thin client's whole recommend (validate, build, call, parse) against tensorflow-serving-api's
    own stub sending the same request prebuilt with its classes, on channels with the same options.

    The client before the thin one (TF Serving's generated stub and classes, TensorFlow imported) no longer
    exists; the stub alone, doing less per call than any client built on it, stands in for it."""
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from client import protocol
    from client.channel import open_channel

    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    from client.protocol import Recommendation

    request = predict_pb2.PredictRequest.FromString(
        protocol.recommend_request(MODEL_NAME, None, [SAMPLE_USER], 10).SerializeToString()
    )

    def shape(*dims: int):
        return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])

    def previous_path(stub, user: str, k: int) -> list:
        """What the client did before it was thin, per call: TF Serving's classes built field by field,
        its generated stub, the outputs decoded into Recommendations (validation aside)."""
        call = predict_pb2.PredictRequest()
        call.model_spec.name = MODEL_NAME
        call.model_spec.signature_name = RECOMMEND_SIGNATURE
        call.inputs[USER_ID].CopyFrom(
            tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape(1), string_val=[user.encode()])
        )
        call.inputs[K].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=shape(1), int_val=[k]))
        outputs = stub.Predict(call, timeout=5).outputs
        ids = [v.decode() for v in outputs["movie_ids"].string_val]
        titles = [v.decode() for v in outputs["movie_titles"].string_val]
        packed = outputs["scores"].tensor_content  # TF Serving packs floats; the local server may fill float_val
        scores = np.frombuffer(packed, "<f4").tolist() if packed else list(outputs["scores"].float_val)
        return [Recommendation(i, t, s) for i, t, s in zip(ids, titles, scores) if i]

    previous = PreviousClient.start(target)
    try:
        with RecommenderClient(target, retry=NO_RETRIES) as client, open_channel(target, NO_RETRIES) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            same = [(r.movie_id, r.title) for r in previous_path(stub, SAMPLE_USER, 10)]
            assert same == [(r.movie_id, r.title) for r in client.recommend(SAMPLE_USER, k=10)], same  # the same answer
            fns = {THIN_RECOMMEND: lambda: client.recommend(SAMPLE_USER, k=10)}
            if previous is not None:
                fns[PREVIOUS_RECOMMEND] = previous
            fns[OLD_PATH_RECOMMEND] = lambda: previous_path(stub, SAMPLE_USER, 10)
            fns[STUB_RECOMMEND] = lambda: stub.Predict(request, timeout=5)
            return _alternating_percentiles_ms(fns, calls)
    finally:
        if previous is not None:
            previous.close()


def client_loop(target: str, calls: int) -> dict[str, dict[str, float]]:
    """(b) cross-check: the same calls from a plain sequential client loop (no Locust, no gevent),
    plus an empty round trip: grpc.health.v1.Health/Check on the same kind of channel."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from client import protocol

    with RecommenderClient(target, retry=NO_RETRIES) as client:
        rows = {
            PREDICT: _percentiles_ms(lambda: client.predict(SAMPLE_USER, SAMPLE_MOVIE), calls),
            RECOMMEND: _percentiles_ms(lambda: client.recommend(SAMPLE_USER, k=10), calls),
        }
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        rows[EMPTY_ROUND_TRIP] = _percentiles_ms(lambda: health.Check(request, timeout=5), calls)
        # The same Predict as above from a bare stub on this plain channel, like the health check:
        # the transport's cost is then the same in both, and the difference is the server's.
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        # TF Serving's stub serializes with its own classes: the client's request, re-read as one.
        predict = predict_pb2.PredictRequest.FromString(
            protocol.predict_request(MODEL_NAME, None, [SAMPLE_USER], [SAMPLE_MOVIE]).SerializeToString()
        )
        rows[BARE_PREDICT] = _percentiles_ms(lambda: predictions.Predict(predict, timeout=5), calls)
    return rows


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads, not its children)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def graph_totals(metrics_url: str) -> tuple[float, float]:
    """(graph runs, graph CPU seconds) the server has counted so far, every model and signature."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    totals = {"serving_graph_runs_total": 0.0, "serving_graph_cpu_seconds_total": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["serving_graph_runs_total"], totals["serving_graph_cpu_seconds_total"]


def _load(server, name: str, out: Path, run_time: str, users: int, user_class: str, batch: str) -> dict:
    test = LoadTest(
        target=server.grpc_target, out=out / name, users=users, spawn_rate=users, run_time=run_time,
        user_class=user_class, predict_batch=batch,
    )  # fmt: skip
    runs_before, graph_before = graph_totals(server.metrics_url)
    cpu_before = _cpu_s(server.process.pid)
    print(f"   load: {name} ({user_class} x{users}, {run_time}, predict batch {batch}) ...", flush=True)
    summary = run_load_test(test)
    summary["server_cpu_s"] = round(_cpu_s(server.process.pid) - cpu_before, 2)
    runs_after, graph_after = graph_totals(server.metrics_url)
    # The model card read by each Locust process at start is one run among thousands.
    summary["graph_runs"] = int(runs_after - runs_before)
    summary["graph_cpu_s"] = round(graph_after - graph_before, 2)
    summary["load_average_1m"] = round(os.getloadavg()[0], 2)  # at the end of the run: this run and anything else
    for problem in gate(summary, max_p99_ms=None, max_fail_ratio=None):
        print(f"   warning: {name}: {problem}", flush=True)
    return summary


def batching_summary(path: Path = BATCHING_CONFIG) -> str:
    """The batching-on run's parameters, read from the file it uses, e.g. "max batch 64, 3 ms timeout, 2 batch threads"."""
    from serving.batching import BatchingOptions
    from serving.config import read_batching_parameters

    options = BatchingOptions.from_proto(read_batching_parameters(str(path)))
    return (
        f"max batch {options.max_batch_size}, {options.batch_timeout_micros / 1000:g} ms timeout, "
        f"{options.num_batch_threads} batch thread{'s' if options.num_batch_threads != 1 else ''}"
    )


def tensorflow_devices() -> str:
    """What TensorFlow itself can use here (the server runs on the same devices), read from the machine."""
    gpus = tf.config.list_physical_devices("GPU")
    return f"TensorFlow {tf.__version__} " + (f"using {len(gpus)} GPU{'s' if len(gpus) > 1 else ''}" if gpus else "on the CPU only")


def run_facts(args: argparse.Namespace, machine, version: int, elapsed_s: float) -> dict:
    """What the report says about the run besides its measurements: when, where, with which settings."""
    return {
        "date": dt.date.today().isoformat(),
        "elapsed_s": elapsed_s,
        "model": f"{args.model_base_path}/{version}",
        "machine": machine.describe(),
        "cores": machine.cores,
        "python": machine.python,
        "tensorflow": tensorflow_devices(),
        "batching": batching_summary(),
        "users": USERS,
        "grpc_threads": GRPC_THREADS,
        "calls": args.calls,
        "one_user_time": args.one_user_time,
        "load_time": args.load_time,
        "reports": str(args.reports),
    }


def keep_scale_section(path: Path, text: str) -> str:
    """``make bench-scale`` and ``make bench-edge`` write their sections between markers in the
    same file; a new bench keeps them."""
    from loadtest.scale_bench import END, START
    from loadtest.edge_bench import END as EDGE_END, START as EDGE_START

    old = path.read_text() if path.exists() else ""
    for start, end in ((START, END), (EDGE_START, EDGE_END)):
        if start in old and end in old:
            text = text.rstrip("\n") + "\n\n" + old[old.index(start) : old.index(end) + len(end)] + "\n"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=cli.plain(__doc__))
    parser.add_argument("--model-base-path", type=Path, default=Path(MODEL_BASE_PATH))
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--reports", type=Path, default=Path(REPORTS_DIR) / "bench")
    parser.add_argument("--calls", type=int, default=1000, help="calls per in-process / client-loop measurement")
    parser.add_argument("--one-user-time", default="15s")
    parser.add_argument("--load-time", default="30s")
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    cli.apply_verbose(args)
    from serving.launcher import start_local_server

    started = time.monotonic()
    version = newest_version(args.model_base_path)
    machine = this_machine()
    print(f"benchmark of {args.model_base_path}/{version} on {machine.describe()}; {SHARED_CORES_NOTE}", flush=True)
    results: dict = {"version": version}
    print("(e) client overhead ...", flush=True)
    results["client_overhead_us"] = measure_client_overhead()
    from serving.servable import load_version

    # The server's own call path (a session run in the calling thread), loaded as the server loads it.
    served = load_version("bench", version, args.model_base_path / str(version), warmup=False)
    try:
        print("(a) in-process floor ...", flush=True)
        results["floor"] = floor(args.model_base_path / str(version), served, args.calls)
        print("(f) graph cost by batch size ...", flush=True)
        results["batch_costs"] = batch_costs(served, args.calls)
    finally:
        served.release()
    print("(b)-(d) batching off: starting the local server ...", flush=True)
    threads = ["--grpc_max_threads", str(GRPC_THREADS)]
    with start_local_server(args.model_base_path, startup_timeout=120, extra_args=threads) as server:
        results["client_loop"] = client_loop(server.grpc_target, args.calls)
        results["thin_vs_stub"] = thin_client_vs_stub(server.grpc_target, args.calls)
        results["one_user"] = _load(server, "one-user", args.reports, args.one_user_time, 1, "RecommenderUser", "1")
        results["predict_off"] = _load(server, "predict-batching-off", args.reports, args.load_time, USERS, "PredictUser", "1")
        results["mix"] = _load(server, "mix", args.reports, args.load_time, USERS, "RecommenderUser", "1-50")
    print("(c)-(d) batching on: restarting the local server with --enable_batching (warmup on) ...", flush=True)
    with start_local_server(
        args.model_base_path,
        enable_batching=True,
        batching_parameters_file=BATCHING_CONFIG,
        startup_timeout=120,
        extra_args=threads,
    ) as server:
        results["predict_on"] = _load(server, "predict-batching-on", args.reports, args.load_time, USERS, "PredictUser", "1")
        results["mix_on"] = _load(server, "mix-batching-on", args.reports, args.load_time, USERS, "RecommenderUser", "1-50")
    results["run"] = run_facts(args, machine, version, time.monotonic() - started)
    results_path = args.reports / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    text = render(results)
    args.out.write_text(keep_scale_section(args.out, text))
    print(text)
    print(f"wrote {args.out} and {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
