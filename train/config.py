"""The training configuration: plain defaults, three presets, every field overridable.

``two-stage`` (the default) is the product's recommender: retrieval trained
for top-k, then a DCN ranking model, blended (``train/retrieval.py``,
``train/ranking.py``, ``train/recommender.py``); the dataclass defaults are
its values. ``reference-basic`` and ``reference-tuned`` train the reference
model, the blog's rating model (``train/reference_model.py``): part 3 (three
epochs, no regularisation) and part 4 (L2 0.01 on the dense layers, fifty
epochs); they reproduce its RMSE. Their old names ``basic`` and ``tuned`` are
still accepted (``PRESET_ALIASES``). The resolved object is saved with each
run so that export can rebuild exactly the model that was trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from common import contract
from train import splits


REFERENCE, TWO_STAGE = "reference", "two-stage"
DEFAULT_PRESET = TWO_STAGE
MAX_BATCH_GROWTH = 16


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One run's configuration; the defaults are the default preset's (``two-stage``)."""

    preset: str = DEFAULT_PRESET
    split: str = splits.SEED_TEMPORAL
    model: str = TWO_STAGE  # reference: the blog's rating model; two-stage: retrieval + ranking
    # The reference model or the ranking stage (two-stage).
    embedding_dim: int = 32
    layer_sizes: tuple[int, ...] = (128, 64)
    l2: float = 0.003  # reference: on the dense kernels; two-stage ranking: on every weight
    learning_rate: float = 0.003  # Adagrad (reference) or Adam (two-stage ranking)
    epochs: int = 30  # two-stage ranking: at most, keeping the epoch with the best validation RMSE
    batch_size: int = 1024
    seed: int = 42
    # Retrieval (two-stage only).
    retrieval_dim: int = contract.EMBEDDING_DIM
    retrieval_epochs: int = 8
    retrieval_learning_rate: float = 0.003  # Adam
    retrieval_batch_size: int = 1024
    history_sample: int = 64  # history entries sampled per training example
    # Share of examples that see only what the user rated before the target (next-item training); off: it
    # helps new users but costs known users more (docs/model.md, "Why these values").
    causal_history_share: float = 0.0
    # The history mean divides by count + this, so short histories lean on the profile; 20 lifted new users
    # more than 10 did, at no cost to known users (docs/model.md, "Why these values").
    history_shrinkage: float = 20.0
    low_rating_weight: float = 0.3  # loss weight of a rating below 4 (relevant = rating >= 4)
    # Beside the towers, a sparse EASE (train/item_to_item.py): each movie regressed on its this many most co-rated
    # movies with L2 item_l2; retrieval adds item_weight x its standardised scores to the towers'. 0: none.
    item_neighbours: int = 50
    item_l2: float = 100.0
    item_weight: float = 0.25
    # Beside the ranking network, k-NN with baselines (train/neighbourhood.py): a rating from the user's residuals on
    # the knn_neighbours rated movies most similar to the target (correlation shrunk by knn_shrinkage); the served
    # rating is (1 - knn_weight) x network + knn_weight x that. 0: none.
    knn_neighbours: int = 40
    knn_shrinkage: float = 100.0
    knn_weight: float = 0.4
    full_softmax_max_movies: int = 10_000  # larger catalogues train with in-batch sampled softmax
    candidates: int = 100  # retrieved movies the ranking stage re-scores
    # Large data: each step takes more rows (see step_batch); retrieval's negatives stay retrieval_batch_size.
    batch_growth_rows: int = 131_072
    # Two-stage: once validation has chosen the ranking epochs and the blend weight, train again on train +
    # validation (trainer.refit), as the baselines learn from both; False serves the fit on train alone.
    refit: bool = True
    max_eval_users: int = 20_000  # blend choice and test top-k on a seeded sample of at most this many users; 0: all

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path | str) -> "TrainConfig":
        """A saved run's config; a run saved under an old preset name loads under the new one."""
        fields = json.loads(Path(path).read_text())
        fields["layer_sizes"] = tuple(fields["layer_sizes"])
        if "preset" in fields:
            fields["preset"] = preset_name(fields["preset"])
        fields.setdefault("item_neighbours", 0)  # runs saved before the item-to-item model were trained without it
        fields.setdefault("knn_neighbours", 0)  # likewise the neighbourhood rating model
        fields.setdefault("refit", False)  # and the refit on train + validation
        return cls(**fields)


def step_batch(batch_size: int, train_rows: int, growth_rows: int) -> int:
    """Rows per training step: ``batch_size``, doubled for each doubling of the training rows past 2 × ``growth_rows``.

    A step has a fixed cost besides its rows: Adam (and the ranking's L2 on
    every embedding) passes over each whole embedding table, and those tables
    grow with the users and movies, so on large data it is most of a step
    (measured: docs/training.md, "Large data"). So the batch
    doubles with the data (capped at ``MAX_BATCH_GROWTH`` ×): an epoch keeps
    about ``growth_rows`` / ``batch_size`` steps, which spreads the fixed cost
    over more rows. Retrieval's in-batch softmax keeps its negatives at
    ``retrieval_batch_size`` per group of rows (``retrieval.in_batch_softmax_loss``),
    so a larger step does not grow the per-row cost with it. With the default
    131,072: up to 262,143 training rows (ML-100K and its folds) nothing
    changes; 0.5M rows train at 2×, 1M at 4× (ML-1M), 2.1M and more at 16×
    (the scale bench's 5M and 25M sets: 16,384-row steps). ``growth_rows`` 0 turns it off.
    """
    if growth_rows <= 0:
        return batch_size
    factor = 1
    while factor < MAX_BATCH_GROWTH and train_rows >= 2 * factor * growth_rows:
        factor *= 2
    return batch_size * factor


# The reference model's values (the blog's): each preset lists every value that differs from the defaults.
_REFERENCE = dict(model=REFERENCE, embedding_dim=32, layer_sizes=(256, 64), learning_rate=0.1, batch_size=8192)
PRESETS: dict[str, dict] = {
    "reference-basic": dict(_REFERENCE, l2=0.0, epochs=3),
    "reference-tuned": dict(_REFERENCE, l2=0.01, epochs=50),
    TWO_STAGE: dict(
        model=TWO_STAGE, embedding_dim=32, layer_sizes=(128, 64), l2=0.003, learning_rate=0.003,
        epochs=30, batch_size=1024,
    ),
}
# A named preset whose values a study chose: {"study", "split" it tuned on, "trial"}. EVALUATION.md calls that
# split's rows clean (nothing that chose the values saw its test rows) and the other splits' not; trial 0 is the
# study's start, the hand-set values, which it kept: no row is clean. make tune's study (u1.base only, with the
# new-user constraint) found no feasible trial better than its start (docs/tuning.md, TUNING.md).
PRESET_TUNED_BY: dict[str, dict] = {TWO_STAGE: {"study": "two-stage-u1", "split": "u1", "trial": 0}}
# Other names of presets: old ones, which command lines and saved runs use, and two-stage-hand-set, the name the
# studies start from (their trial 0): the default's values, set by hand.
HAND_SET = "two-stage-hand-set"
PRESET_ALIASES: dict[str, str] = {"basic": "reference-basic", "tuned": "reference-tuned", HAND_SET: TWO_STAGE}


def preset_name(name: str) -> str:
    """The current name of a preset given by an old name (``PRESET_ALIASES``); any other value unchanged."""
    return PRESET_ALIASES.get(name, name)


# A preset file's fields: the model's values only. The split is a run's choice (a study tunes on one fold
# and its preset trains on any), and the preset's name is the file's path.
NOT_IN_PRESET_FILES = ("preset", "split")


def read_preset_file(path: Path | str) -> dict:
    """The values of a preset file: JSON ``{"values": {field: value, ...}, ...}``.

    ``python -m train tune`` writes one for a study's best trial, with a
    ``tuned_by`` record beside the values (study, fold, trial, validation
    figures) that training ignores. Fields not given come from the defaults,
    so a file written by a study lists every field the search touched.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"preset file {path}: {e}") from None
    values = document.get("values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f'preset file {path}: expected a JSON object with a "values" object')
    known = {f.name for f in dataclasses.fields(TrainConfig)} - set(NOT_IN_PRESET_FILES)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"preset file {path}: unknown field(s) {', '.join(unknown)}")
    types = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    try:  # JSON has one number type: 20 for a float field, 8.0 for an int one
        return {name: tuple(int(v) for v in value) if name == "layer_sizes" else types[name](value)
                for name, value in values.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"preset file {path}: {e}") from None


def preset_values(preset: str) -> dict:
    """A named preset's values (an old name too), or those of a preset file."""
    if preset_name(preset) in PRESETS:
        return dict(PRESETS[preset_name(preset)])
    return read_preset_file(preset)


def preset_argument(value: str) -> str:
    """argparse type of --preset: a preset name (an old one becomes the current one), or a readable preset file."""
    if preset_name(value) in PRESETS:
        return preset_name(value)
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"{value!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a file")
    try:
        read_preset_file(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


# One line per field for ``python -m train --help``; each flag's help adds the value under every preset.
FIELD_HELP: dict[str, str] = {
    "preset": "named set of values for the flags below, or a preset file (JSON, as python -m train tune writes); "
              "a flag given explicitly overrides it",
    "split": "which rows train, validate and test: seed-temporal (by timestamp), leave-last-out (each user's last "
             "rating is test), random (80/10/10) or MovieLens 100K's u1...u5 folds",
    "model": "reference: the blog's rating model; two-stage: retrieval + ranking",
    "embedding_dim": "embedding width of the reference model or of the ranking stage (two-stage)",
    "layer_sizes": "widths of the dense layers, e.g. 256 64",
    "l2": "L2 penalty: on the dense kernels (reference), on every ranking weight (two-stage)",
    "learning_rate": "learning rate of Adagrad (reference) or of Adam for the ranking stage (two-stage)",
    "epochs": "epochs of the reference model; two-stage ranking: at most, keeping the best validation epoch",
    "batch_size": "examples per step of the reference or ranking model",
    "seed": "seed of the validation hold-out, initialisation and shuffling",
    "retrieval_dim": "two-stage only: width of the retrieval embeddings",
    "retrieval_epochs": "two-stage only: retrieval epochs",
    "retrieval_learning_rate": "two-stage only: retrieval learning rate (Adam)",
    "retrieval_batch_size": "two-stage only: retrieval examples per step",
    "history_sample": "two-stage only: history entries sampled per training example",
    "causal_history_share": "two-stage only: share of examples that see only what the user rated before the target",
    "history_shrinkage": "two-stage only: the history mean divides by count + this, so short histories lean on the profile",
    "low_rating_weight": "two-stage only: retrieval loss weight of a rating below 4",
    "item_neighbours": "two-stage only: the item-to-item model regresses each movie on its this many most co-rated "
                       "movies (0: no item-to-item model)",
    "item_l2": "two-stage only: L2 penalty of the item-to-item regression (EASE's lambda)",
    "item_weight": "two-stage only: retrieval score = standardised tower score + this x standardised item-to-item "
                   "score (0: towers alone)",
    "knn_neighbours": "two-stage only: the neighbourhood rating model averages the user's residuals on this many rated "
                      "movies most similar to the target (0: no neighbourhood model)",
    "knn_shrinkage": "two-stage only: a movie pair's correlation is shrunk by (n - 1) / (n - 1 + this), n co-raters",
    "knn_weight": "two-stage only: served rating = (1 - this) x ranking network + this x neighbourhood model",
    "full_softmax_max_movies": "two-stage only: larger catalogues train retrieval with in-batch sampled softmax",
    "candidates": "two-stage only: retrieved movies the ranking stage re-scores",
    "refit": "two-stage only: train again on train + validation once validation has chosen epochs and blend",
    "max_eval_users": "the blend choice and the test top-k use a seeded sample of at most this many users (0: all)",
    "batch_growth_rows": "from 2x this many training rows, both batch sizes double with each doubling of the rows "
                         f"(at most {MAX_BATCH_GROWTH}x; retrieval negatives stay retrieval_batch_size); 0: off",
}


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _preset_values(name: str, default) -> str:
    """``two-stage: 30, reference-basic: 3, reference-tuned: 50``, or ``default 42`` when every preset agrees."""
    order = [DEFAULT_PRESET, *sorted(p for p in PRESETS if p != DEFAULT_PRESET)]
    values = {preset: _shown(PRESETS[preset].get(name, default)) for preset in order}
    if len(set(values.values())) == 1:
        return f"default {next(iter(values.values()))}"
    return ", ".join(f"{preset}: {value}" for preset, value in values.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field; unset flags fall back to the preset, then the defaults."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        described = FIELD_HELP.get(field.name, field.name.replace("_", " ")).replace("%", "%%")
        if field.name == "preset":
            parser.add_argument(flag, type=preset_argument, default=DEFAULT_PRESET, metavar="PRESET|FILE",
                                help=f"{described}: {', '.join(sorted(PRESETS))} (default {DEFAULT_PRESET}; "
                                     f"old names: {', '.join(f'{old} = {new}' for old, new in PRESET_ALIASES.items())})")
            continue
        kwargs = {"default": None, "help": f"{described} ({_preset_values(field.name, field.default)})"}
        if field.name == "model":
            parser.add_argument(flag, choices=(REFERENCE, TWO_STAGE), **kwargs)
        elif field.name == "split":
            parser.add_argument(flag, choices=splits.NAMES, **kwargs)
        elif field.name == "layer_sizes":
            parser.add_argument(flag, type=int, nargs="+", metavar="N", **kwargs)
        elif isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            parser.add_argument(flag, type=type(field.default), metavar=field.name.split("_")[-1].upper(), **kwargs)


def from_arguments(args: argparse.Namespace) -> TrainConfig:
    values = dict(preset_values(args.preset), preset=args.preset)
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None and field.name != "preset":
            values[field.name] = tuple(given) if field.name == "layer_sizes" else given
    return TrainConfig(**values)
