"""Side features and training histories, as integer tables indexed by row.

Both stages (retrieval and ranking) and the served graph read users and movies
through the same rows: row 0 is "unknown", user row ``i + 1`` is
``Users`` index ``i`` and movie row ``j + 1`` is ``Movies`` index ``j``. Every
table here is sized users + movies + training ratings, never users × movies,
and is built with numpy in one pass, so it scales with the data.

A user with no training rating still has a profile row (age, gender,
occupation from ``u.user``) and is scored from it; a wholly unknown id lands on
row 0, whose features are all "unknown".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from train.data import MovieLens, bucketize_age
from train.interactions import Interactions

UNKNOWN = 0  # row 0 of every table, and value 0 of every categorical feature
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups (TFDS bucketized_user_age)
GENDERS = ("M", "F")
YEAR_MIN, YEAR_STEP, YEAR_BUCKETS = 1900, 5, 32  # five-year buckets from 1900; later years share the last


@dataclasses.dataclass(frozen=True)
class FeatureTables:
    """Everything the models and the served graph know about users and movies."""

    user_age: np.ndarray  # int32 [n_user_rows], 0 unknown, else 1 + AGE_BUCKETS index
    user_gender: np.ndarray  # int32 [n_user_rows], 0 unknown, 1 M, 2 F
    user_occupation: np.ndarray  # int32 [n_user_rows], 0 unknown, else 1 + occupations index
    occupations: np.ndarray  # str, the occupation vocabulary
    movie_genres: np.ndarray  # float32 [n_movie_rows, n_genres] multi-hot
    movie_year: np.ndarray  # int32 [n_movie_rows], 0 unknown, else a five-year bucket
    history_indptr: np.ndarray  # int64 [n_user_rows + 1]: training ratings per user row (CSR)
    history_movies: np.ndarray  # int32 [n_train]: movie rows, sorted within each user
    # float16 [n_train]: the ratings, aligned with history_movies. Half stars are exact in float16, and the
    # served graph holds this column, a large share of the SavedModel at scale (docs/training.md, "Large data").
    history_ratings: np.ndarray
    history_times: np.ndarray  # int64 [n_train]: when each was rated, aligned with history_movies
    movie_count: np.ndarray  # int64 [n_movie_rows]: training ratings per movie
    user_ids: np.ndarray  # str [n_user_rows - 1]: the raw id of each known user row
    movie_ids: np.ndarray  # str [n_movie_rows - 1]
    movie_titles: np.ndarray  # str [n_movie_rows - 1]

    @property
    def n_user_rows(self) -> int:
        return len(self.user_age)

    @property
    def n_movie_rows(self) -> int:
        return len(self.movie_year)

    @property
    def n_genres(self) -> int:
        return self.movie_genres.shape[1]

    @property
    def n_occupations(self) -> int:
        return len(self.occupations) + 1

    @property
    def history(self) -> Interactions:
        return Interactions(self.history_indptr, self.history_movies, self.n_movie_rows)

    @property
    def catalogue(self) -> np.ndarray:
        """Movie rows that have training ratings: only these are recommended."""
        return np.flatnonzero(self.movie_count > 0).astype(np.int32)

    @property
    def longest_history(self) -> int:
        return int(np.diff(self.history_indptr).max(initial=0))

    def save(self, path: Path) -> None:
        np.savez(path, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: Path) -> "FeatureTables":
        with np.load(path, allow_pickle=False) as npz:
            return cls(**{f.name: npz[f.name] for f in dataclasses.fields(cls)})


def age_bucket(age: np.ndarray) -> np.ndarray:
    """1 + the index of the age group; an age of 0 (no demographics, e.g. the CSV sets) is unknown."""
    age = np.asarray(age)
    bucket = np.searchsorted(AGE_BUCKETS, bucketize_age(age), side="left") + 1
    return np.where(age > 0, bucket, UNKNOWN).astype(np.int32)


def year_bucket(year: np.ndarray) -> np.ndarray:
    year = np.asarray(year)
    bucket = np.clip((year - YEAR_MIN) // YEAR_STEP, 0, YEAR_BUCKETS - 2) + 1
    return np.where(year > 0, bucket, UNKNOWN).astype(np.int32)


def _with_unknown_row(values: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((1,) + values.shape[1:], values.dtype), values])


def build(movielens: MovieLens, train_rows: np.ndarray) -> FeatureTables:
    """Feature tables for all users and movies, with histories from ``train_rows`` only."""
    users, movies, ratings = movielens.users, movielens.movies, movielens.ratings
    # An empty occupation or gender (a layout without demographics) is the unknown value 0.
    known_occupation = users.occupation != ""
    occupations, known_index = np.unique(users.occupation[known_occupation], return_inverse=True)
    occupation = np.full(len(users), -1, np.int64)
    occupation[known_occupation] = known_index.reshape(-1)
    gender = np.zeros(len(users), np.int32)
    for value, name in enumerate(GENDERS, start=1):
        gender[users.gender == name] = value

    n_user_rows, n_movie_rows = len(users) + 1, len(movies) + 1
    user_rows = ratings.user[train_rows].astype(np.int64) + 1
    movie_rows = ratings.movie[train_rows].astype(np.int64) + 1
    # One sort orders the histories by (user, movie); the ratings follow the same order.
    order = np.argsort(user_rows * n_movie_rows + movie_rows, kind="stable")
    history = Interactions.from_pairs(user_rows, movie_rows, n_user_rows, n_movie_rows)
    if history.nnz != len(train_rows):
        raise ValueError("training rows repeat a (user, movie) pair")
    return FeatureTables(
        user_age=_with_unknown_row(age_bucket(users.age)),
        user_gender=_with_unknown_row(gender),
        user_occupation=_with_unknown_row((occupation + 1).astype(np.int32)),
        occupations=occupations.astype(str),
        movie_genres=_with_unknown_row(movies.genres.astype(np.float32)),
        movie_year=_with_unknown_row(year_bucket(movies.year)),
        history_indptr=history.indptr,
        history_movies=history.indices,
        history_ratings=ratings.rating[train_rows][order].astype(np.float16),
        history_times=ratings.timestamp[train_rows][order].astype(np.int64),
        movie_count=np.bincount(movie_rows, minlength=n_movie_rows).astype(np.int64),
        user_ids=users.ids.astype(str),
        movie_ids=movies.ids.astype(str),
        movie_titles=movies.titles.astype(str),
    )


def rows_of(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Row of each raw id in a table's ``known`` ids (row = index + 1), 0 for an unknown id; vectorised."""
    ids = np.asarray(ids).astype(str)
    if not len(known):
        return np.full(ids.shape, UNKNOWN, np.int64)
    order = np.argsort(known, kind="stable")
    at = np.minimum(np.searchsorted(known[order], ids), len(known) - 1)
    return np.where(known[order][at] == ids, order[at] + 1, UNKNOWN).astype(np.int64)
