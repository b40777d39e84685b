"""The configuration: the batch-size rule for large data (step_batch), preset files, each preset's values."""

import dataclasses
import json

import pytest

from train import config as train_config
from train.__main__ import build_parser
from train.config import MAX_BATCH_GROWTH, TrainConfig, step_batch


def test_step_batch_grows_with_the_training_rows_only_at_scale():
    growth = TrainConfig().batch_growth_rows
    assert step_batch(1024, 72_000, growth) == 1024  # ML-100K u1: unchanged
    assert step_batch(1024, 2 * growth - 1, growth) == 1024
    assert step_batch(1024, 2 * growth, growth) == 2048
    assert step_batch(1024, 506_000, growth) == 2048  # the 1M synthetic set's training rows
    assert step_batch(1024, 2_530_000, growth) == 1024 * MAX_BATCH_GROWTH
    assert step_batch(1024, 12_600_000, growth) == 1024 * MAX_BATCH_GROWTH  # capped
    assert step_batch(1024, 10**9, 0) == 1024  # off


def test_a_preset_file_trains_its_values_and_flags_still_override(tmp_path):
    import argparse

    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"values": {"model": "two-stage", "layer_sizes": [64, 32], "history_shrinkage": 12,
                                           "epochs": 9.0}, "tuned_by": {"study": "s"}}))
    parser = argparse.ArgumentParser()
    train_config.add_arguments(parser)
    config = train_config.from_arguments(parser.parse_args(["--preset", str(path), "--epochs", "4"]))
    assert config.preset == str(path) and config.layer_sizes == (64, 32) and config.epochs == 4
    assert config.history_shrinkage == 12.0 and isinstance(config.history_shrinkage, float)
    assert config.learning_rate == TrainConfig().learning_rate  # not in the file: the default

    for bad, message in (({"values": {"split": "u1"}}, "unknown field"), ({"epochs": 3}, '"values" object')):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            train_config.read_preset_file(path)
    with pytest.raises(SystemExit):  # a usage error (exit 2): neither a preset nor a file
        parser.parse_args(["--preset", str(tmp_path / "missing.json")])


# Every named preset's full resolved config, as python -m train resolves it: a change of a default or a preset
# that moves any of these values fails here (the reference presets must keep reproducing the blog's figures).
_COMMON = dict(
    split="seed-temporal", embedding_dim=32, seed=42, retrieval_dim=64, retrieval_epochs=8,
    retrieval_learning_rate=0.003, retrieval_batch_size=1024, history_sample=64, causal_history_share=0.0,
    history_shrinkage=20.0, low_rating_weight=0.3, item_neighbours=50, item_l2=100.0, item_weight=0.25,
    knn_neighbours=40, knn_shrinkage=100.0, knn_weight=0.4, refit=True,
    full_softmax_max_movies=10_000, candidates=100, batch_growth_rows=131_072, max_eval_users=20_000,
)
RESOLVED = {
    "two-stage": dict(_COMMON, preset="two-stage", model="two-stage", layer_sizes=(128, 64), l2=0.003,
                      learning_rate=0.003, epochs=30, batch_size=1024),
    "reference-basic": dict(_COMMON, preset="reference-basic", model="reference", layer_sizes=(256, 64), l2=0.0,
                            learning_rate=0.1, epochs=3, batch_size=8192),
    "reference-tuned": dict(_COMMON, preset="reference-tuned", model="reference", layer_sizes=(256, 64), l2=0.01,
                            learning_rate=0.1, epochs=50, batch_size=8192),
}


def _resolved(argv: list[str]) -> dict:
    """The config ``python -m train --run-name x ARGV`` trains."""
    return dataclasses.asdict(train_config.from_arguments(build_parser().parse_args(["--run-name", "x", *argv])))


def test_every_preset_resolves_to_its_values():
    assert set(train_config.PRESETS) == set(RESOLVED)
    for name, expected in RESOLVED.items():
        assert _resolved(["--preset", name]) == expected, name
        assert _resolved(["--preset", name, "--split", "u1"]) == dict(expected, split="u1"), name
    assert _resolved([]) == RESOLVED["two-stage"]
    assert _resolved(["--split", "u1"]) == dict(RESOLVED["two-stage"], split="u1")
    assert dataclasses.asdict(TrainConfig()) == RESOLVED["two-stage"]  # no arguments: the default preset
    with pytest.raises(SystemExit):
        _resolved(["--preset", "reference"])  # the model's name is not a preset


def test_the_old_preset_names_still_work(tmp_path):
    for old, new in (("basic", "reference-basic"), ("tuned", "reference-tuned")):
        assert train_config.PRESET_ALIASES[old] == new
        assert _resolved(["--preset", old]) == RESOLVED[new]
        assert train_config.preset_values(old) == train_config.preset_values(new)
        assert train_config.preset_argument(old) == new
        saved = dict(RESOLVED[new], preset=old, layer_sizes=list(RESOLVED[new]["layer_sizes"]))
        (tmp_path / "config.json").write_text(json.dumps(saved))  # a run saved before the rename
        assert train_config.TrainConfig.from_file(tmp_path / "config.json") == TrainConfig(**RESOLVED[new])


def test_refit_is_a_switch_on_the_command_line():
    assert _resolved(["--no-refit"]) == dict(RESOLVED["two-stage"], refit=False)
    assert _resolved(["--refit"]) == RESOLVED["two-stage"]


def test_a_run_saved_before_the_neighbourhood_model_and_the_refit_loads_without_them(tmp_path):
    saved = {k: v for k, v in RESOLVED["two-stage"].items() if not k.startswith("knn_") and k != "refit"}
    (tmp_path / "config.json").write_text(json.dumps(dict(saved, layer_sizes=list(saved["layer_sizes"]))))
    config = train_config.TrainConfig.from_file(tmp_path / "config.json")
    assert config == TrainConfig(**dict(RESOLVED["two-stage"], knn_neighbours=0, refit=False))


def test_a_run_saved_before_the_item_to_item_model_loads_without_it(tmp_path):
    saved = {k: v for k, v in RESOLVED["two-stage"].items() if not k.startswith("item_")}
    (tmp_path / "config.json").write_text(json.dumps(dict(saved, layer_sizes=list(saved["layer_sizes"]))))
    config = train_config.TrainConfig.from_file(tmp_path / "config.json")
    assert config.item_neighbours == 0 and config == TrainConfig(**dict(RESOLVED["two-stage"], item_neighbours=0))


def test_the_hand_set_name_the_studies_start_from_is_the_default_preset():
    assert train_config.preset_values(train_config.HAND_SET) == train_config.preset_values("two-stage")
    assert _resolved(["--preset", train_config.HAND_SET]) == RESOLVED["two-stage"]
