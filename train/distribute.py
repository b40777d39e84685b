"""Training on several machines: TensorFlow's own ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``.

The same ``python -m train`` runs on every machine; each gets a ``TF_CONFIG``
naming the whole cluster and its own place in it (as TensorFlow documents for
multi-worker training)::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'

Every worker reads the same MovieLens files, builds the same feature tables
and the same shuffled batches; the strategy splits each global batch across
the workers and all-reduces the gradients, so one step of N workers is one
step of one worker on the same batch (the global batch size does not change).
Only the chief (task ``chief``, or worker 0 when the cluster has no chief)
writes the run directory; the others write what collective saving makes them
write into a scratch folder that is removed afterwards.

Without ``TF_CONFIG`` (or with a one-task cluster) nothing changes: the
default strategy, one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import tensorflow as tf
import tensorflow_recommenders as tfrs

TF_CONFIG = "TF_CONFIG"


class ClusterConfigError(ValueError):
    """``TF_CONFIG`` is not a cluster this trainer can join (the message names what is wrong)."""


@dataclass(frozen=True)
class Task:
    """This process's place in the cluster: ``workers`` processes in all, this one is ``index`` of ``kind``."""

    kind: str
    index: int
    workers: int
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        return self.kind == "chief" or (self.kind == "worker" and self.index == 0 and not self.has_chief)

    @property
    def distributed(self) -> bool:
        return self.workers > 1

    def describe(self) -> str:
        role = "chief" if self.is_chief else "worker"
        return f"{self.kind} {self.index} of {self.workers} processes ({role})"


@contextlib.contextmanager
def _tf_config_read_from(environ: Mapping[str, str]) -> Iterator[None]:
    """TensorFlow's resolver reads ``os.environ``; a given environment's TF_CONFIG is put there meanwhile."""
    if environ is os.environ:
        yield
        return
    before = os.environ.get(TF_CONFIG)
    os.environ[TF_CONFIG] = environ[TF_CONFIG]
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TF_CONFIG, None)
        else:
            os.environ[TF_CONFIG] = before


def task_from_environment(environ: Mapping[str, str] | None = None) -> Task:
    """This process's task, read by TensorFlow's ``TFConfigClusterResolver``; one process when TF_CONFIG is unset.

    ``environ`` defaults to this process's environment (another one: e.g. a compose service's).
    What the resolver accepts but this trainer cannot run is refused with a ``ClusterConfigError``.
    """
    environ = os.environ if environ is None else environ
    if not environ.get(TF_CONFIG, "").strip():
        return Task("worker", 0, 1)
    try:
        with _tf_config_read_from(environ):
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
            cluster = resolver.cluster_spec()
            kind, index = resolver.task_type, resolver.task_id
    except json.JSONDecodeError as e:
        raise ClusterConfigError(f"{TF_CONFIG} is not JSON: {e}") from None
    except (TypeError, ValueError, AttributeError) as e:  # e.g. a "cluster" that is not an object of job lists
        raise ClusterConfigError(f"{TF_CONFIG} is not a cluster TensorFlow can read: {e}") from None
    if not cluster.jobs:
        raise ClusterConfigError(f'{TF_CONFIG} needs a "cluster" object, e.g. {{"worker": ["host0:12345", "host1:12345"]}}')
    if kind is None or index is None:
        raise ClusterConfigError(f'{TF_CONFIG} needs a "task" with "type" and "index", e.g. {{"type": "worker", "index": 0}}')
    unsupported = sorted(set(cluster.jobs) - {"chief", "worker"})
    if unsupported:
        raise ClusterConfigError(
            f"{TF_CONFIG}: MultiWorkerMirroredStrategy trains with chief/worker tasks only; remove {', '.join(unsupported)}"
        )
    if kind not in cluster.jobs or index not in cluster.task_indices(kind):
        raise ClusterConfigError(f'{TF_CONFIG}: task {kind} {index} is not in cluster["{kind}"]')
    workers = sum(cluster.num_tasks(job) for job in ("chief", "worker") if job in cluster.jobs)
    return Task(kind, index, workers, has_chief="chief" in cluster.jobs and cluster.num_tasks("chief") > 0)


def strategy_for(task: Task) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy for a cluster, the default strategy for one process.

    Must be created before any other TensorFlow op runs in the process (the
    collective runtime is set up at creation).
    """
    if not task.distributed:
        return tf.distribute.get_strategy()
    # RING: collectives over gRPC between CPU hosts (NCCL needs GPUs on every worker).
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Each worker takes its share of every global batch of an in-memory dataset.

    Auto-sharding by file does not apply to tensors held in memory; sharding by
    data keeps every worker on the same shuffled order, so the union of one
    step's per-worker batches is exactly the single-process batch.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def writable_dir(run_dir: Path, task: Task) -> Iterator[Path]:
    """Where this task writes: the run directory for the chief, a scratch folder removed afterwards otherwise.

    Collective saving (checkpoints, Keras callbacks) must run on every worker,
    or the chief waits forever; only the chief's copy is kept.
    """
    if task.is_chief:
        yield run_dir
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"train-{task.kind}-{task.index}-"))
    try:
        yield scratch / run_dir.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def replicas_in_sync() -> int:
    """How many model copies step together (1 without a cluster); valid inside a training step."""
    return tf.distribute.get_strategy().num_replicas_in_sync


class Model(tfrs.models.Model):
    """``tfrs.models.Model`` whose step on N workers equals the step of one worker on the same global batch.

    Each worker computes ``compute_loss`` on its share of the batch, and the
    optimizer sums the workers' gradients. TFRS's own step would therefore
    count the regularisation N times and a mean loss N times; dividing the
    step's total by N makes the sum of the workers' gradients the gradient of
    the global batch's mean. ``compute_loss`` must return the mean over this
    worker's examples (a subclass whose loss is a sum over the batch multiplies
    by ``replicas_in_sync()``). With one process the division is by 1: the
    numbers are TFRS's to the bit.

    What ``fit`` and ``evaluate`` report is worker 0's: the metrics are
    synchronised across workers already (Keras would otherwise add them up),
    the logged loss is worker 0's share of the last batch.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.distribute_reduction_method = "first"

    def train_step(self, inputs):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(penalty) for penalty in self.losses])
            total_loss = loss + regularization_loss
            replica_share = total_loss / tf.cast(replicas_in_sync(), total_loss.dtype)
        gradients = tape.gradient(replica_share, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        metrics = {metric.name: metric.result() for metric in self.metrics}
        metrics.update(loss=loss, regularization_loss=regularization_loss, total_loss=total_loss)
        return metrics
