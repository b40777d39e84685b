"""Reads the original MovieLens 100K files into per-rating records.

The records carry the same fields as TFDS ``movielens/100k-ratings`` so that code
written against the TFDS tutorials reads them unchanged, but they come from the
raw GroupLens files: TFDS would download at run time, and the project has to be
explicit about where its data comes from (see ``train/download.py``).

Parsing is strict. Every malformed line raises ``DataError`` naming the file and
line; nothing is dropped or coerced, because a silently shortened dataset moves
every metric downstream without anyone noticing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np

RATINGS_FILE = "u.data"
MOVIES_FILE = "u.item"
USERS_FILE = "u.user"
REQUIRED_FILES = (RATINGS_FILE, MOVIES_FILE, USERS_FILE)
CHECKSUMS_FILE = "SHA256SUMS"

NUM_GENRES = 19
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


@dataclasses.dataclass(frozen=True)
class Movie:
    movie_id: str
    title: str
    genres: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class User:
    user_id: str
    age: int
    gender: str
    occupation: str
    zip_code: str


def _lines(path: Path):
    """Yields (line number, text without newline); a last line without newline is truncated.

    The files are latin-1 (every byte decodes), with Unix line endings.
    """
    try:
        text = path.read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    if text and not text.endswith("\n"):
        last = text.count("\n") + 1
        raise DataError(path, last, "truncated line: the file does not end with a newline")
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        if not line.strip():
            raise DataError(path, number, "empty line")
        if "\r" in line:
            raise DataError(path, number, "carriage return: the files use Unix line endings")
        yield number, line


def _fields(path: Path, number: int, line: str, sep: str, expected: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != expected:
        raise DataError(path, number, f"expected {expected} {sep!r}-separated fields, found {len(fields)}")
    return fields


_INTEGER = re.compile(r"0|[1-9][0-9]*")


def _int(path: Path, number: int, name: str, value: str) -> int:
    # Stricter than int(), which also takes " 7", "+7", "07" and "1_0": none of
    # those appear in MovieLens, and accepting them would rewrite ids silently.
    if not _INTEGER.fullmatch(value):
        raise DataError(path, number, f"{name} {value!r} is not an integer")
    return int(value)


def read_movies(path: Path) -> dict[str, Movie]:
    """u.item: id | title | release date | video release | IMDb URL | 19 genre flags (latin-1)."""
    movies: dict[str, Movie] = {}
    for number, line in _lines(path):
        fields = _fields(path, number, line, "|", 5 + NUM_GENRES)
        movie_id = str(_int(path, number, "movie id", fields[0]))
        flags = [_int(path, number, "genre flag", f) for f in fields[5:]]
        if any(f not in (0, 1) for f in flags):
            raise DataError(path, number, "genre flags must be 0 or 1")
        if movie_id in movies:
            raise DataError(path, number, f"duplicate movie id {movie_id}")
        movies[movie_id] = Movie(movie_id, fields[1], tuple(i for i, f in enumerate(flags) if f))
    return movies


def read_users(path: Path) -> dict[str, User]:
    """u.user: id | age | gender | occupation | zip code."""
    users: dict[str, User] = {}
    for number, line in _lines(path):
        fields = _fields(path, number, line, "|", 5)
        user_id = str(_int(path, number, "user id", fields[0]))
        age = _int(path, number, "age", fields[1])
        if fields[2] not in ("M", "F"):
            raise DataError(path, number, f"gender {fields[2]!r} is not M or F")
        if user_id in users:
            raise DataError(path, number, f"duplicate user id {user_id}")
        users[user_id] = User(user_id, age, fields[2], fields[3], fields[4])
    return users


def bucketize_age(age: int) -> int:
    return max(b for b in AGE_BUCKETS if b <= age) if age >= AGE_BUCKETS[0] else AGE_BUCKETS[0]


def read_ratings(path: Path, movies: dict[str, Movie], users: dict[str, User]) -> dict[str, np.ndarray]:
    """u.data (user, item, rating, timestamp; tab-separated) joined with movies and users.

    Returns columns named as in TFDS ``movielens/100k-ratings``.
    """
    cols: dict[str, list] = {k: [] for k in RECORD_FIELDS}
    seen: dict[tuple[str, str], int] = {}
    for number, line in _lines(path):
        fields = _fields(path, number, line, "\t", 4)
        user_id = str(_int(path, number, "user id", fields[0]))
        movie_id = str(_int(path, number, "movie id", fields[1]))
        rating = _int(path, number, "rating", fields[2])
        timestamp = _int(path, number, "timestamp", fields[3])
        if not 1 <= rating <= 5:
            raise DataError(path, number, f"rating {rating} is outside 1-5")
        user = users.get(user_id)
        if user is None:
            raise DataError(path, number, f"rating for unknown user {user_id} (not in {USERS_FILE})")
        movie = movies.get(movie_id)
        if movie is None:
            raise DataError(path, number, f"rating for unknown movie {movie_id} (not in {MOVIES_FILE})")
        if (user_id, movie_id) in seen:
            raise DataError(path, number, f"user {user_id} rated movie {movie_id} again (first at line {seen[user_id, movie_id]})")
        seen[user_id, movie_id] = number
        cols["user_id"].append(user_id)
        cols["movie_id"].append(movie_id)
        cols["movie_title"].append(movie.title)
        cols["movie_genres"].append(movie.genres)
        cols["timestamp"].append(timestamp)
        cols["user_rating"].append(float(rating))
        cols["raw_user_age"].append(float(user.age))
        cols["bucketized_user_age"].append(float(bucketize_age(user.age)))
        cols["user_gender"].append(user.gender == "M")
        cols["user_occupation_text"].append(user.occupation)
        cols["user_zip_code"].append(user.zip_code)
    if not cols["user_id"]:
        raise DataError(path, None, "no ratings")
    out = {k: np.asarray(v, dtype=RECORD_FIELDS[k]) for k, v in cols.items() if k != "movie_genres"}
    genres = np.empty(len(cols["movie_genres"]), dtype=object)
    genres[:] = [np.asarray(g, dtype=np.int64) for g in cols["movie_genres"]]
    out["movie_genres"] = genres
    return out


RECORD_FIELDS: dict[str, type] = {
    "user_id": object,
    "movie_id": object,
    "movie_title": object,
    "movie_genres": object,  # ragged: one int array per rating
    "timestamp": np.int64,
    "user_rating": np.float32,
    "raw_user_age": np.float32,
    "bucketized_user_age": np.float32,
    "user_gender": bool,
    "user_occupation_text": object,
    "user_zip_code": object,
}


@dataclasses.dataclass
class MovieLens:
    """The joined dataset: per-rating columns plus the movie and user tables."""

    ratings: dict[str, np.ndarray]
    movies: dict[str, Movie]
    users: dict[str, User]
    data_dir: Path
    sha256: dict[str, str]

    def __len__(self) -> int:
        return len(self.ratings["user_id"])


def sha256_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None


def verify_checksums(data_dir: Path, names=REQUIRED_FILES) -> dict[str, str]:
    """Hashes the files we read; checks them against SHA256SUMS when the directory has one."""
    digests = {name: sha256_of(data_dir / name) for name in names}
    sums = data_dir / CHECKSUMS_FILE
    if sums.exists():
        expected = {}
        for number, line in enumerate(sums.read_text().splitlines(), start=1):
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DataError(sums, number, "expected '<sha256>  <file name>'")
            expected[parts[1].lstrip("*")] = parts[0]
        for name, digest in digests.items():
            if name in expected and expected[name] != digest:
                raise DataError(data_dir / name, None, f"SHA-256 {digest} does not match {CHECKSUMS_FILE}")
    return digests


def load(data_dir: Path | str) -> MovieLens:
    data_dir = Path(data_dir)
    digests = verify_checksums(data_dir)
    movies = read_movies(data_dir / MOVIES_FILE)
    users = read_users(data_dir / USERS_FILE)
    ratings = read_ratings(data_dir / RATINGS_FILE, movies, users)
    return MovieLens(ratings, movies, users, data_dir, digests)


def read_pairs(path: Path, movielens: MovieLens) -> np.ndarray:
    """Indices into ``movielens.ratings`` of the ratings listed in a u1.base-style file.

    The u1…u5 files repeat u.data's lines; we look each one up rather than
    re-joining so both code paths share one set of checks.
    """
    r = movielens.ratings
    index = {(u, m, t): i for i, (u, m, t) in enumerate(zip(r["user_id"], r["movie_id"], r["timestamp"]))}
    rows = []
    first_line: dict[int, int] = {}
    for number, line in _lines(path):
        fields = _fields(path, number, line, "\t", 4)
        key = (
            str(_int(path, number, "user id", fields[0])),
            str(_int(path, number, "movie id", fields[1])),
            _int(path, number, "timestamp", fields[3]),
        )
        i = index.get(key)
        if i is None:
            raise DataError(path, number, f"rating {fields[:2]} at {fields[3]} is not in {RATINGS_FILE}")
        rating = _int(path, number, "rating", fields[2])
        if rating != r["user_rating"][i]:
            raise DataError(path, number, f"rating {rating} differs from {RATINGS_FILE}'s {r['user_rating'][i]:g}")
        if i in first_line:
            raise DataError(path, number, f"repeats line {first_line[i]}")
        first_line[i] = number
        rows.append(i)
    return np.asarray(rows, dtype=np.int64)
