"""Named train/validation/test splits of the ratings.

``seed-temporal`` reproduces the reference blog's split by timestamp range, so
its numbers can be compared with ours; ``u1``…``u5`` are MovieLens' own 80/20
files, which keep every user in training and so measure a different thing
(rating prediction for known users rather than cold start).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from train.data import DataError, MovieLens, read_pairs

SEED_TEMPORAL = "seed-temporal"
FOLDS = ("u1", "u2", "u3", "u4", "u5")
NAMES = (SEED_TEMPORAL, *FOLDS)
FOLD_VALIDATION_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Split:
    """Row indices (int64) into ``MovieLens.ratings`` for each part."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def rows(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def seed_temporal(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train ≤ min+0.6·range < val ≤ min+0.8·range < test."""
    t_min, t_max = int(timestamps.min()), int(timestamps.max())
    first = t_min + 0.6 * (t_max - t_min)
    second = t_min + 0.8 * (t_max - t_min)
    train = np.flatnonzero(timestamps <= first)
    val = np.flatnonzero((timestamps > first) & (timestamps <= second))
    test = np.flatnonzero(timestamps > second)
    return train, val, test


def fold_files(name: str) -> tuple[str, str]:
    return f"{name}.base", f"{name}.test"


def make(name: str, movielens: MovieLens, seed: int = 42) -> Split:
    if name == SEED_TEMPORAL:
        return Split(name, *seed_temporal(movielens.ratings.timestamp))
    if name in FOLDS:
        base_file, test_file = (movielens.data_dir / f for f in fold_files(name))
        base = read_pairs(base_file, movielens)
        test = read_pairs(test_file, movielens)
        overlap = np.intersect1d(base, test, assume_unique=True)  # read_pairs refuses repeated lines
        if len(overlap):
            first = overlap[0]
            user = movielens.users.ids[movielens.ratings.user[first]]
            movie = movielens.movies.ids[movielens.ratings.movie[first]]
            raise DataError(
                test_file, None, f"{len(overlap)} ratings are also in {base_file.name}, e.g. user {user} movie {movie}"
            )
        shuffled = np.random.default_rng(seed).permutation(base)
        n_val = int(round(len(base) * FOLD_VALIDATION_FRACTION))
        return Split(name, np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val]), test)
    raise ValueError(f"unknown split {name!r}; choose one of {', '.join(NAMES)}")
