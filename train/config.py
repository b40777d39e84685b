"""The training configuration: plain defaults, two presets, every field overridable.

Presets are the reference blog's two models: ``basic`` is part 3 (three epochs,
no regularisation) and ``tuned`` is part 4 (L2 0.01 on the dense layers, fifty
epochs). The resolved object is saved with each run so that export can rebuild
exactly the model that was trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from train import splits


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    preset: str = "basic"
    split: str = splits.SEED_TEMPORAL
    embedding_dim: int = 32
    layer_sizes: tuple[int, ...] = (256, 64)
    l2: float = 0.0  # on the kernels of the dense layers
    learning_rate: float = 0.1  # Adagrad
    epochs: int = 3
    batch_size: int = 8192
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path | str) -> "TrainConfig":
        fields = json.loads(Path(path).read_text())
        fields["layer_sizes"] = tuple(fields["layer_sizes"])
        return cls(**fields)


PRESETS: dict[str, dict] = {
    "basic": dict(l2=0.0, learning_rate=0.1, epochs=3),
    "tuned": dict(l2=0.01, learning_rate=0.1, epochs=50),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field; unset flags fall back to the preset, then the defaults."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "preset":
            parser.add_argument(flag, choices=sorted(PRESETS), default="basic")
        elif field.name == "split":
            parser.add_argument(flag, choices=splits.NAMES, default=None)
        elif field.name == "layer_sizes":
            parser.add_argument(flag, type=int, nargs="+", default=None, metavar="N")
        else:
            parser.add_argument(flag, type=type(field.default), default=None)


def from_arguments(args: argparse.Namespace) -> TrainConfig:
    values = dict(PRESETS[args.preset], preset=args.preset)
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None and field.name != "preset":
            values[field.name] = tuple(given) if field.name == "layer_sizes" else given
    return TrainConfig(**values)
