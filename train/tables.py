"""The MovieLens tables every layout is read into, with their id → row index.

Ids become integer indices once, at load: ``Ratings.user[i]`` is a row of ``Users`` and
``Ratings.movie[i]`` a row of ``Movies``, so nothing downstream compares string ids.
``DataError`` is the one error every reader raises, naming ``file:line``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

RATINGS_FILE = "u.data"
MOVIES_FILE = "u.item"
USERS_FILE = "u.user"
REQUIRED_FILES = (RATINGS_FILE, MOVIES_FILE, USERS_FILE)

NUM_GENRES = 19
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
assert len(GENRES) == NUM_GENRES
# TFDS's bucketized_user_age: the lower bound of the MovieLens-1M age groups.
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)


class DataError(ValueError):
    """A MovieLens file is missing, malformed or inconsistent."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem



class _Indexed:
    """Id → row lookup for a table whose ``ids`` column holds unique ids."""

    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def _by_str(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.ids, kind="stable")
        return self.ids[order], order

    @functools.cached_property
    def _by_int(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        values = self.ids.astype(np.int64)  # the ids are canonical decimal integers (checked at load)
        order = np.argsort(values, kind="stable")
        table = None
        if len(values) and 0 <= values[order[0]] and values[order[-1]] < 4 * len(values) + 1024:
            # Dense ids (MovieLens numbers them 1…n): a direct id → row table beats binary search.
            table = np.full(int(values[order[-1]]) + 1, -1, np.int32)
            table[values[order[::-1]]] = order[::-1]  # the first row wins if an id repeats
        return values[order], order, table

    def index(self, ids) -> np.ndarray:
        """The int32 row of each id (``-1`` if unknown), with no per-id Python work.

        ``ids`` are str ids (a str, a sequence or a numpy array), found by binary search in the
        sorted ids. An integer array is looked up by value (the loader's parsed ``u.data``
        columns): through a direct table when the ids are dense, as MovieLens' 1…n are.
        """
        query = np.asarray(ids)
        if query.dtype.kind in "iu":
            keys, order, table = self._by_int
            query = query.astype(np.int64, copy=False)
            if table is not None:
                inside = (query >= 0) & (query < len(table))
                return np.where(inside, table[np.where(inside, query, 0)], -1).astype(np.int32)
        else:
            keys, order = self._by_str
            if query.dtype.kind != "U":
                query = query.astype(str)
        if len(keys) == 0:
            return np.full(query.shape, -1, dtype=np.int32)
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[at] == query, order[at], -1).astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Users(_Indexed):
    """Row ``i`` describes user index ``i``, in ``u.user`` order.

    Demographics are optional: a layout without them (the CSV sets) has age 0,
    and gender, occupation and zip code "" — the "unknown" of ``train/features.py``.
    """

    ids: np.ndarray  # str ('<U…')
    age: np.ndarray  # int32, 0 if unknown
    gender: np.ndarray  # str, 'M' or 'F', '' if unknown
    occupation: np.ndarray  # str, '' if unknown
    zip_code: np.ndarray  # str, '' if unknown


@dataclasses.dataclass(frozen=True, eq=False)
class Movies(_Indexed):
    """Row ``i`` describes movie index ``i``, in ``u.item`` order."""

    ids: np.ndarray  # str ('<U…')
    titles: np.ndarray  # str (u.item is latin-1)
    year: np.ndarray  # int32 release year, 0 if unknown
    genres: np.ndarray  # uint8 [n_movies, len(genre_names)] multi-hot, in genre_names order
    genre_names: tuple[str, ...] = GENRES  # the columns of genres (the other layouts: train/layouts.py)


@dataclasses.dataclass(frozen=True, eq=False)
class Ratings:
    """Row ``i`` is line ``i + 1`` of ``u.data``, so splits are row indices."""

    user: np.ndarray  # int32 index into Users
    movie: np.ndarray  # int32 index into Movies
    rating: np.ndarray  # float32, 1-5
    timestamp: np.ndarray  # int64, seconds since the epoch

    def __len__(self) -> int:
        return len(self.user)


@dataclasses.dataclass
class MovieLens:
    """The three tables, where they were read from, the SHA-256 of each file read and the file layout."""

    ratings: Ratings
    movies: Movies
    users: Users
    data_dir: Path
    sha256: dict[str, str]
    layout: str = "ml-100k"  # train/layouts.py: ml-100k, ml-1m or csv

    def __len__(self) -> int:
        return len(self.ratings)

    @functools.cached_property
    def pair_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted ``user * n_movies + movie`` keys of the ratings and the row of each."""
        keys = pair_key(self.ratings.user, self.ratings.movie, len(self.movies))
        order = np.argsort(keys)
        return keys[order], order


def pair_key(user: np.ndarray, movie: np.ndarray, n_movies: int) -> np.ndarray:
    return user.astype(np.int64) * n_movies + movie


def bucketize_age(age):
    """The MovieLens-1M age group (its lower bound) of an age or of an array of ages."""
    buckets = np.asarray(AGE_BUCKETS)
    bucket = buckets[np.maximum(np.searchsorted(buckets, np.asarray(age), side="right") - 1, 0)]
    return int(bucket) if np.ndim(bucket) == 0 else bucket.astype(np.int32)

