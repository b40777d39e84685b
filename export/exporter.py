"""Turns a training run into a versioned SavedModel that TF Serving hosts as-is.

TF Serving watches a base path and loads integer-named version directories.
A half-written version would be picked up mid-write, so the export builds the
whole version in a hidden sibling directory, verifies it by reloading it, and
only then renames it into place (a rename within one filesystem is atomic).

A killed export leaves its staging directory behind (``.N-xxxxxxxx``); the next
export into the same base path removes it. The rule: an exporter holds an
exclusive ``flock`` on its staging directory from creation to rename, and the
kernel drops that lock when the process dies, however it dies. A staging
directory whose lock can be taken therefore belongs to no live export (on this
host) and is removed; a locked one is a running export and is left alone, as is
any directory on a filesystem without ``flock``. No age threshold is involved,
so a slow export is never mistaken for an abandoned one.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from common import contract
from common.versions import list_versions
from export.serving_module import ServingModule
from train import run_dir as run_files
from train import trainer
from train.features import FeatureTables

# Ops that a stock tensorflow/serving binary does not have.
FORBIDDEN_OPS = {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
TOLERANCE = 1e-5


# The exporter's hidden staging directories: ".<version>-<mkdtemp suffix>" and ".<version>-replaced".
STAGING_NAME = re.compile(r"^\.\d+-.+")


class ExportError(RuntimeError):
    pass


def _lock(directory: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``directory``; None if it is locked or flock is unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live export (EWOULDBLOCK), or no flock on this filesystem
        os.close(fd)
        return None
    return fd


def locked_staging_dir(base_path: Path, version: int) -> tuple[Path, int | None]:
    """A new hidden staging directory and the descriptor that holds its lock for this export's lifetime."""
    while True:
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base_path))
        try:
            fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # another export's cleanup removed it before we could lock it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while another export's cleanup holds it
        except OSError:  # no flock on this filesystem: export unlocked (cleanups skip it too)
            os.close(fd)
            return staging, None
        if staging.exists() and os.path.samestat(os.fstat(fd), os.stat(staging)):
            return staging, fd
        os.close(fd)  # a cleanup removed it between mkdtemp and flock: take a new one


def remove_abandoned_staging(base_path: Path) -> list[Path]:
    """Removes staging directories of exports that no longer run (see the module's docstring)."""
    removed = []
    for path in sorted(base_path.iterdir()) if base_path.is_dir() else []:
        if not STAGING_NAME.match(path.name) or path.is_symlink() or not path.is_dir():
            continue
        fd = _lock(path)
        if fd is None:
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(path)
    return removed


def next_version(base_path: Path) -> int:
    return max(list_versions(base_path), default=0) + 1


def served_vocabulary(features: FeatureTables) -> dict[str, list[str]]:
    """Users with a training history and the recommendable movies: what a load generator should sample."""
    return {
        "user_ids": features.user_ids[features.history.lengths()[1:] > 0].tolist(),
        "movie_ids": features.movie_ids[features.catalogue - 1].tolist(),
    }


def sample_inputs(vocabulary: dict) -> dict[str, dict[str, np.ndarray]]:
    """Known and unknown ids, used for warmup and for self-verification, in the dtypes common/contract.py declares."""
    return {
        name: {key: np.asarray(value, dtype=contract.signature(name).input(key).numpy_dtype) for key, value in inputs.items()}
        for name, inputs in _sample_values(vocabulary).items()
    }


def _sample_values(vocabulary: dict) -> dict[str, dict[str, np.ndarray]]:
    users = vocabulary["user_ids"][:3] + ["unknown-user"]
    movies = vocabulary["movie_ids"][:3] + ["unknown-movie"]
    return {
        contract.PREDICT_SIGNATURE: {
            contract.USER_ID: np.array(users, dtype=object),
            contract.MOVIE_ID: np.array(movies, dtype=object),
        },
        contract.RECOMMEND_SIGNATURE: {
            contract.USER_ID: np.array(users[:2], dtype=object),
            contract.K: np.array([10, 10], dtype=np.int32),
        },
        contract.MODEL_CARD_SIGNATURE: {contract.MODEL_CARD_REQUEST: np.array([0], dtype=np.int32)},
        contract.RECOMMEND_FROM_RATINGS_SIGNATURE: {
            contract.USER_ID: np.array(["", users[0]], dtype=object),
            contract.K: np.array([10, 5], dtype=np.int32),
            # The leading "" (what TF Serving's batcher pads with), padding, an
            # unknown id and a repeated movie: the shapes a client sends.
            contract.RATED_MOVIE_IDS: np.array([["", movies[0], movies[1], "unknown-movie"], [movies[2], movies[2], "", ""]], dtype=object),
            contract.RATINGS: np.array([[0.0, 5.0, 3.5, 4.0], [4.0, 4.0, 0.0, 0.0]], dtype=np.float32),
        },
    }


def write_warmup(path: Path, samples: dict[str, dict[str, np.ndarray]]) -> int:
    """TF Serving replays these PredictionLogs at load time, so the first real request is not slow."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in samples.items():
            for size in (1, None):  # a single row and the full sample batch
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=contract.MODEL_NAME, signature_name=signature)
                )
                for key, value in inputs.items():
                    value = value[:size] if value.ndim and size else value
                    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
                count += 1
    return count


def model_card(run_dir: Path, version: int, module: ServingModule, vocabulary: dict) -> dict:
    """What a client can learn about the served model (the ``model_card`` signature and assets.extra/)."""
    metrics = run_files.read_metrics(run_dir)
    config = run_files.read_config_json(run_dir)
    return {
        "model_name": contract.MODEL_NAME,
        "version": version,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "run": run_dir.name,
        "metrics": {k: v for k, v in metrics.items() if k not in ("history", "dataset_sha256")},
        "config": config,
        "dataset": {"name": "MovieLens 100K", "sha256": metrics["dataset_sha256"]},
        # Ids the model has embeddings for, so load generators can sample realistic traffic.
        "vocabulary": vocabulary,
        "catalogue_size": module.catalogue_size,
        "max_k": module.max_k,
        "signatures": sorted(module.signatures()),
    }


def signature_table(loaded) -> str:
    lines = []
    for name, fn in sorted(loaded.signatures.items()):
        _, kwargs = fn.structured_input_signature
        ins = ", ".join(f"{k} {v.dtype.name}{_shape(v.shape)}" for k, v in sorted(kwargs.items()))
        outs = ", ".join(f"{k} {v.dtype.name}{_shape(v.shape)}" for k, v in sorted(fn.structured_outputs.items()))
        lines.append(f"  {name}({ins}) -> {outs}")
    return "\n".join(lines)


def _shape(shape: tf.TensorShape) -> str:
    return "[" + ",".join("-1" if d is None else str(d) for d in shape.as_list()) + "]"


def graph_ops(saved_model_dir: Path) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((saved_model_dir / "saved_model.pb").read_bytes())
    ops = set()
    for meta in proto.meta_graphs:
        ops.update(node.op for node in meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            ops.update(node.op for node in fn.node_def)
    return ops


def non_stock_ops(directory: Path) -> set[str]:
    """Ops that a stock tensorflow/serving binary lacks: Python callbacks and custom-op libraries."""
    from tensorflow.python.framework import op_def_registry

    ops = graph_ops(directory)
    return (ops & FORBIDDEN_OPS) | {op for op in ops if op_def_registry.get(op) is None}


def verify(directory: Path, module: ServingModule, samples: dict) -> str:
    """Reloads the export, runs every signature and compares with the in-memory model."""
    forbidden = non_stock_ops(directory)
    if forbidden:
        raise ExportError(f"graph uses ops TF Serving does not have: {sorted(forbidden)}")
    loaded = tf.saved_model.load(str(directory))
    outputs = {}
    for name, inputs in samples.items():
        outputs[name] = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    missing = set(module.signatures()) - set(loaded.signatures)
    if missing:
        raise ExportError(f"reloaded model lacks signatures {sorted(missing)}")
    for name, fn in loaded.signatures.items():  # the API as common/contract.py declares it
        _, kwargs = fn.structured_input_signature
        for side, declared, specs in (("input", contract.signature(name).inputs, kwargs),
                                      ("output", contract.signature(name).outputs, fn.structured_outputs)):
            actual = {k: (tf.as_dtype(v.dtype).as_datatype_enum, v.shape) for k, v in specs.items()}
            if set(actual) != {t.name for t in declared}:
                raise ExportError(f"{name} {side}s {sorted(actual)}, common/contract.py declares {[t.name for t in declared]}")
            for t in declared:
                dtype, shape = actual[t.name]
                dims = None if shape.rank is None else tuple(-1 if d is None else d for d in shape.as_list())
                if types_pb2.DataType.Name(dtype) != t.dtype or not contract.shape_matches(t.shape, dims):
                    raise ExportError(f"{name} {side} {t.name!r} is {types_pb2.DataType.Name(dtype)} {dims}, "
                                      f"common/contract.py declares {t.dtype} {t.shape}")
    # The reloaded graph must answer exactly as the in-memory module did.
    in_memory = {name: fn for name, fn in module.signatures().items() if name != contract.MODEL_CARD_SIGNATURE}
    diff = 0.0
    for name, fn in in_memory.items():
        for key, want in fn(**{k: tf.constant(v) for k, v in samples[name].items()}).items():
            got, want = outputs[name][key].numpy(), want.numpy()
            if got.shape != want.shape or (want.dtype == object and not np.array_equal(got, want)):
                raise ExportError(f"reloaded {name} output {key!r} differs from the in-memory model")
            if want.dtype != object:
                # Padding past a row's k is -inf in both; equal values (inf included) differ by 0.
                with np.errstate(invalid="ignore"):
                    gap = np.where(got == want, 0.0, np.abs(got - want))
                diff = max(diff, float(np.nan_to_num(np.max(gap, initial=0.0), nan=np.inf)))
    if diff > TOLERANCE:
        raise ExportError(f"reloaded outputs differ from the in-memory model by {diff:.2e} > {TOLERANCE}")
    scores = outputs[contract.RECOMMEND_SIGNATURE][contract.SCORES].numpy()
    if not (np.all(np.isfinite(scores)) and np.all(np.diff(scores, axis=1) <= 0)):
        raise ExportError("recommend returned non-finite or unsorted scores")
    for card in outputs[contract.MODEL_CARD_SIGNATURE][contract.MODEL_CARD].numpy():
        json.loads(card)
    return f"verified: max |reloaded - in-memory| over every output = {diff:.1e}\n" + signature_table(loaded)


class GateRefused(ExportError):
    """The new version is worse than the served one beyond the tolerance: nothing was published."""


@dataclass(frozen=True)
class Gate:
    """Compare with the served version before publishing (export/gate.py)."""

    data_dir: Path | None = None  # the data the run trained on; None: $MOVIELENS_DIR, the cache
    models_config: Path | None = None  # the config the servers poll: its `stable` label is "served"
    tolerance: float = 0.02


def run_gate(gate: Gate, run_dir: Path, base_path: Path, version: int, module: ServingModule, config,
             force: bool, step: Callable[[str], None]) -> dict:
    """The gate's record for the model card; raises GateRefused unless the candidate passes (or ``force``)."""
    from export import gate as gates

    served = gates.served_version(base_path, gate.models_config)
    record = {"tolerance": gate.tolerance, "split": config.split, "part": "validation", "served_version": served}
    if served is None:
        step("gate: no version is served yet: nothing to compare with")
        return {**record, "passed": True, "forced": False}
    step(f"gate: measuring version {version} and the served version {served} on {run_dir}'s validation part ...")
    try:
        from train.download import DataUnavailable, locate

        data_dir = locate(gate.data_dir)
        metrics = run_files.read_metrics(run_dir)
        part = gates.ValidationPart.of(data_dir, config, metrics.get("dataset_sha256"))
        candidate = gates.figures(module.signatures(), part)
        served_figures = gates.figures(tf.saved_model.load(str(base_path / str(served))).signatures, part)
    except (gates.GateError, DataUnavailable, OSError, ValueError, KeyError, tf.errors.OpError) as e:
        if not force:
            raise ExportError(f"gate: cannot compare with the served version {served}: {e} "
                              "(--force publishes without the comparison, recorded in the model card)") from e
        step(f"gate: FORCED past: cannot compare with the served version {served}: {e}")
        return {**record, "passed": None, "forced": True, "error": str(e)}
    failures = gates.worse(candidate, served_figures, gate.tolerance)
    record.update(candidate=candidate, served=served_figures, passed=not failures, forced=bool(failures and force),
                  worse=failures)
    step(f"gate: version {version}: {gates.describe(candidate)}")
    step(f"gate: served {served}: {gates.describe(served_figures)}")
    if failures and not force:
        raise GateRefused(
            f"refused: version {version} ({run_dir}) is worse than the served version {served} on the validation part: "
            + "; ".join(failures) + f". Candidate {gates.describe(candidate)}; served {gates.describe(served_figures)}. "
            "Nothing was published; --force publishes anyway (recorded in the model card)")
    step("gate: " + ("FORCED past: " + "; ".join(failures) if failures else f"passed (tolerance {gate.tolerance:.0%})"))
    return record


def export_run(
    run_dir: Path, base_path: Path, version: int | None = None, force: bool = False,
    progress: Callable[[str], None] | None = None, gate: Gate | None = None,
) -> Path:
    """Exports ``run_dir`` to ``base_path/<version>``; returns the version directory.

    ``progress`` (e.g. ``print``) is told each step as it starts. ``gate``: publish only if the
    version is not worse than the served one (export/gate.py), else raise GateRefused before
    anything is written; ``force`` publishes anyway and records it in the model card.
    """
    step = progress or (lambda message: None)
    started = time.perf_counter()
    run_dir, base_path = Path(run_dir), Path(base_path)
    if not run_files.is_finished(run_dir):
        raise ExportError(f"{run_dir} is not a finished training run (no {run_files.METRICS_FILE})")
    base_path.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(base_path)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    target = base_path / str(version)
    if target.exists() and not force:
        raise ExportError(f"{target} exists; pass --force to replace it")
    for path in remove_abandoned_staging(base_path):
        step(f"removed {path}, left by an export that no longer runs")

    step(f"loading the run {run_dir} ...")
    recommender, train_config, features = trainer.load_recommender(run_dir)
    module = ServingModule(recommender, features, model_card_json="")
    vocabulary = served_vocabulary(features)
    gate_record = run_gate(gate, run_dir, base_path, version, module, train_config, force, step) if gate else None
    card = model_card(run_dir, version, module, vocabulary)
    if gate_record is not None:
        card["rollout_gate"] = gate_record
    module.card.assign(json.dumps(card, indent=2))
    samples = {name: inputs for name, inputs in sample_inputs(vocabulary).items() if name in module.signatures()}

    # Hidden names (leading dot) are not integer versions, so a server polling
    # the base path ignores the directory until the rename.
    staging, lock = locked_staging_dir(base_path, version)
    try:
        step(f"writing the SavedModel into {staging} ...")
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        step("writing the warmup requests and the model card ...")
        write_warmup(staging / contract.WARMUP_FILE, samples)
        (staging / contract.MODEL_CARD_FILE).write_text(json.dumps(card, indent=2))
        step("verifying: reloading it and running every signature against the in-memory model ...")
        report = verify(staging, module, samples)
        staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
        step(f"renaming {staging.name} -> {target.name}" + (" (replacing it)" if target.exists() else ""))
        # --force: move the old version aside first, so the version number is
        # never missing while a server polls (TF Serving would unload it).
        replaced = staging.with_name(f".{version}-replaced") if target.exists() else None
        if replaced:
            target.rename(replaced)
        staging.rename(target)
        if replaced:
            shutil.rmtree(replaced, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    print(f"exported {run_dir} -> {target} in {time.perf_counter() - started:.1f} s\n{report}")
    return target
