"""Calls a loaded signature's graph function with flat tensors, skipping the structured-call wrapper.

``signature(**tensors)`` on a loaded SavedModel binds the keyword arguments to
the function type, casts each one to its TensorSpec, resolves the 50-odd
captured variable handles (one distribution check each) and only then runs
the graph. On this model that Python wrapper costs about 240 µs of CPU per
call, more than the predict graph's own Python-side cost, all of it under the
GIL, and the server makes that call once per request (or per batch). Here the
binding is done once at load: the parameter order, each input's dtype, the
captured handles and the output names are resolved up front, and each call
converts the inputs and runs the function (``AtomicFunction.call_flat``, the
same call the wrapper ends in, so graph errors arrive as the same OpErrors).

The graph runs on TensorFlow's single-threaded executor: its kernels run
inline on the calling thread instead of being handed to the inter-op thread
pool, which saves a few thread wake-ups per call (each one tens of µs on a
busy or virtualised host) and about 15 % of the CPU of a small call; kernels
that parallelise internally still use the intra-op pool. A graph that executor
cannot run (old-style control flow) is refused before any kernel runs, with
FailedPrecondition naming the executor; the call then switches to the default
executor for good and runs again. Any other graph error is also run again on
the default executor, whose message (naming the failing node) is the one TF
Serving returns; a signature with side effects before its failing op (unusual
in a serving graph) would run them twice on such a failing request.

What the wrapper did that this does not: its TensorSpec shape check. Inputs go
to the graph as sent, as TF Serving's session feeds them (a shape the graph
cannot use fails with the graph's own error). ``FlatCall.for_function`` returns
None for a function whose shape this module does not know (a parameter that is
not a plain tensor, a capture that is not a plain handle, no eager context),
and the caller keeps the structured call for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import constant_op

log = logging.getLogger(__name__)

SINGLE_THREADED_EXECUTOR = "SINGLE_THREADED_EXECUTOR"
# The start of the refusal (single_threaded_executor.cc) of a graph that executor cannot run.
_UNSUPPORTED_BY_SINGLE_THREADED = "Single-threaded executor does not support"


class FlatCall:
    """One signature's graph function, bound once: ``call(arrays) -> {output alias: ndarray}``."""

    def __init__(
        self,
        atomic_function,
        inputs: list[tuple[str, tf.dtypes.DType]],
        captures: list[tf.Tensor],
        outputs: list[str],
    ):
        self._atomic = atomic_function
        self._inputs = inputs
        self._captures = captures
        self._outputs = outputs
        self.executor_type = SINGLE_THREADED_EXECUTOR  # "" once the graph turned out to need the default executor

    @classmethod
    def for_function(cls, function) -> FlatCall | None:
        """The flat call for a loaded signature's ConcreteFunction, or None when it must keep the structured call."""
        try:
            atomic = function._inference_function  # noqa: SLF001  (no public flat entry point)
            parameters = list(function.function_type.parameters.values())
            inputs = []
            for parameter in parameters:
                spec = parameter.type_constraint
                if type(spec) is not tf.TensorSpec:
                    return None
                inputs.append((parameter.name, spec.dtype))
            captures = list(function._captured_inputs)  # noqa: SLF001
            if not all(isinstance(c, tf.Tensor) and not callable(c) for c in captures):
                return None  # deferred or distributed captures are resolved per call by the wrapper
            structure = function.structured_outputs
            if not isinstance(structure, Mapping):
                return None
            index = tf.nest.pack_sequence_as(structure, list(range(len(tf.nest.flatten(structure)))))
            if not all(isinstance(i, int) for i in index.values()):
                return None  # nested outputs
            outputs = [alias for alias, _ in sorted(index.items(), key=lambda item: item[1])]
            expected = len(atomic.cached_definition.signature.input_arg)
            if expected != len(inputs) + len(captures):
                return None
        except (AttributeError, TypeError, ValueError) as exc:  # a TensorFlow whose internals differ
            log.warning("signature function %s: no flat call (%s); using the structured call",
                        getattr(function, "name", "?"), exc)
            return None
        return cls(atomic, inputs, captures, outputs)

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``arrays`` must hold every input alias; each is converted to its declared dtype, as ``tf.constant`` does."""
        ctx = context.context()
        args = [constant_op.convert_to_eager_tensor(arrays[name], ctx, dtype) for name, dtype in self._inputs]
        executor_type = self.executor_type
        try:
            flat = self._run(ctx, args, executor_type)
        except tf.errors.OpError as exc:
            if not executor_type:
                raise
            if _UNSUPPORTED_BY_SINGLE_THREADED in exc.message:
                log.info("signature function %s needs the default executor: %s", self._atomic.name, exc.message)
                self.executor_type = ""
            # A failing call runs again on the default executor, so the error a
            # client sees is the one TF Serving's executor gives (it names the node:
            # "[[{{node ...}}]]", which the single-threaded executor leaves out).
            flat = self._run(ctx, args, "")
        return {alias: tensor.numpy() for alias, tensor in zip(self._outputs, flat)}

    def _run(self, ctx, args: list, executor_type: str) -> list:
        # The executor is read from this thread's function-call options when the
        # call is made; set it for this call only and put back what was there.
        options = ctx.function_call_options
        previous = options.executor_type
        options.executor_type = executor_type
        try:
            return self._atomic.call_flat(*args, *self._captures)
        finally:
            options.executor_type = previous

    @staticmethod
    def usable() -> bool:
        """The flat call runs eagerly; inside a graph (tf.function tracing) the structured call must be used."""
        return context.executing_eagerly()
