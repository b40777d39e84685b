"""Training progress for people: one short line per epoch per stage, instead of Keras' columns.

    retrieval epoch 3/8  loss 5.912  (4.1 s)
    ranking epoch 4/30  RMSE 0.931  val 0.952  (2.0 s)

Only the metrics that matter: the loss for retrieval (its sampled-softmax loss), the
RMSE on the training batches and on validation for the rating or ranking model.
Long stages print at most about ten lines (every n-th epoch, the first and the
last); on a terminal the line in between is rewritten in place every epoch, so
the display still moves. ``python -m train --verbose`` shows Keras' own lines
instead.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import tensorflow as tf

MAX_LINES = 10
RMSE, VAL_RMSE = "root_mean_squared_error", "val_root_mean_squared_error"


class EpochLines(tf.keras.callbacks.Callback):
    def __init__(self, stage: str, stream: TextIO | None = None, max_lines: int = MAX_LINES, after: str = "") -> None:
        super().__init__()
        self.stage = stage
        self.after = after  # printed once the fit is over, e.g. what the trainer does next
        self.stream = stream or sys.stdout
        self.max_lines = max_lines
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def on_train_begin(self, logs=None) -> None:
        self.epochs = int(self.params.get("epochs") or 1)
        self.every = max(1, math.ceil(self.epochs / self.max_lines))
        self.started = time.perf_counter()
        self.last_line, self.last_epoch, self.pending = "", 0, False
        self.best: tuple[float, int] | None = None  # (val RMSE, epoch)

    def line(self, epoch: int, logs: dict) -> str:
        if RMSE in logs:
            values = f"RMSE {logs[RMSE]:.3f}" + (f"  val {logs[VAL_RMSE]:.3f}" if VAL_RMSE in logs else "")
        else:
            values = f"loss {logs.get('loss', float('nan')):.3f}"
        return f"{self.stage} epoch {epoch}/{self.epochs}  {values}  ({time.perf_counter() - self.started:.1f} s)"

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        n = epoch + 1
        if VAL_RMSE in logs and (self.best is None or logs[VAL_RMSE] < self.best[0]):
            self.best = (float(logs[VAL_RMSE]), n)
        line = self.line(n, logs)
        keep = n == 1 or n == self.epochs or n % self.every == 0
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)) + ("\n" if keep else ""))
        elif keep:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_line, self.last_epoch, self.pending = line, n, not keep

    def on_train_end(self, logs=None) -> None:
        if self.pending:  # stopped early between two kept lines: show where it stopped
            self.stream.write("\n" if self.tty else self.last_line + "\n")
        if self.last_epoch < self.epochs and self.best is not None:
            self.stream.write(
                f"{self.stage}: stopped early after {self.last_epoch}/{self.epochs} epochs; "
                f"best val RMSE {self.best[0]:.3f} at epoch {self.best[1]}\n"
            )
        if self.after:
            self.stream.write(self.after + "\n")
        self.stream.flush()


def epoch_lines(stage: str) -> list[tf.keras.callbacks.Callback]:
    """The ``progress`` argument of ``train.trainer.run``: callbacks for one stage's ``fit``.

    The rating or ranking fit is the trainer's last; evaluation follows it.
    """
    after = "" if stage == "retrieval" else "evaluating: RMSE on every split, top-10 on test next to the baselines ..."
    return [EpochLines(stage, after=after)]
