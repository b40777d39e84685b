"""``python -m loadtest.local``: serve the newest exported model locally, load-test it, stop it.

The ``make loadtest`` step: one command that needs no running server. The
server is ``python -m serving`` on free 127.0.0.1 ports (serving.launcher),
serving the newest integer version under ``--model-base-path``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from common import cli
from common.contract import MODEL_BASE_PATH
from common.versions import list_versions

from loadtest.runner import add_arguments, load_test, run_and_report

if TYPE_CHECKING:
    from serving.launcher import LocalServer

# The local server runs on this machine's CPU: the CPU batching parameters (the GPU ones are
# serving/batching.config). Warmup stays on: every signature is batchable.
BATCHING_CONFIG = Path(__file__).resolve().parent.parent / "serving" / "batching.cpu.config"
# Stands in for the local server's address, which exists only once it runs (it picks free
# ports), so that a bad load-test setting is reported before a start that takes seconds.
NOT_STARTED_YET = "127.0.0.1:0"


def newest_version(model_base_path: Path) -> int:
    versions = list_versions(model_base_path)
    if not versions:
        raise FileNotFoundError(
            f"no exported model under {model_base_path}: expected integer version folders (run `make export`)"
        )
    return max(versions)


class NotServed(Exception):
    """No exported version, or the local server did not start: the one line the command fails with."""


@contextlib.contextmanager
def serve_newest(model_base_path: Path, announce: str, **server_options) -> Iterator[LocalServer]:
    """The local server (serving.launcher) on the newest version under ``model_base_path``, stopped on exit.

    ``announce`` is printed before the start, which takes seconds: a format string whose
    ``{served}`` is the version's folder. Raises ``NotServed`` before yielding.
    """
    try:
        version = newest_version(model_base_path)
    except FileNotFoundError as error:
        raise NotServed(str(error)) from None
    from serving.launcher import start_local_server

    print(announce.format(served=f"{model_base_path}/{version}"), flush=True)
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(start_local_server(model_base_path, **server_options))
        except RuntimeError as error:  # it did not start; the message ends with its log
            raise NotServed(f"the local server did not start: {error}") from None
        yield server


@cli.interruptible
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.local", description=cli.plain(__doc__))
    parser.add_argument("--model-base-path", type=Path, default=Path(MODEL_BASE_PATH),
                        help="integer version folders; the newest is served (default %(default)s)")
    parser.add_argument("--enable-batching", action="store_true", help="serve with server-side batching (serving/batching.cpu.config), warmup on")
    add_arguments(parser, target=False)
    args = parser.parse_args(argv)
    cli.apply_verbose(args)
    try:
        test = load_test(args, NOT_STARTED_YET)
    except ValueError as error:  # a bad setting: a usage error, reported before the server starts
        return cli.fail(str(error), cli.EXIT_USAGE)
    served = serve_newest(
        args.model_base_path, "starting the local server on {served} ...",
        enable_batching=args.enable_batching,
        batching_parameters_file=BATCHING_CONFIG if args.enable_batching else None,
        startup_timeout=120,
    )  # fmt: skip
    try:
        with served as server:
            print(f"serving at {server.grpc_target}; load test for {args.run_time} ...", flush=True)
            return run_and_report(replace(test, target=server.grpc_target), args.max_p99_ms, args.max_fail_ratio)
    except NotServed as error:
        return cli.fail(str(error))


if __name__ == "__main__":
    sys.exit(main())
