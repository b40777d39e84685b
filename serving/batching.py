"""Server-side batching of concurrent Predict calls, modelled on TF Serving's BatchingSession.

With ``--enable_batching`` TF Serving puts every signature run of a loaded
model behind a shared batch scheduler: requests queue up, are concatenated
along dimension 0 into one batch (up to ``max_batch_size`` rows, waiting at
most ``batch_timeout_micros`` for it to fill), run once, and the outputs are
split back per request. That trades a little latency for far fewer graph
executions under load. This module reproduces the parts clients can observe:

- rank-0 inputs, input-free calls and inputs with unequal 0th dimensions are
  refused before queueing with TF Serving's INVALID_ARGUMENT (every signature
  of this project's model has a batch dimension on every input for that reason);
- a full queue (``max_enqueued_batches``) is UNAVAILABLE, and a task larger
  than ``max_batch_size`` is INVALID_ARGUMENT, with or without large-batch
  splitting (splitting only cuts tasks up to ``max_batch_size`` rows into
  pieces of ``max_execution_batch_size``);
- ``allowed_batch_sizes`` pads a batch up to the next allowed size with copies
  of a real row, and ``pad_variable_length_inputs`` pads inner dimensions.

Two things differ from TF Serving, on purpose, and neither changes an answer a
caller would get from an unbatched server:

- **No batch poisoning.** A merged run fails as a whole when any one caller's
  values fail an in-graph check (``k`` = 0, a rating of 9, a rated list wider
  than the limit): TF Serving's BatchingSession then fails every request in the
  batch with that caller's message. Here a merged run that fails with
  INVALID_ARGUMENT is split in halves and each half run again, down to single
  requests, so only the offenders get INVALID_ARGUMENT (the graph's own
  message, naming the input) and every other caller its normal answer. It
  costs nothing while callers send valid values, and about 2·log2(n) extra
  runs per offender in a batch of n requests when they do not.
- **Gone callers are dropped.** A request whose caller cancelled or whose
  deadline passed (serving/cancellation.py) is taken out of its batch before
  the merged run, so its rows never reach the graph.

One ``BatchScheduler`` belongs to one loaded version, with one queue per
signature and ``num_batch_threads`` worker threads shared by all queues, like
TF Serving's SharedBatchScheduler. Unloading the version stops it.
"""

from __future__ import annotations

import _thread
import bisect
import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
import numpy as np

from serving import cancellation
from serving.errors import ServingError, failed_precondition, invalid_argument, unavailable

log = logging.getLogger(__name__)

# TF Serving 2.21's wording (batching/batching_util.h, ComputeTensorBatchSize;
# releases before 2020 said "Batching session Run()").
RANK0_MESSAGE = "Batching Run() input tensors must have at least one dimension"
UNEQUAL_MESSAGE = "Batching Run() input tensors must have equal 0th-dimension size"
NO_INPUTS_MESSAGE = "Batching Run() must have at least one input tensor"
QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"

RunFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingOptions:
    """BatchingParameters with TF Serving's defaults for unset fields."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    @classmethod
    def from_proto(cls, params) -> BatchingOptions:
        """From the BatchingParameters message ``serving.config.read_batching_parameters`` returns."""
        defaults = cls()

        def wrapped(name: str, default):
            return getattr(params, name).value if params.HasField(name) else default

        return cls(
            max_batch_size=wrapped("max_batch_size", defaults.max_batch_size),
            batch_timeout_micros=wrapped("batch_timeout_micros", defaults.batch_timeout_micros),
            max_enqueued_batches=wrapped("max_enqueued_batches", defaults.max_enqueued_batches),
            num_batch_threads=wrapped("num_batch_threads", defaults.num_batch_threads),
            thread_pool_name=wrapped("thread_pool_name", defaults.thread_pool_name),
            allowed_batch_sizes=tuple(params.allowed_batch_sizes),
            pad_variable_length_inputs=bool(params.pad_variable_length_inputs),
            enable_large_batch_splitting=wrapped("enable_large_batch_splitting", False),
            max_execution_batch_size=wrapped("max_execution_batch_size", None),
        )

    @property
    def execution_limit(self) -> int:
        """Largest batch one graph run sees."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size


class _Task:
    """One caller's rows; ``wait()`` blocks until a batch thread has filled ``outputs`` or ``error``.

    Completion is a bare lock held from creation and released once: the
    cheapest one-shot signal between two threads in CPython (an Event is a
    Condition around a lock, with its own waiter list, and every wake-up is
    paid for under the GIL that bounds this server).
    """

    __slots__ = ("arrays", "size", "alive", "_done", "outputs", "error")

    def __init__(self, arrays: Mapping[str, np.ndarray], size: int, alive: cancellation.Alive | None = None):
        self.arrays = arrays
        self.size = size
        self.alive = alive  # None: nobody said how to tell whether the caller is still there
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: ServingError | None = None

    def finish(self) -> None:
        self._done.release()

    def wait(self) -> None:
        self._done.acquire()
        self._done.release()  # a second wait() returns at once


class _Batch:
    __slots__ = ("tasks", "size", "closed", "deadline", "opened")

    def __init__(self, deadline: float):
        self.tasks: list[_Task] = []
        self.size = 0
        self.closed = False
        self.opened = time.monotonic()
        self.deadline = deadline


def batch_size_of(arrays: Mapping[str, np.ndarray]) -> int:
    """batching_util.h ComputeTensorBatchSize: every input batched, all the same rows."""
    if not arrays:
        raise invalid_argument(NO_INPUTS_MESSAGE)
    size = None
    for alias in sorted(arrays):
        shape = np.shape(arrays[alias])
        if len(shape) == 0:
            raise invalid_argument(RANK0_MESSAGE)
        if size is None:
            size = shape[0]
        elif shape[0] != size:
            raise invalid_argument(UNEQUAL_MESSAGE)
    return int(size)


def _pad_inner(array: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    if array.shape[1:] == target:
        return array
    widths = [(0, 0)] + [(0, t - s) for s, t in zip(array.shape[1:], target)]
    # batching_util.cc PadTensor: the pad value is the tensor's first element,
    # and a tensor with no elements cannot be padded.
    if not array.size:
        raise invalid_argument("Got empty tensor in batch of non-empty tensors.")
    fill = array.reshape(-1)[0]
    return np.pad(array, widths, mode="constant", constant_values=fill)


class BatchScheduler:
    """Queues per signature, worker threads shared across them."""

    def __init__(
        self,
        options: BatchingOptions,
        runners: Mapping[str, RunFn],
        *,
        name: str = "",
        on_batch: Callable[[str, int], None] | None = None,
    ):
        self.options = options
        self._runners = dict(runners)
        self._name = name
        self._on_batch = on_batch
        self._cv = threading.Condition()
        self._queues: dict[str, collections.deque[_Batch]] = {sig: collections.deque() for sig in runners}
        self._stopping = False
        self._idle = 0  # workers waiting on _cv
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{name}-{i}", daemon=True)
            for i in range(max(1, options.num_batch_threads))
        ]
        for thread in self._threads:
            thread.start()

    # -- callers --------------------------------------------------------------

    def run(
        self, signature: str, arrays: Mapping[str, np.ndarray], alive: cancellation.Alive | None = None
    ) -> dict[str, np.ndarray]:
        """Blocks until this request's rows have been run as part of a batch.

        ``alive()`` false when the batch is about to run: the caller is gone, its
        rows are left out of the run and it gets CANCELLED.
        """
        size = batch_size_of(arrays)
        limit = self.options.execution_limit
        if size > self.options.max_batch_size:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        if size > limit:
            # Large-batch splitting: cut the task into execution-sized pieces
            # that may land in different batches, then stitch the outputs.
            pieces = [
                {alias: value[start : start + limit] for alias, value in arrays.items()}
                for start in range(0, size, limit)
            ]
            tasks = [
                self._enqueue(signature, piece, min(limit, size - i * limit), alive) for i, piece in enumerate(pieces)
            ]
        else:
            tasks = [self._enqueue(signature, arrays, size, alive)]
        for task in tasks:
            task.wait()
        for task in tasks:
            if task.error is not None:
                raise task.error
        if len(tasks) == 1:
            return tasks[0].outputs  # type: ignore[return-value]
        return {alias: np.concatenate([t.outputs[alias] for t in tasks]) for alias in tasks[0].outputs}  # type: ignore[index]

    def _enqueue(
        self, signature: str, arrays: Mapping[str, np.ndarray], size: int, alive: cancellation.Alive | None
    ) -> _Task:
        task = _Task(arrays, size, alive)
        limit = self.options.execution_limit
        with self._cv:
            if self._stopping:
                raise unavailable("Batch scheduler is shutting down")
            queue = self._queues[signature]
            batch = queue[-1] if queue and not queue[-1].closed else None
            if batch is not None and batch.size + size > limit:
                batch.closed = True
                batch = None
            opened = batch is None
            if opened:
                if len(queue) >= self.options.max_enqueued_batches:
                    raise unavailable(QUEUE_FULL_MESSAGE)
                batch = _Batch(time.monotonic() + self.options.batch_timeout_micros / 1e6)
                queue.append(batch)
            batch.tasks.append(task)
            batch.size += size
            if batch.size >= limit:
                batch.closed = True
            # Wake one idle worker only when there is something new for it: a
            # batch to time (a new one) or to run (a full one). A task joining
            # an open batch changes nothing a waiting worker needs to know, and
            # waking every worker on every request costs GIL hand-offs that
            # throttle the whole server under load.
            if (opened or batch.closed) and self._idle:
                self._cv.notify()
        return task

    def stop(self, timeout: float = 30.0) -> None:
        """Runs what is queued, then ends the worker threads (waiting up to ``timeout`` in all)."""
        with self._cv:
            self._stopping = True
            for queue in self._queues.values():
                for batch in queue:
                    batch.closed = True
            self._cv.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- workers --------------------------------------------------------------

    def _next_batch(self) -> tuple[str, _Batch] | None:
        with self._cv:
            while True:
                now = time.monotonic()
                ready: tuple[str, _Batch] | None = None
                pending = 0
                wake: float | None = None
                for signature, queue in self._queues.items():
                    if not queue:
                        continue
                    pending += len(queue)
                    head = queue[0]
                    if head.closed or now >= head.deadline:
                        if ready is None or head.opened < ready[1].opened:
                            ready = (signature, head)
                    else:
                        wake = head.deadline if wake is None else min(wake, head.deadline)
                if ready is not None:
                    self._queues[ready[0]].popleft()
                    if pending > 1 and self._idle:
                        # More is queued: hand it to an idle worker now (to run or to
                        # time), since enqueue only woke one worker per new batch.
                        self._cv.notify()
                    return ready
                if self._stopping:
                    return None
                self._idle += 1
                try:
                    self._cv.wait(None if wake is None else max(0.0, wake - now))
                finally:
                    self._idle -= 1

    def _work(self) -> None:
        while True:
            item = self._next_batch()
            if item is None:
                return
            self._process(*item)

    def _process(self, signature: str, batch: _Batch) -> None:
        try:
            self._run_tasks(signature, batch.tasks)
        finally:
            for task in batch.tasks:
                task.finish()

    def _run_tasks(self, signature: str, tasks: list[_Task], top: bool = True) -> None:
        """One merged run for ``tasks``; when a caller's values fail it, the halves again (no batch poisoning)."""
        live = []
        for task in tasks:
            if cancellation.is_gone(task.alive):
                task.error = cancellation.cancelled()
            else:
                live.append(task)
        if not live:
            return
        try:
            merged, padded_size = self._merge(live)
            log.debug("%s: running a batch of %d tasks, %d rows (padded to %d) for %s",
                      self._name, len(live), sum(t.size for t in live), padded_size, signature)
            if self._on_batch is not None:
                self._on_batch(signature, padded_size)
            outputs = self._runners[signature](merged)
            self._split(outputs, live, padded_size)
        except ServingError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT and len(live) > 1:
                # Some caller's values failed a check of the merged run (TF Serving
                # would fail every request of the batch with it). Bisect, so only
                # the offenders get this error, each with its own message.
                log.log(logging.INFO if top else logging.DEBUG,  # one line per batch, not per split
                        "%s: a batch of %d tasks for %s failed (%s); running it again in halves",
                        self._name, len(live), signature, exc.message.split("\n", 1)[0][:200])
                middle = len(live) // 2
                self._run_tasks(signature, live[:middle], top=False)
                self._run_tasks(signature, live[middle:], top=False)
                return
            for task in live:
                task.error = exc
        except Exception as exc:  # a bug must fail the batch's requests, not kill the worker
            log.exception("batch of %d tasks for signature %s failed", len(live), signature)
            for task in live:
                task.error = ServingError(grpc.StatusCode.INTERNAL, f"batch processing failed: {exc}")

    def _merge(self, tasks: list[_Task]) -> tuple[dict[str, np.ndarray], int]:
        total = sum(t.size for t in tasks)
        allowed = self.options.allowed_batch_sizes
        padded_size = total
        if allowed:
            index = bisect.bisect_left(allowed, total)
            padded_size = allowed[index] if index < len(allowed) else total
        merged = {}
        for alias in tasks[0].arrays:
            parts = [np.asarray(t.arrays[alias]) for t in tasks]
            inner = {p.shape[1:] for p in parts}
            if len(inner) > 1:
                if not self.options.pad_variable_length_inputs:
                    raise failed_precondition(
                        f"Tensors with name '{alias}' from different tasks have different shapes and padding "
                        "is turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with "
                        "the same name have equal dimensions starting with the first dim."
                    )
                target = tuple(max(dims) for dims in zip(*inner))
                parts = [_pad_inner(p, target) for p in parts]
            if padded_size > total:
                # Padding rows copy a real row, which is always a valid input.
                source = next((p for p in reversed(parts) if len(p)), None)
                if source is not None:
                    parts.append(np.repeat(source[:1], padded_size - total, axis=0))
            merged[alias] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if padded_size > total and not any(len(t.arrays[a]) for t in tasks for a in t.arrays):
            padded_size = total
        return merged, padded_size

    @staticmethod
    def _split(outputs: Mapping[str, np.ndarray], tasks: list[_Task], padded_size: int) -> None:
        for alias, value in outputs.items():
            if np.ndim(value) == 0:
                raise failed_precondition("Batched output tensor has 0 dimensions")
            if value.shape[0] != padded_size:
                raise failed_precondition(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
                    "of the input tensors"
                )
        start = 0
        for task in tasks:
            task.outputs = {alias: value[start : start + task.size] for alias, value in outputs.items()}
            start += task.size
