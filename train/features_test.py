"""Feature tables: histories from the training rows, ratings stored compactly but exactly."""

import numpy as np

from train import data
from train.features import build


def test_history_ratings_are_exact_half_stars_in_float16(fixture_dir):
    movielens = data.load(fixture_dir)
    features = build(movielens, np.arange(len(movielens)))
    assert features.history_ratings.dtype == np.float16  # the served graph holds this column
    r = movielens.ratings
    order = np.lexsort((r.movie, r.user))  # histories are sorted by (user, movie)
    np.testing.assert_array_equal(features.history_ratings.astype(np.float32), r.rating[order].astype(np.float32))
    halves = np.arange(1, 11, dtype=np.float32) / 2  # every MovieLens rating value round-trips
    assert (halves.astype(np.float16).astype(np.float32) == halves).all()
