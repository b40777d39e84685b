"""The run directory: the files a training run leaves for export, named and read in one place.

Training and export run at different times, often on different machines, and
meet only here: ``train/trainer.py`` writes a run directory, ``export/`` reads
it and never touches the raw data again. Keeping the names and formats of those
files in this one module means the writer and its readers cannot drift apart.

A run directory holds::

    config.json           the TrainConfig the run trained with
    features.npz          feature tables, with the ids, titles and training histories
    weights/model*        checkpoint of the trained Keras models
    blend.json            the blend weight and popularity penalty chosen on validation (two-stage runs only)
    training_curve.png    RMSE per epoch
    logs/                 TensorBoard logs of the rating or ranking fit
    metrics.json          written last: its presence marks a finished run
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from train.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
FEATURES_FILE = "features.npz"
BLEND_FILE = "blend.json"
WEIGHTS_PREFIX = "weights/model"
CURVE_FILE = "training_curve.png"
LOGS_DIR = "logs"


def start(run_dir: Path, config: TrainConfig) -> None:
    """An empty ``run_dir`` holding only the config; a re-used run name starts over, so stale
    weights or logs never mix with the new run."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(config.to_json())


def read_config(run_dir: Path) -> TrainConfig:
    return TrainConfig.from_file(run_dir / CONFIG_FILE)


def read_config_json(run_dir: Path) -> dict:
    """The config as written, a plain dict (what the model card shows)."""
    return json.loads((run_dir / CONFIG_FILE).read_text())


def write_blend(run_dir: Path, weight: float, popularity_penalty: float) -> None:
    (run_dir / BLEND_FILE).write_text(json.dumps({"blend_weight": weight, "popularity_penalty": popularity_penalty}))


def read_blend(run_dir: Path) -> tuple[float, float]:
    """The chosen (blend weight, popularity penalty); zeros for a run without them (the reference model).

    Runs saved before the penalty had none (0.0).
    """
    path = run_dir / BLEND_FILE
    if not path.exists():
        return 0.0, 0.0
    saved = json.loads(path.read_text())
    return saved["blend_weight"], saved.get("popularity_penalty", 0.0)


def write_training_curve(run_dir: Path, history: dict[str, list[float]]) -> None:
    """The rating or ranking fit's RMSE per epoch (a Keras ``History.history``), train and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("root_mean_squared_error", "train (running average over the epoch)"),
                       ("val_root_mean_squared_error", "validation")):
        ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title("Rating model training curve")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / CURVE_FILE, dpi=100)
    plt.close(fig)


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """Written last: export treats metrics.json as the mark of a finished run."""
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / METRICS_FILE).read_text())


def is_finished(run_dir: Path) -> bool:
    return (run_dir / METRICS_FILE).exists()
