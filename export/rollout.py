"""python -m export.rollout init|canary|promote|abort|rollback|status --config serving/models.config

Labelled rollouts: which exported versions the servers serve, and under which version label,
by rewriting the model config file TF Serving (and `python -m serving`) re-reads every
--model_config_file_poll_wait_seconds. Each change is one atomic rename of a complete file.

The config switches from the `latest` policy (every new version directory is served at once)
to a `specific` list of versions with labels:

- `stable`: what everyone gets; `canary`: the version on trial, asked for by label
  (`python -m client --label canary ...`); `previous`: the stable before the last promote,
  kept loaded so a rollback is instant.
- init [N]: pin the newest version (or N) as stable. From then on a new export is not served
  until it is made the canary. (N not loaded now: two writes, as canary.)
- canary [N]: serve version N (default: the newest exported) beside stable and point `canary`
  at it, in two writes (versions first, then the label once N is loaded: TF Serving refuses a
  label on a version it has not loaded).
- promote: stable becomes the canary, the old stable becomes `previous`.
- abort: drop the canary (stable unchanged).
- rollback: stable goes back to `previous`; any canary is dropped.

TF Serving answers a request that names no version or label with the highest loaded version,
which during a canary is the canary: clients that must stay on stable ask for it by label.
Exit codes: 0 done, 1 refused (nothing to promote, version missing...), 2 bad command line.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import cli, contract

STABLE, CANARY, PREVIOUS = "stable", "canary", "previous"
HEADER = """\
# TF Serving --model_config_file (tensorflow.serving.ModelServerConfig text proto), written by
# `python -m export.rollout {command}` (docs/rollouts.md): only the versions listed under
# `specific` are served; `stable` is what everyone gets, `canary` the version on trial (asked
# for by label), `previous` the stable before the last promote (kept loaded for rollback).
# Every server re-reads this file (--model_config_file_poll_wait_seconds).
"""


class RolloutError(RuntimeError):
    pass


@dataclass
class State:
    """One model's entry: its version policy and labels."""

    policy: str  # "latest" | "all" | "specific"
    versions: set[int] = field(default_factory=set)
    labels: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.policy != "specific":
            return f"policy {self.policy} (no labels): every new version directory is served"
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items(), key=lambda kv: kv[1])) or "none"
        return f"serving versions {', '.join(map(str, sorted(self.versions))) or '(none)'}; labels {labels}"


def _parse(path: Path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_server_config_pb2.ModelServerConfig())


def _entry(config, model_name: str):
    for entry in config.model_config_list.config:
        if entry.name == model_name:
            return entry
    raise RolloutError(f"the config lists no model {model_name!r}")


def read_state(path: Path, model_name: str = contract.MODEL_NAME) -> State:
    entry = _entry(_parse(path), model_name)
    policy = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
    versions = set(entry.model_version_policy.specific.versions) if policy == "specific" else set()
    return State(policy, versions, dict(entry.version_labels))


# Run after every rewrite (`--after-write`), e.g. the command that copies the file into a
# Kubernetes ConfigMap; a failure stops the rollout there.
AFTER_WRITE: list[str] = []


def _after_write(path: Path) -> None:
    import subprocess

    for command in AFTER_WRITE:
        result = subprocess.run(command, shell=True, check=False)
        if result.returncode != 0:
            raise RolloutError(f"{path} was rewritten but `{command}` failed (exit {result.returncode})")


def write_state(path: Path, state: State, command: str, model_name: str = contract.MODEL_NAME) -> None:
    """Rewrites ``path`` with ``state`` for ``model_name`` (other models untouched): temp file + rename."""
    from google.protobuf import text_format

    config = _parse(path)
    entry = _entry(config, model_name)
    entry.model_version_policy.Clear()
    if state.policy == "specific":
        entry.model_version_policy.specific.versions.extend(sorted(state.versions))
    else:
        entry.model_version_policy.latest.num_versions = 1
    entry.version_labels.clear()
    for label, version in sorted(state.labels.items()):
        entry.version_labels[label] = version
    text = HEADER.format(command=command) + text_format.MessageToString(config)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # servers run as other users
        os.replace(tmp, path)  # a poll reads the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _after_write(path)


class _Locked:
    """An exclusive flock for one read-modify-write (two rollouts never interleave).

    On the config's directory, not the file: the rename replaces the file's inode.
    """

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path.resolve().parent, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def _exported(base_path: Path) -> dict[int, Path]:
    from common.versions import list_versions

    return list_versions(base_path)


CHECK_ON_DISK = True  # --skip-version-check: the versions live elsewhere (a cluster's volume, a bucket)


def _require_on_disk(base_path: Path, version: int) -> None:
    if CHECK_ON_DISK and version not in _exported(base_path):
        raise RolloutError(f"version {version} is not in {base_path} (export it first: python -m export)")


def _require_version_check() -> None:
    """A version left to default (the newest exported) must be looked for on this machine."""
    if not CHECK_ON_DISK:
        raise RolloutError("name the version: the versions are not on this machine (--skip-version-check)")


def _require_labelled(state: State, path: Path) -> None:
    if state.policy != "specific" or STABLE not in state.labels:
        raise RolloutError(f"{path} has no stable label ({state.describe()}): run `python -m export.rollout init` first")


def _wait_available(servers: list[str], version: int, seconds: float, model_name: str) -> None:
    """Until every server reports ``version`` AVAILABLE (GetModelStatus on its own port), or a timeout."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    deadline = time.monotonic() + seconds
    for server in servers:
        with grpc.insecure_channel(server) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while True:
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = model_name
                request.model_spec.version.value = version
                try:
                    states = stub.GetModelStatus(request, timeout=5).model_version_status
                    if any(s.version == version and s.state == s.AVAILABLE for s in states):
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RolloutError(f"{server} did not report version {version} AVAILABLE within {seconds:.0f} s; "
                                       "the config lists it but the canary label was not set")
                time.sleep(0.5)


def _wait_loaded(servers: list[str] | None, version: int, seconds: float, model_name: str) -> None:
    """Until the servers have loaded ``version``: asked on their own ports if given, else ``seconds`` of sleep."""
    if servers:
        _wait_available(servers, version, seconds, model_name)
    else:
        time.sleep(seconds)


def _without_canary(labels: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in labels.items() if k != CANARY}


def init(path: Path, base_path: Path, version: int | None = None, servers: list[str] | None = None,
         wait_seconds: float = 10.0, model_name: str = contract.MODEL_NAME) -> State:
    with _Locked(path):
        state = read_state(path, model_name)
        if state.policy == "specific" and STABLE in state.labels and version is None:
            return state  # already labelled: nothing to do
        exported = _exported(base_path)
        newest = max(exported, default=None)
        version = version if version is not None else newest
        if version is None:
            _require_version_check()
            raise RolloutError(f"no version in {base_path} to pin as stable")
        _require_on_disk(base_path, version)
        loaded = (state.versions if state.policy == "specific" else {newest}) or set()
        if version not in loaded:
            # Not loaded now (the `latest` policy serves only the newest): load it before labelling it.
            write_state(path, State("specific", {version}), "init", model_name)
            _wait_loaded(servers, version, wait_seconds, model_name)
        new = State("specific", {version}, {STABLE: version})
        write_state(path, new, "init", model_name)
        return new


def canary(path: Path, base_path: Path, version: int | None = None, servers: list[str] | None = None,
           wait_seconds: float = 10.0, model_name: str = contract.MODEL_NAME, progress=print) -> State:
    with _Locked(path):
        state = read_state(path, model_name)
        _require_labelled(state, path)
        if version is None:
            _require_version_check()
            version = max(_exported(base_path), default=0)
        _require_on_disk(base_path, version)
        if version == state.labels[STABLE]:
            raise RolloutError(f"version {version} is already stable")
        kept = {state.labels[STABLE]} | ({state.labels[PREVIOUS]} if PREVIOUS in state.labels else set())
        labels = _without_canary(state.labels)
        # 1. Load it (no label yet): TF Serving refuses a label on a version it has not loaded.
        loading = State("specific", kept | {version}, labels)
        write_state(path, loading, f"canary {version}", model_name)
        progress(f"{path}: loading version {version} ({loading.describe()})")
        _wait_loaded(servers, version, wait_seconds, model_name)
        # 2. Then label it.
        new = State("specific", loading.versions, {**labels, CANARY: version})
        write_state(path, new, f"canary {version}", model_name)
        return new


def _relabel(path: Path, model_name: str, command: str, needs: str, refusal: str,
             relabel: Callable[[dict[str, int]], State]) -> State:
    """promote, abort, rollback: one write, under the lock, of what ``relabel`` makes of the labels.

    Refused with ``refusal`` when the config is not labelled or has no ``needs`` label.
    """
    with _Locked(path):
        state = read_state(path, model_name)
        _require_labelled(state, path)
        if needs not in state.labels:
            raise RolloutError(f"{refusal} ({state.describe()})")
        new = relabel(state.labels)
        write_state(path, new, command, model_name)
        return new


def promote(path: Path, model_name: str = contract.MODEL_NAME) -> State:
    def relabel(labels: dict[str, int]) -> State:
        stable, candidate = labels[STABLE], labels[CANARY]
        return State("specific", {stable, candidate}, {STABLE: candidate, PREVIOUS: stable})

    return _relabel(path, model_name, "promote", CANARY, "no canary to promote", relabel)


def abort(path: Path, model_name: str = contract.MODEL_NAME) -> State:
    def relabel(labels: dict[str, int]) -> State:
        kept = _without_canary(labels)
        return State("specific", set(kept.values()), kept)

    return _relabel(path, model_name, "abort", CANARY, "no canary to drop", relabel)


def rollback(path: Path, model_name: str = contract.MODEL_NAME) -> State:
    def relabel(labels: dict[str, int]) -> State:
        back = labels[PREVIOUS]
        # The label moves to a loaded version in the same write that unloads the rolled-back one.
        return State("specific", {back}, {STABLE: back})

    return _relabel(path, model_name, "rollback", PREVIOUS, "no previous stable version to go back to", relabel)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export.rollout", description=cli.plain(__doc__.split("\n\n", 1)[1]))
    parser.add_argument("command", choices=["init", "canary", "promote", "abort", "rollback", "status"])
    parser.add_argument("version", nargs="?", type=int, help="init, canary: the version (default: the newest exported)")
    parser.add_argument("--config", type=Path, default=Path("serving/models.config"),
                        help="the model config file the servers poll (default %(default)s)")
    parser.add_argument("--model-base-path", type=Path, default=Path(contract.MODEL_BASE_PATH),
                        help="where the exported versions are, on this machine (default %(default)s)")
    parser.add_argument("--model-name", default=contract.MODEL_NAME)
    parser.add_argument("--server", action="append", default=[], metavar="HOST:PORT",
                        help="canary (and init of a version not loaded now): a replica's own gRPC port to wait on "
                             "until the version is AVAILABLE before labelling it (repeat per replica); without it, "
                             "wait --wait-seconds")
    parser.add_argument("--wait-seconds", type=float, default=15.0,
                        help="canary: how long to wait (default %(default)s; with --server, the timeout). Allow for "
                             "the servers' config poll period and the load (Kubernetes: the kubelet's ConfigMap sync too)")
    parser.add_argument("--skip-version-check", action="store_true",
                        help="do not look for the version under --model-base-path (it is on a cluster's volume or in "
                             "a bucket); init and canary then need the version number")
    parser.add_argument("--after-write", action="append", default=[], metavar="COMMAND",
                        help="a shell command run after every rewrite, e.g. the one that copies the file into the "
                             "Kubernetes ConfigMap the servers mount (docs/kubernetes.md)")
    return parser


@cli.interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.config
    if not path.is_file():
        return cli.fail(f"{path} does not exist")
    global CHECK_ON_DISK
    CHECK_ON_DISK = not args.skip_version_check
    AFTER_WRITE[:] = args.after_write
    try:
        if args.command == "status":
            state = read_state(path, args.model_name)
            on_disk = sorted(_exported(args.model_base_path))
            print(f"{path}: {state.describe()}\n{args.model_base_path}: exported versions "
                  f"{', '.join(map(str, on_disk)) or '(none)'}")
            return cli.EXIT_OK
        if args.command == "init":
            state = init(path, args.model_base_path, args.version, args.server, args.wait_seconds, args.model_name)
        elif args.command == "canary":
            state = canary(path, args.model_base_path, args.version, args.server, args.wait_seconds, args.model_name)
        elif args.command == "promote":
            state = promote(path, args.model_name)
        elif args.command == "abort":
            state = abort(path, args.model_name)
        else:
            state = rollback(path, args.model_name)
    except RolloutError as e:
        return cli.fail(str(e))
    print(f"{args.command}: {path}: {state.describe()}", flush=True)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
