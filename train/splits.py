"""Named train/validation/test splits of the ratings.

``seed-temporal`` reproduces the reference blog's split by timestamp range, so
its numbers can be compared with ours; ``u1``…``u5`` are MovieLens 100K's own
80/20 files, which keep every user in training and so measure a different thing
(rating prediction for known users rather than cold start). Two more work on
every layout: ``leave-last-out`` (per user, the latest rating is test and the
one before it validation: next-item prediction for known users) and ``random``
(a seeded 80/10/10 shuffle of the rows). All are vectorised: a sort or a
permutation of the rows, whatever their count.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from train.data import DataError, MovieLens, read_pairs
from train.layouts import LAYOUT_100K

SEED_TEMPORAL = "seed-temporal"
LEAVE_LAST_OUT = "leave-last-out"
RANDOM = "random"
FOLDS = ("u1", "u2", "u3", "u4", "u5")
NAMES = (SEED_TEMPORAL, LEAVE_LAST_OUT, RANDOM, *FOLDS)
FOLD_VALIDATION_FRACTION = 0.1
GATE_SHARE = 0.5  # of the validation rows: kept out of the refit for the rollout gate (refit_and_gate)
RANDOM_FRACTIONS = (0.8, 0.1, 0.1)
LEAVE_LAST_OUT_MIN_RATINGS = 3  # users with fewer ratings stay wholly in train


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


def leave_last_out(user: np.ndarray, timestamp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's latest rating is test and the one before it validation; the rest train.

    Ties in time go to the later row (file order). Users with fewer than
    LEAVE_LAST_OUT_MIN_RATINGS ratings stay wholly in train.
    """
    n = len(user)
    order = np.lexsort((np.arange(n), timestamp, user))  # by user, then time, then row
    ordered_user = user[order]
    group_end = np.searchsorted(ordered_user, ordered_user, side="right")  # one past each user's last
    from_end = group_end - 1 - np.arange(n)  # 0 = the user's latest rating
    count = np.bincount(user)[ordered_user] if n else np.zeros(0, np.int64)
    eligible = count >= LEAVE_LAST_OUT_MIN_RATINGS
    test = np.sort(order[eligible & (from_end == 0)])
    val = np.sort(order[eligible & (from_end == 1)])
    train = np.sort(order[~eligible | (from_end >= 2)])
    return train.astype(np.int64), val.astype(np.int64), test.astype(np.int64)


def random_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded shuffle of the rows cut 80/10/10 (rounded); each part in row order."""
    shuffled = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * RANDOM_FRACTIONS[0]))
    n_val = int(round(n * RANDOM_FRACTIONS[1]))
    parts = shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :]
    return tuple(np.sort(part).astype(np.int64) for part in parts)


def fold_files(name: str) -> tuple[str, str]:
    return f"{name}.base", f"{name}.test"


def make(name: str, movielens: MovieLens, seed: int = 42) -> Split:
    if name == SEED_TEMPORAL:
        return Split(name, *seed_temporal(movielens.ratings.timestamp))
    if name == LEAVE_LAST_OUT:
        return Split(name, *leave_last_out(movielens.ratings.user, movielens.ratings.timestamp))
    if name == RANDOM:
        return Split(name, *random_split(len(movielens.ratings), seed))
    if name in FOLDS and movielens.layout != LAYOUT_100K:
        raise DataError(
            movielens.data_dir, None,
            f"split {name} is one of MovieLens 100K's own fold files (u1.base…u5.test); this folder is the {movielens.layout} "
            f"layout, which has none: use {SEED_TEMPORAL}, {LEAVE_LAST_OUT} or {RANDOM}",
        )
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
        return Split(name, *carve_validation(base, seed), test)
    raise ValueError(f"unknown split {name!r}; choose one of {', '.join(NAMES)}")


def carve_validation(base: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fold's base rows cut into (train, validation): a seeded FOLD_VALIDATION_FRACTION of them validate.

    The one carve-out of a fold: the trainer chooses the blend weight and stops
    the ranking stage on this validation part, and a tuning trial
    (``train/tuning.py``) is scored on it.
    """
    shuffled = np.random.default_rng(seed).permutation(base)
    n_val = int(round(len(base) * FOLD_VALIDATION_FRACTION))
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val])


def refit_and_gate(val: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The validation rows cut into (refit, gate): a seeded GATE_SHARE of them are never trained on.

    Once validation has chosen the ranking epochs and the blend weight, the
    served models train again on train + the refit rows (``trainer.refit``);
    the gate rows stay unseen, so the rollout gate (``export/gate.py``) can
    still compare a new version with the served one on ratings neither learnt from.
    """
    shuffled = np.random.default_rng([seed, 1]).permutation(val)
    n_gate = int(round(len(val) * GATE_SHARE))
    return np.sort(shuffled[n_gate:]), np.sort(shuffled[:n_gate])


def without_test(name: str, movielens: MovieLens, seed: int = 42) -> Split:
    """The split's train and validation parts as ``make`` cuts them, and an empty test part.

    For a fold only its base file is read (the test file is never opened), so
    whatever is chosen on this split has not seen the fold's test ratings; for
    seed-temporal the latest 20% of the time range is simply left out.
    """
    if name not in FOLDS or movielens.layout != LAYOUT_100K:  # make refuses a fold of another layout
        split = make(name, movielens, seed)
        return Split(name, split.train, split.val, np.zeros(0, np.int64))
    base = read_pairs(movielens.data_dir / fold_files(name)[0], movielens)
    return Split(name, *carve_validation(base, seed), np.zeros(0, np.int64))
