"""One loaded model version: its signatures, its batcher, its warmup and in-flight count.

TF Serving's unit of loading is a servable (one version of one model). Keeping
everything that belongs to a version on one object lets the model manager swap
versions by swapping a reference: a request that already holds the old object
finishes on it, even while the manager has moved traffic to the new one. The
old object is released once its in-flight count drops to zero, or when the
manager's unload deadline passes (60 s by default, --drain_seconds at shutdown)
with requests still running: those then fail rather than hold the version forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from common.contract import PREDICT_METHOD, WARMUP_FILE
from serving import cancellation
from serving.batching import BatchingOptions, BatchScheduler
from serving.errors import ServingError, failed_precondition, unimplemented
from serving.session_bundle import SessionBundle, SessionSignatureRunner
from serving.signature_runner import DEFAULT_SIGNATURE, SignatureRunner

log = logging.getLogger(__name__)

SERVE_TAG = tf.saved_model.SERVING  # "serve"
# saved_model_warmup_util.cc kMaxNumRecords.
MAX_WARMUP_RECORDS = 1000
_ALLOWED_METHODS = (PREDICT_METHOD, "tensorflow/serving/classify", "tensorflow/serving/regress")


class LoadError(Exception):
    """A version directory could not be loaded or warmed up."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN):
        super().__init__(message)
        self.code = code


def read_meta_graph(path: Path, tags: Sequence[str] = (SERVE_TAG,)) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged exactly ``tags`` (``serve``), whose SignatureDefs are what TF Serving reports."""
    pb = path / "saved_model.pb"
    if not pb.exists():
        raise LoadError(f"SavedModel not found: no saved_model.pb in {path}", grpc.StatusCode.NOT_FOUND)
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except Exception as exc:
        raise LoadError(f"{pb}: not a SavedModel protobuf ({exc})", grpc.StatusCode.DATA_LOSS) from exc
    for meta in saved.meta_graphs:
        if set(meta.meta_info_def.tags) == set(tags):
            return meta
    raise LoadError(f"{pb}: no MetaGraphDef with tags {{{', '.join(sorted(tags))}}}", grpc.StatusCode.NOT_FOUND)


class LoadedVersion:
    """A model version ready to answer Predict; shared by all request threads."""

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
        runners: Mapping[str, SignatureRunner],
        *,
        keepalive: object = None,
        scheduler: BatchScheduler | None = None,
        on_release: Callable[[], None] | None = None,
    ):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = dict(signature_defs)
        self.runners = dict(runners)
        self.scheduler = scheduler
        self._keepalive = keepalive  # the SessionBundle owning the graph and its variables
        self._on_release = on_release  # closes the version's session
        self._inflight = 0
        self._idle = threading.Condition()

    # -- request accounting ----------------------------------------------------
    # enter() and leave() rather than a context manager, because the model manager
    # must count a request under its own lock, in the same step as the lookup.

    def enter(self) -> None:
        with self._idle:
            self._inflight += 1

    def leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def release(self, timeout: float = 30.0) -> None:
        """Stops the batcher (waiting up to ``timeout`` for its threads) and drops the model."""
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        self.runners.clear()
        self._keepalive = None
        if self._on_release is not None:
            self._on_release()

    # -- prediction --------------------------------------------------------------

    def runner(self, signature_name: str) -> SignatureRunner:
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signature_defs:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        runner = self.runners.get(name)
        if runner is None:
            # e.g. __saved_model_init_op: present in the MetaGraphDef, not callable.
            method = self.signature_defs[name].method_name
            raise ServingError(
                grpc.StatusCode.INTERNAL,
                "Expected prediction signature method_name to be one of {"
                + ", ".join(_ALLOWED_METHODS)
                + f"}}. Was: {method}",
            )
        return runner

    def execute(
        self, runner: SignatureRunner, arrays: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Runs validated inputs (through the batcher when on); returns the chosen outputs.

        A caller that is gone (serving/cancellation.py) gets CANCELLED instead of
        a graph run: checked here, and by the batcher again just before its batch runs.
        """
        aliases = runner.resolve_output_filter(output_filter)
        alive = cancellation.current()
        if cancellation.is_gone(alive):
            raise cancellation.cancelled()
        if self.scheduler is not None:
            outputs = self.scheduler.run(runner.name, arrays, alive)
        else:
            outputs = runner.run(arrays)
        return {alias: outputs[alias] for alias in aliases}

    def predict(
        self, request: predict_pb2.PredictRequest, runner: SignatureRunner | None = None
    ) -> predict_pb2.PredictResponse:
        """``runner``: the request's signature, when the caller has already looked it up."""
        runner = runner or self.runner(request.model_spec.signature_name)
        arrays = runner.arrays_from_protos(request.inputs)
        outputs = self.execute(runner, arrays, list(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = runner.name
        runner.encode_outputs_into(response.outputs, outputs)
        return response


def _read_warmup_records(path: Path) -> list[bytes]:
    records = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        records.append(record)
        if len(records) > MAX_WARMUP_RECORDS:
            raise LoadError(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
    return records


def warm_up(version: LoadedVersion) -> int:
    """Replays assets.extra/tf_serving_warmup_requests; any failure fails the load, as in TF Serving."""
    path = version.path / WARMUP_FILE
    if not path.exists():
        return 0
    try:
        records = _read_warmup_records(path)
    except tf.errors.OpError as exc:
        raise LoadError(f"cannot read warmup file {path}: {exc.message}", grpc.StatusCode.DATA_LOSS) from exc
    for index, record in enumerate(records):
        log_entry = prediction_log_pb2.PredictionLog()
        try:
            log_entry.ParseFromString(record)
        except Exception as exc:
            raise LoadError(f"warmup record {index} in {path} is not a PredictionLog", grpc.StatusCode.DATA_LOSS) from exc
        kind = log_entry.WhichOneof("log_type")
        try:
            if kind != "predict_log":
                raise unimplemented(f"warmup record {index}: {kind} is not supported by this server (Predict only)")
            version.predict(log_entry.predict_log.request)
        except ServingError as exc:
            signature = log_entry.predict_log.request.model_spec.signature_name or DEFAULT_SIGNATURE
            raise LoadError(
                f"warmup request {index} (signature {signature}) failed: {exc.code.name}: {exc.message}", exc.code
            ) from exc
    return len(records)


def load_version(
    name: str,
    version: int,
    path: Path,
    *,
    batching: BatchingOptions | None = None,
    warmup: bool = True,
    on_batch: Callable[[str, int], None] | None = None,
    on_run: Callable[[str, float], None] | None = None,
    tags: Sequence[str] = (SERVE_TAG,),
) -> LoadedVersion:
    """Loads, wires the batcher, warms up; raises LoadError and leaves nothing running on failure.

    Every SavedModel, TF1 or TF2, runs in a graph-mode session (session_bundle.py),
    as TF Serving runs it. ``on_batch(signature, rows)`` hears of each merged batch,
    ``on_run(signature, cpu_seconds)`` of each graph run.
    """
    meta = read_meta_graph(path, tags)
    try:
        bundle = SessionBundle(path, tags)
    except Exception as exc:
        raise LoadError(f"loading the SavedModel at {path} into a session failed: {exc}") from exc
    try:
        runners = {
            sig_name: SessionSignatureRunner(sig_name, signature_def, bundle, on_run)
            for sig_name, signature_def in meta.signature_def.items()
            if signature_def.method_name in _ALLOWED_METHODS
        }
    except BaseException:
        bundle.close()
        raise
    scheduler = None
    if batching is not None:
        scheduler = BatchScheduler(
            batching, {n: r.run for n, r in runners.items()}, name=f"{name}-{version}", on_batch=on_batch
        )
    servable = LoadedVersion(
        name, version, path, meta.signature_def, runners, keepalive=bundle, scheduler=scheduler,
        on_release=bundle.close,
    )
    if warmup:
        try:
            count = warm_up(servable)
            log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d",
                     path / WARMUP_FILE, count)
        except BaseException:
            servable.release()
            raise
    return servable
