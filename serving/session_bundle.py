"""SavedModels loaded the way TF Serving loads every SavedModel: a graph-mode Session.

TF Serving never calls ``tf.saved_model.load``: its ``LoadSavedModel`` imports
the ``serve`` MetaGraphDef into a graph, opens a Session on it, restores the
variables, runs the main_op (or legacy init op, which also initializes tables
from asset files), and answers each request with ``Session::Run``, feeding the
signature's input tensors by name and fetching its output tensors by name. So
does this module, for TF1 and TF2 exports alike. It matters to clients:
``tf.saved_model.load`` cannot load some TF1 exports TF Serving serves (a
``tf.Example`` parsing graph whose shapes only agree at run time:
``saved_model_half_plus_three`` fails with "Shapes must be equal rank"), a
concrete function binds its inputs against the signature where a session feeds
them to the graph untouched, and a graph error comes back as the op's own
message naming the node, as TF Serving returns it.

Each signature is one ``Session::MakeCallable`` whose run runs in the caller's
thread (``RunOptions.inter_op_thread_pool = -1``). A serving graph is small:
handing it to the inter-op pool and waiting for it costs more CPU than its
kernels (pool threads waking and spinning). Kernels that parallelise
internally (a large batch's matmul) still use the intra-op pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2

from serving.errors import from_tf_error_code
from serving.signature_runner import SignatureRunner


# RunOptions.inter_op_thread_pool: -1 runs Session::Run in the calling thread.
CALLER_THREAD = -1


def _op_message(exc: tf.errors.OpError) -> str:
    # Any hint Python appends after a blank line is not part of the op's own
    # message, which is what TF Serving returns.
    return exc.message.split("\n\nErrors may have originated from", 1)[0].strip()


class SessionBundle:
    """One loaded version: its own graph and session (SavedModelBundle in TF Serving)."""

    def __init__(self, path: Path, tags: Sequence[str]):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        try:
            with self.graph.as_default():
                # Restores variables, then runs main_op / legacy_init_op with the asset files fed.
                self.meta_graph = tf.compat.v1.saved_model.loader.load(self.session, list(tags), str(path))
        except BaseException:
            self.session.close()
            raise
        self._closed = threading.Event()

    def make_callable(self, feeds: Sequence[str], fetches: Sequence[str]) -> Callable[..., list[np.ndarray]]:
        """Session::MakeCallable over tensor names: positional feeds in ``feeds`` order, fetches as listed.

        Not ``Session.run``: its Python front end refuses a value whose shape the
        placeholder does not declare, and the C++ session TF Serving calls does not.
        """
        options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
        options.run_options.inter_op_thread_pool = CALLER_THREAD
        run = self.session._make_callable_from_options(options)  # noqa: SLF001  (tf.keras uses it the same way)

        def call(*values: np.ndarray) -> list[np.ndarray]:
            try:
                return run(*values)
            except tf.errors.OpError as exc:
                raise from_tf_error_code(exc.error_code, _op_message(exc)) from exc

        return call

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.session.close()


class SessionSignatureRunner(SignatureRunner):
    """A SignatureRunner whose run() feeds the bundle's session by tensor name, like TF Serving's predictor.

    ``on_run(signature, cpu_seconds)`` hears of every run that returned, with the
    CPU time of the calling thread during it: the run happens in that thread, so
    this is the graph's own cost (serving/metrics.py exports it).
    """

    def __init__(
        self,
        name: str,
        signature_def: meta_graph_pb2.SignatureDef,
        bundle: SessionBundle,
        on_run: Callable[[str, float], None] | None = None,
    ):
        super().__init__(name, signature_def)
        self._on_run = on_run
        # run() gets exactly the signature's inputs (check_input_names) and returns every output.
        self._feed_aliases = sorted(signature_def.inputs)
        self._fetch_aliases = sorted(signature_def.outputs)
        self._call = bundle.make_callable(
            [signature_def.inputs[alias].name for alias in self._feed_aliases],
            [signature_def.outputs[alias].name for alias in self._fetch_aliases],
        )

    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.thread_time()
        values = self._call(*(arrays[alias] for alias in self._feed_aliases))
        if self._on_run is not None:
            self._on_run(self.name, time.thread_time() - start)
        return {alias: np.asarray(value) for alias, value in zip(self._fetch_aliases, values)}
