"""The batch-size rule for large data (step_batch)."""

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
    import json

    import pytest

    from train import config as train_config

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
