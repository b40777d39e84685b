"""MovieLens 100K's files: ``u.user`` and ``u.item`` (``|``-separated, latin-1), ``u.data`` and u1.base….

The pipe tables are checked and parsed as whole numpy arrays; ``u.data`` goes through
``train/ratings_file.py``. Two rules exist because values are numpy columns: integers longer than
18 digits are "too large", and a NUL character in u.user/u.item is refused (numpy strings would drop it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from train.checksums import verify_checksums
from train.line_rules import check_line, check_no_nul, parse_int, read_bytes, split_fields, truncated, unexplained
from train.ratings_file import read_ratings_file, read_tab_ratings
from train.tables import (
    MOVIES_FILE, NUM_GENRES, RATINGS_FILE, USERS_FILE, DataError, MovieLens, Movies, Ratings, Users, pair_key,
)
from train.vectorised import first_repeat, first_true, parse_decimals, release_years

AGE_MAX = np.iinfo(np.int32).max


def _reject_user_line(path: Path, number: int, line: str) -> None:
    check_line(path, number, line)
    fields = split_fields(path, number, line, "|", 5)
    parse_int(path, number, "user id", fields[0])
    age = parse_int(path, number, "age", fields[1])
    if fields[2] not in ("M", "F"):
        raise DataError(path, number, f"gender {fields[2]!r} is not M or F")
    if age > AGE_MAX:
        raise DataError(path, number, f"age {age} is too large")
    check_no_nul(path, number, line)
    raise unexplained(path, number)


def _reject_movie_line(path: Path, number: int, line: str) -> None:
    check_line(path, number, line)
    fields = split_fields(path, number, line, "|", 5 + NUM_GENRES)
    parse_int(path, number, "movie id", fields[0])
    flags = [parse_int(path, number, "genre flag", f) for f in fields[5:]]
    if any(f not in (0, 1) for f in flags):
        raise DataError(path, number, "genre flags must be 0 or 1")
    check_no_nul(path, number, line)
    raise unexplained(path, number)


def _reject_pair_line(path: Path, number: int, line: str, movielens: MovieLens) -> None:
    check_line(path, number, line)
    fields = split_fields(path, number, line, "\t", 4)
    user = parse_int(path, number, "user id", fields[0])
    movie = parse_int(path, number, "movie id", fields[1])
    timestamp = parse_int(path, number, "timestamp", fields[3])
    row = int(_find_ratings(movielens, np.array([user]), np.array([movie]), np.array([timestamp]))[0])
    if row < 0:
        raise DataError(path, number, f"rating {fields[:2]} at {fields[3]} is not in {RATINGS_FILE}")
    rating = parse_int(path, number, "rating", fields[2])
    if rating != movielens.ratings.rating[row]:
        raise DataError(path, number, f"rating {rating} differs from {RATINGS_FILE}'s {movielens.ratings.rating[row]:g}")
    raise unexplained(path, number)


@dataclasses.dataclass
class _PipeTable:
    path: Path
    text: str
    ends: np.ndarray  # offset of each line's newline
    columns: list[list[str]]  # fields of the lines [0, n_good)
    n_good: int  # lines before the first one with a wrong field count, a CR or a NUL

    def line(self, row: int) -> str:
        start = int(self.ends[row - 1]) + 1 if row else 0
        return self.text[start : int(self.ends[row])]


def _read_pipe_table(path: Path, n_fields: int) -> _PipeTable:
    raw = read_bytes(path)
    buf = np.frombuffer(raw, np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if raw and raw[-1:] != b"\n":
        raise truncated(path, len(ends))
    n_good = len(ends)
    seps_before = np.searchsorted(np.flatnonzero(buf == ord("|")), ends)
    wrong = first_true(np.diff(seps_before, prepend=0) != n_fields - 1)
    if wrong is not None:
        n_good = wrong
    odd = np.flatnonzero((buf == ord("\r")) | (buf == 0))
    if len(odd):
        n_good = min(n_good, int(np.searchsorted(ends, odd[0])))
    text = raw.decode("latin-1")  # every byte decodes; one character per byte
    flat = text[: ends[n_good - 1]].replace("\n", "|").split("|") if n_good else []
    assert len(flat) == n_good * n_fields
    return _PipeTable(path, text, ends, [flat[j::n_fields] for j in range(n_fields)], n_good)


def _first_error_row(table: _PipeTable, ok: np.ndarray, ids: np.ndarray) -> tuple[int | None, int | None]:
    """(first bad row, or a row repeating an earlier row's id) and that earlier row, in file order."""
    bad = first_true(~ok)
    n_clean = table.n_good if bad is None else bad
    repeat = first_repeat(ids[:n_clean])
    if repeat is not None:
        return repeat
    return (n_clean if n_clean < len(table.ends) else None), None


def read_users(path: Path) -> Users:
    """u.user: id | age | gender | occupation | zip code."""
    table = _read_pipe_table(path, 5)
    ids, ok = parse_decimals(table.columns[0])
    age, age_ok = parse_decimals(table.columns[1])
    gender = np.asarray(table.columns[2], dtype=str)
    ok &= age_ok & (age <= AGE_MAX) & ((gender == "M") | (gender == "F"))
    row, first = _first_error_row(table, ok, ids)
    if row is not None:
        if first is not None:
            raise DataError(path, row + 1, f"duplicate user id {ids[row]}")
        _reject_user_line(path, row + 1, table.line(row))
    return Users(
        ids=np.asarray(table.columns[0], dtype=str),
        age=age.astype(np.int32),
        gender=gender,
        occupation=np.asarray(table.columns[3], dtype=str),
        zip_code=np.asarray(table.columns[4], dtype=str),
    )


def read_movies(path: Path) -> Movies:
    """u.item: id | title | release date | video release | IMDb URL | 19 genre flags (latin-1)."""
    table = _read_pipe_table(path, 5 + NUM_GENRES)
    ids, ok = parse_decimals(table.columns[0])
    genres = np.zeros((table.n_good, NUM_GENRES), np.uint8)
    for g in range(NUM_GENRES):
        flags = np.asarray(table.columns[5 + g], dtype=str)
        one = flags == "1"
        ok &= one | (flags == "0")
        genres[:, g] = one
    row, first = _first_error_row(table, ok, ids)
    if row is not None:
        if first is not None:
            raise DataError(path, row + 1, f"duplicate movie id {ids[row]}")
        _reject_movie_line(path, row + 1, table.line(row))
    titles = np.asarray(table.columns[1], dtype=str)
    return Movies(
        ids=np.asarray(table.columns[0], dtype=str),
        titles=titles,
        year=release_years(np.asarray(table.columns[2], dtype=str), titles),
        genres=genres,
    )



def read_ratings(path: Path, movies: Movies, users: Users) -> Ratings:
    """u.data: user id, movie id, rating, timestamp (tab-separated), ids turned into indices."""
    user, movie, rating, timestamp, _ = read_ratings_file(path, b"\t", False, None, movies, users, MOVIES_FILE,
                                                          USERS_FILE)
    return Ratings(user, movie, rating, timestamp)


def _find_ratings(movielens: MovieLens, user_id: np.ndarray, movie_id: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Row of each (user id, movie id, timestamp) rating in ``movielens.ratings``, -1 if none."""
    user, movie = movielens.users.index(user_id), movielens.movies.index(movie_id)
    keys, order = movielens.pair_keys
    probe = pair_key(user, movie, len(movielens.movies))
    if len(keys) == 0:
        return np.full(len(probe), -1, np.int64)
    at = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
    row = order[at]
    hit = (user >= 0) & (movie >= 0) & (keys[at] == probe) & (movielens.ratings.timestamp[row] == timestamp)
    return np.where(hit, row, -1).astype(np.int64)


def read_pairs(path: Path, movielens: MovieLens) -> np.ndarray:
    """Row indices into ``movielens.ratings`` of the ratings listed in a u1.base-style file.

    The u1…u5 files repeat u.data's lines; we look each one up rather than
    re-joining so both code paths share one set of checks.
    """
    parts: list[np.ndarray] = []
    failed: tuple[int, str] | None = None
    for block in read_tab_ratings(path):
        user_id, movie_id, rating, timestamp = block.columns
        row = _find_ratings(movielens, user_id, movie_id, timestamp)
        bad = first_true((row < 0) | (movielens.ratings.rating[np.maximum(row, 0)] != rating))
        n = block.n_good if bad is None else bad
        parts.append(row[:n])
        if n < len(block.ends):
            failed = block.first_line + n, block.line(n)
            break
    rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    repeat = first_repeat(rows)
    if repeat is not None:
        raise DataError(path, repeat[0] + 1, f"repeats line {repeat[1] + 1}")
    if failed is not None:
        _reject_pair_line(path, *failed, movielens)
    return rows


def load_100k(data_dir: Path | str) -> MovieLens:
    data_dir = Path(data_dir)
    digests = verify_checksums(data_dir)
    movies = read_movies(data_dir / MOVIES_FILE)
    users = read_users(data_dir / USERS_FILE)
    ratings = read_ratings(data_dir / RATINGS_FILE, movies, users)
    return MovieLens(ratings, movies, users, data_dir, digests)
