"""``python -m loadtest``: run Locust headless against a recommender's gRPC address and report.

    python -m loadtest --target localhost:8500 --users 32 --spawn-rate 8 --run-time 30s --out reports/NAME

Writes Locust's CSV files and HTML report, plus ``summary.json`` (exact
percentiles from raw timings, see loadtest/summary.py), prints a compact table
naming the machine, and with ``--max-p99-ms`` / ``--max-fail-ratio`` becomes a
pass/fail gate (exit code 1 when a limit is broken). A run in which Locust's
users raised, or Locust exited with an error the failed requests do not
explain, exits 1 with or without limits: its numbers are missing requests.
TLS and a bearer token: ``--tls-ca``, ``--token``/``--token-file``, ``--client-cert``/
``--client-key``, ``--tls-server-name`` (or MOVIELENS_TLS_CA, …, as for ``python -m client``),
passed to every Locust user. Exit codes: 0 passed; 1 failed (a broken limit, no request succeeded, the
server cannot be reached, Locust recorded nothing); 2 a bad command line or
setting; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from client import auth
from client.channel import NO_RETRIES, open_channel
from common import cli
from common.contract import GRPC_PORT, REPORTS_DIR

from loadtest.machine import SHARED_CORES_NOTE, this_machine
from loadtest.traffic import DEFAULT_K, DEFAULT_PREDICT_BATCH, USER_CLASSES, predict_batch_range
from loadtest.summary import load_samples, locust_counts, locust_exceptions, locust_final, summarize, summary_table

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
EXIT_GATE_FAILED = cli.EXIT_FAILED
EXIT_RUN_FAILED = cli.EXIT_FAILED
CONNECT_TIMEOUT_S = 10.0


class LoadTestError(RuntimeError):
    """Locust did not produce any measurements (it crashed or could not start)."""


@dataclass(frozen=True)
class LoadTest:
    target: str  # the server's gRPC HOST:PORT
    out: Path
    users: int = 32
    spawn_rate: float = 8
    run_time: str = "30s"
    processes: int = 1
    user_class: str = "RecommenderUser"
    k: int = DEFAULT_K  # recommendations per recommend call (the server caps it at max_k)
    predict_batch: str = DEFAULT_PREDICT_BATCH  # pairs per predict call: "N" or "N-M" (uniform)
    env: dict[str, str] = field(default_factory=dict)  # more environment for Locust (e.g. LOCUST_* options)
    # TLS and a bearer token for every Locust user (client/auth.py): paths, and the token itself.
    tls_ca: str | None = None
    token: str | None = field(default=None, repr=False)
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        predict_batch_range(self.predict_batch)
        if self.users < 1 or self.spawn_rate <= 0:
            raise ValueError(f"users must be >= 1 and spawn_rate > 0, got {self.users} and {self.spawn_rate}")
        if self.processes == 0 or self.processes < -1:
            raise ValueError(f"processes must be >= 1 or -1 (one per core), got {self.processes}")
        if self.user_class not in USER_CLASSES:
            raise ValueError(f"user_class must be one of {USER_CLASSES}, got {self.user_class!r}")
        if ":" not in self.target or "://" in self.target:
            raise ValueError(f"target must be HOST:PORT of the gRPC API (no scheme), got {self.target!r}")
        auth.channel_credentials(self.target, self.security())  # ValueError: unreadable, or a token in clear

    def credential_keywords(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in auth.ENV_NAMES if key != "token_file"}

    def security(self) -> auth.Security:
        return auth.security(**self.credential_keywords())

    def locust_env(self) -> dict[str, str]:
        """The credentials as the locustfile reads them (LOADTEST_TLS_CA, ...); only those set."""
        return {
            f"LOADTEST_{auth.ENV_NAMES[key][0].removeprefix('MOVIELENS_')}": str(value)
            for key, value in self.credential_keywords().items()
            if value is not None
        }


def samples_dir(test: LoadTest) -> Path:
    """Where the locustfile writes every request's timing and Locust's final counts."""
    return test.out / "samples"


def locust_command(test: LoadTest) -> list[str]:
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        test.user_class,
        "--headless",
        "--host", test.target,  # Locust's name for the address its users call
        "--users", str(test.users),
        "--spawn-rate", str(test.spawn_rate),
        "--run-time", test.run_time,
        "--csv", str(test.out / "locust"),
        "--html", str(test.out / "report.html"),
        "--only-summary",
        "--stop-timeout", "10",  # let in-flight calls finish so their timings are kept
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if test.processes != 1:
        command += ["--processes", str(test.processes)]
    # The locustfile's own options (loadtest/locustfile.py).
    command += ["--recommend-k", str(test.k), "--predict-batch", test.predict_batch,
                "--samples-dir", str(samples_dir(test))]
    return command


def run_load_test(test: LoadTest) -> dict:
    """Run Locust, write summary.json into ``test.out``, return the summary."""
    test.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(samples_dir(test), ignore_errors=True)
    env = {
        **os.environ,
        **test.env,
        **test.locust_env(),
        "GRPC_VERBOSITY": os.environ.get("GRPC_VERBOSITY", "ERROR"),
    }
    log_path = test.out / "locust.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with log_path.open("w") as log:
        completed = subprocess.run(locust_command(test), env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall_s = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    samples = load_samples(samples_dir(test))
    if not samples:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise LoadTestError(f"locust exited with {completed.returncode} and recorded no requests; {log_path}:\n{tail}")
    machine = this_machine()
    summary = summarize(samples)
    final = locust_final(samples_dir(test))  # Locust's own final figures (its CSVs can miss the last second)
    summary["locust_counts"] = locust_counts(test.out / "locust_stats.csv", final)
    # Locust's own verdict: what its users raised outside the timed requests, and its exit code.
    summary["locust_exceptions"] = locust_exceptions(test.out / "locust_exceptions.csv", final)
    summary["locust_failures"] = (final or {}).get("failures", [])
    summary["locust_exit_code"] = completed.returncode
    summary["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(test).items()}
    if test.token is not None:
        summary["config"]["token"] = "(set, not recorded)"
    summary["machine"] = {**machine.to_dict(), "note": SHARED_CORES_NOTE}
    # CPU the load generator itself burned (all Locust processes, start-up included): on a
    # machine it shares with the server, this is capacity the server did not get.
    summary["load_generator_cpu_s"] = round(
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
    )
    summary["load_generator_wall_s"] = round(wall_s, 2)
    summary["files"] = {"html": str(test.out / "report.html"), "csv_prefix": str(test.out / "locust"), "log": str(log_path)}
    (test.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def title(test: LoadTest) -> str:
    procs = "" if test.processes == 1 else f", {test.processes} load processes"
    return f"{test.user_class} x{test.users} (spawn {test.spawn_rate:g}/s) for {test.run_time}{procs} -> {test.target}"


def gate(summary: dict, max_p99_ms: float | None, max_fail_ratio: float | None) -> list[str]:
    """The broken limits, as sentences; empty when the run passes.

    A run whose Locust users raised, or whose Locust exited for a reason the counted
    failures do not explain, fails whatever the limits: its numbers miss requests.
    """
    broken = _locust_problems(summary)
    if summary["requests"] and summary["failures"] == summary["requests"]:
        broken.append(f"every request failed ({summary['failures']} of {summary['requests']}; see locust_failures.csv)")
    if max_fail_ratio is not None:
        failures, requests = summary["failures"], summary["requests"]
        ratio = failures / requests if requests else 0.0
        if ratio > max_fail_ratio:
            broken.append(f"failure ratio {ratio:.2%} ({failures} of {requests}) > limit {max_fail_ratio:.2%}")
    if max_p99_ms is not None:
        p99 = summary["p99_ms"]
        if p99 is None:
            broken.append(f"no successful requests, so no p99 to hold to the limit of {max_p99_ms} ms")
        elif p99 > max_p99_ms:
            broken.append(f"p99 {p99} ms > limit {max_p99_ms} ms")
    return broken


def _locust_problems(summary: dict) -> list[str]:
    problems = []
    if summary["locust_exceptions"]:
        problems.append(
            f"Locust users raised {summary['locust_exceptions']} exception(s) outside the timed requests "
            "(see locust_exceptions.csv)"
        )
    # Locust exits 1 when a request failed or a user raised: the fail-ratio limit and the check
    # just above cover those, so only an exit code they do not explain is news.
    explained = 1 if summary["failures"] or summary["locust_exceptions"] else 0
    if summary["locust_exit_code"] not in (0, explained):
        problems.append(f"Locust exited with code {summary['locust_exit_code']} (see locust.log)")
    return problems


def add_arguments(parser: argparse.ArgumentParser, target: bool = True) -> None:
    if target:
        parser.add_argument("--target", help=f"the server's gRPC HOST:PORT, e.g. localhost:{GRPC_PORT} (required)")
        parser.add_argument("--host", dest="target", help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--users", type=int, default=32, help="concurrent Locust users (default %(default)s)")
    parser.add_argument("--spawn-rate", type=float, default=8, help="users started per second (default %(default)s)")
    parser.add_argument("--run-time", default="30s", help="e.g. 30s, 2m (default %(default)s)")
    parser.add_argument("--processes", type=int, default=1, help="load-generating processes; -1 = one per core")
    parser.add_argument("--user-class", choices=USER_CLASSES, default="RecommenderUser",
                        help="task mix (default %(default)s)")
    parser.add_argument("-k", "--k", type=int, default=int(os.environ.get("LOADTEST_K", DEFAULT_K)),
                        help="movies per recommend call, capped at the model's max_k (default %(default)s, "
                             "from $LOADTEST_K if set)")
    parser.add_argument("--predict-batch", default=os.environ.get("LOADTEST_PREDICT_BATCH", DEFAULT_PREDICT_BATCH),
                        metavar="N[-M]",
                        help="pairs per predict call, uniform in N-M (default %(default)s, "
                             "from $LOADTEST_PREDICT_BATCH if set)")
    parser.add_argument("--out", type=Path, default=Path(REPORTS_DIR) / "loadtest", help="report folder")
    parser.add_argument("--max-p99-ms", type=float, default=None, help="fail (exit 1) if overall p99 exceeds this")
    parser.add_argument("--max-fail-ratio", type=float, default=None, help="fail (exit 1) above this failure ratio")
    cli.add_verbose(parser)
    if target:  # a server of someone else's: TLS and a token, as the client's CLI takes them
        auth.add_arguments(parser)


def load_test(args: argparse.Namespace, target: str) -> LoadTest:
    """The LoadTest the command line asks for; ValueError names a bad value.

    Credentials come from the ``--tls-ca`` … flags (or MOVIELENS_* variables) only when the
    parser has them (``python -m loadtest``); a load test of a local server is plain text.
    """
    security = auth.keywords(args) if hasattr(args, "tls_ca") else {}
    return LoadTest(
        target=target, out=args.out, users=args.users, spawn_rate=args.spawn_rate,
        run_time=args.run_time, processes=args.processes, user_class=args.user_class,
        k=args.k, predict_batch=args.predict_batch, **security,
    )  # fmt: skip


def unreachable(
    target: str, timeout_s: float | None = None, security: auth.Security = auth.PLAINTEXT
) -> str | None:
    """Why no gRPC connection to ``target`` comes up within ``timeout_s`` (TLS handshake included), or None."""
    import grpc

    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    channel = open_channel(target, NO_RETRIES, security)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        tls = " with TLS: wrong --tls-ca or --tls-server-name, or a plain-text server?" if security.tls else ""
        return f"cannot reach the recommender at {target} (no gRPC connection within {timeout_s:g}s{tls})"
    finally:
        channel.close()
    return None


def run_and_report(test: LoadTest, max_p99_ms: float | None, max_fail_ratio: float | None) -> int:
    """Runs ``test``, prints the table and report paths, applies the gate; returns the exit code."""
    problem = unreachable(test.target, security=test.security())
    if problem:
        return cli.fail(problem)
    try:
        summary = run_load_test(test)
    except LoadTestError as error:
        return cli.fail(str(error), EXIT_RUN_FAILED)
    print(summary_table(summary, this_machine(), title(test)))
    print(f"report: {summary['files']['html']}  summary: {test.out / 'summary.json'}")
    broken = gate(summary, max_p99_ms, max_fail_ratio)
    for sentence in broken:
        print(f"GATE FAILED: {sentence}", file=sys.stderr)
    return EXIT_GATE_FAILED if broken else 0


@cli.interruptible
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=cli.plain(__doc__))
    add_arguments(parser)
    args = parser.parse_args(argv)
    cli.apply_verbose(args)
    if not args.target:
        parser.error("the following arguments are required: --target")
    try:
        test = load_test(args, args.target)
    except ValueError as error:
        parser.error(str(error))
    return run_and_report(test, args.max_p99_ms, args.max_fail_ratio)
