"""Start ``python -m serving`` as a subprocess: for the demo, the local load test, the bench and tests.

They need a real server on real ports, started the way users start it, and
stopped the way an orchestrator stops it (SIGTERM). ``start_local_server`` does exactly that on
free 127.0.0.1 ports, waits until grpc.health.v1 reports SERVING, and hands
back where to reach it. The server's output goes to a log file whose path is
on the handle, and is printed if startup fails, so a broken server explains
itself in the test output. The file is deleted when the server exits cleanly
and the caller's block raised nothing; otherwise it is kept for a post-mortem.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from portpicker import pick_unused_port

from common.contract import MODEL_NAME, PROMETHEUS_PATH

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LocalServer:
    grpc_target: str  # "127.0.0.1:PORT"
    rest_url: str  # "http://127.0.0.1:PORT"
    metrics_url: str  # full URL of the Prometheus page
    model_base_path: Path
    process: subprocess.Popen
    log_path: Path
    model_name: str = MODEL_NAME

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_serving(target: str, process: subprocess.Popen | None, timeout: float,
                       check: Callable[[], None] | None = None) -> None:
    """Polls grpc.health.v1 until SERVING; fails early if the process exits, or when ``check`` raises."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if check is not None:
                check()
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited with code {process.returncode} before it was SERVING")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"server at {target} was not SERVING after {timeout:.0f}s")


def child_env() -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH: a child runs this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def wait_or_kill(process: subprocess.Popen | None, timeout: float) -> int | None:
    """Waits up to ``timeout`` for an exit, then SIGKILLs; the exit code (negative: the signal)."""
    if process is None:
        return None
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode


def stop_server(process: subprocess.Popen | None, timeout: float = 60.0) -> int | None:
    """One SIGTERM (a second one would cut a drain short), then ``wait_or_kill``."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return wait_or_kill(process, timeout)


@contextlib.contextmanager
def start_local_server(
    model_base_path: str | Path,
    *,
    enable_batching: bool = False,
    batching_parameters_file: str | Path | None = None,
    poll_seconds: float = 1.0,
    extra_args: Sequence[str] = (),
    model_name: str = MODEL_NAME,
    startup_timeout: float = 180.0,
) -> Iterator[LocalServer]:
    grpc_port, rest_port, monitoring_port = pick_unused_port(), pick_unused_port(), pick_unused_port()
    args = [
        sys.executable, "-m", "serving",
        "--model_name", model_name,
        "--model_base_path", str(Path(model_base_path).resolve()),
        "--port", str(grpc_port),
        "--rest_api_port", str(rest_port),
        "--monitoring_port", str(monitoring_port),
        "--file_system_poll_wait_seconds", str(poll_seconds),
    ]
    if enable_batching:
        args.append("--enable_batching=true")
    if batching_parameters_file:
        args += ["--batching_parameters_file", str(batching_parameters_file)]
    args += list(extra_args)
    log_file = tempfile.NamedTemporaryFile(prefix="serving-", suffix=".log", delete=False)
    log_path = Path(log_file.name)
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=child_env(), stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    server = LocalServer(
        grpc_target=f"127.0.0.1:{grpc_port}",
        rest_url=f"http://127.0.0.1:{rest_port}",
        metrics_url=f"http://127.0.0.1:{monitoring_port}{PROMETHEUS_PATH}",
        model_base_path=Path(model_base_path),
        process=process,
        log_path=log_path,
        model_name=model_name,
    )
    try:
        try:
            wait_until_serving(server.grpc_target, process, startup_timeout)
        except Exception as exc:
            stop_server(process, timeout=10)
            raise RuntimeError(f"{exc}\n--- server log ({log_path}) ---\n{server.log_text()[-6000:]}") from exc
        yield server
    except BaseException:
        stop_server(process)
        raise
    if stop_server(process) == 0:
        log_path.unlink(missing_ok=True)
