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
