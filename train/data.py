"""Reads the original MovieLens 100K files into integer-indexed columns.

``load`` reads any MovieLens layout (100K, 1M, the CSV sets), detected from the
files present: ``train/layouts.py`` reads the others into the same tables with
these rules and helpers.

Ids become integer indices once, here: ``Ratings.user[i]`` is a row of
``Users`` and ``Ratings.movie[i]`` a row of ``Movies``, so nothing downstream
compares string ids. The files come from GroupLens, not TFDS (see
``train/download.py``), and any MovieLens-100K-format folder of any size reads
the same way (``train/synthetic.py`` writes such folders).

Parsing is strict. Every malformed line raises ``DataError`` naming the file and
line; nothing is dropped or coerced, because a silently shortened dataset moves
every metric downstream without anyone noticing.

Parsing is also linear and vectorised: each file is checked and parsed as whole
numpy arrays (``u.data`` in chunks, so memory stays a small multiple of the
result), with no Python work per rating. The vectorised checks are exactly as
strict as the line rules; when they find something wrong, the first bad line is
handed to the line-by-line validator (``_reject_*``), which names the problem.
The first error in file order is the one reported, as a line-by-line reader
would report it. Two rules exist because values are now numpy columns:
integers longer than 18 digits are "too large" (everything fits an int64), and
a NUL character in u.user/u.item is refused (numpy strings would drop it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from pathlib import Path
from typing import Iterator

import numpy as np

RATINGS_FILE = "u.data"
MOVIES_FILE = "u.item"
USERS_FILE = "u.user"
REQUIRED_FILES = (RATINGS_FILE, MOVIES_FILE, USERS_FILE)
CHECKSUMS_FILE = "SHA256SUMS"

NUM_GENRES = 19
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
assert len(GENRES) == NUM_GENRES
# TFDS's bucketized_user_age: the lower bound of the MovieLens-1M age groups.
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)

# Integers longer than this are refused: every value then fits in an int64.
MAX_DIGITS = 18
AGE_MAX = np.iinfo(np.int32).max
# u.data is read in blocks of about this many bytes (cut at a line end): ~350k lines, ~100 MB of temporaries.
CHUNK_BYTES = 1 << 23


class DataError(ValueError):
    """A MovieLens file is missing, malformed or inconsistent."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


# --- the tables ------------------------------------------------------------------------------


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
    def _pair_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted ``user * n_movies + movie`` keys of the ratings and the row of each."""
        keys = _pair_key(self.ratings.user, self.ratings.movie, len(self.movies))
        order = np.argsort(keys)
        return keys[order], order


def _pair_key(user: np.ndarray, movie: np.ndarray, n_movies: int) -> np.ndarray:
    return user.astype(np.int64) * n_movies + movie


def bucketize_age(age):
    """The MovieLens-1M age group (its lower bound) of an age or of an array of ages."""
    buckets = np.asarray(AGE_BUCKETS)
    bucket = buckets[np.maximum(np.searchsorted(buckets, np.asarray(age), side="right") - 1, 0)]
    return int(bucket) if np.ndim(bucket) == 0 else bucket.astype(np.int32)


# --- the line rules (used to name the problem once the vectorised checks found one) ----------

_INTEGER = re.compile(r"0|[1-9][0-9]*")


def _check_line(path: Path, number: int, line: str) -> None:
    if not line.strip():
        raise DataError(path, number, "empty line")
    if "\r" in line:
        raise DataError(path, number, "carriage return: the files use Unix line endings")


def _fields(path: Path, number: int, line: str, sep: str, expected: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != expected:
        raise DataError(path, number, f"expected {expected} {sep!r}-separated fields, found {len(fields)}")
    return fields


def _int(path: Path, number: int, name: str, value: str) -> int:
    # Stricter than int(), which also takes " 7", "+7", "07" and "1_0": none of
    # those appear in MovieLens, and accepting them would rewrite ids silently.
    if not _INTEGER.fullmatch(value):
        raise DataError(path, number, f"{name} {value!r} is not an integer")
    if len(value) > MAX_DIGITS:
        raise DataError(path, number, f"{name} {value!r} is too large (more than {MAX_DIGITS} digits)")
    return int(value)


def _check_no_nul(path: Path, number: int, line: str) -> None:
    # numpy strings cannot hold a trailing NUL: refuse it rather than lose it.
    if "\x00" in line:
        raise DataError(path, number, "NUL character")


def _unexplained(path: Path, number: int) -> DataError:
    # The vectorised checks and the line rules disagree: a bug here, not in the data.
    return DataError(path, number, "malformed line (rejected by the vectorised check, but no line rule names why)")


def _reject_user_line(path: Path, number: int, line: str) -> None:
    _check_line(path, number, line)
    fields = _fields(path, number, line, "|", 5)
    _int(path, number, "user id", fields[0])
    age = _int(path, number, "age", fields[1])
    if fields[2] not in ("M", "F"):
        raise DataError(path, number, f"gender {fields[2]!r} is not M or F")
    if age > AGE_MAX:
        raise DataError(path, number, f"age {age} is too large")
    _check_no_nul(path, number, line)
    raise _unexplained(path, number)


def _reject_movie_line(path: Path, number: int, line: str) -> None:
    _check_line(path, number, line)
    fields = _fields(path, number, line, "|", 5 + NUM_GENRES)
    _int(path, number, "movie id", fields[0])
    flags = [_int(path, number, "genre flag", f) for f in fields[5:]]
    if any(f not in (0, 1) for f in flags):
        raise DataError(path, number, "genre flags must be 0 or 1")
    _check_no_nul(path, number, line)
    raise _unexplained(path, number)


def _reject_pair_line(path: Path, number: int, line: str, movielens: MovieLens) -> None:
    _check_line(path, number, line)
    fields = _fields(path, number, line, "\t", 4)
    user = _int(path, number, "user id", fields[0])
    movie = _int(path, number, "movie id", fields[1])
    timestamp = _int(path, number, "timestamp", fields[3])
    row = int(_find_ratings(movielens, np.array([user]), np.array([movie]), np.array([timestamp]))[0])
    if row < 0:
        raise DataError(path, number, f"rating {fields[:2]} at {fields[3]} is not in {RATINGS_FILE}")
    rating = _int(path, number, "rating", fields[2])
    if rating != movielens.ratings.rating[row]:
        raise DataError(path, number, f"rating {rating} differs from {RATINGS_FILE}'s {movielens.ratings.rating[row]:g}")
    raise _unexplained(path, number)


# --- vectorised helpers ----------------------------------------------------------------------


def _first(bad: np.ndarray) -> int | None:
    """Index of the first True, or None."""
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def _first_repeat(keys: np.ndarray) -> tuple[int, int] | None:
    """(row, earlier row) of the first row whose key already occurred, in row order; O(n log n)."""
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return None  # the common case costs one sort
    del ordered
    order = np.argsort(keys, kind="stable")  # equal keys keep row order
    ordered = keys[order]
    repeats = order[1:][ordered[1:] == ordered[:-1]]
    row = int(repeats.min())
    return row, int(order[np.searchsorted(ordered, keys[row])])


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None


def _truncated(path: Path, newlines: int) -> DataError:
    return DataError(path, newlines + 1, "truncated line: the file does not end with a newline")


def _decimal(strings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parses a str array as strict decimal integers: (int64 values, ok mask).

    ``ok`` is the line rule of ``_int``: ASCII digits only, no sign, space or
    leading zero, at most MAX_DIGITS digits. Strings are looked at as their
    UTF-32 code units, so this is a few array passes whatever the row count.
    """
    strings = np.asarray(strings, dtype=str)
    n = len(strings)
    width = strings.dtype.itemsize // 4
    if n == 0 or width == 0:
        return np.zeros(n, np.int64), np.zeros(n, bool)
    codes = strings.view(np.uint32).reshape(n, width)
    length = np.count_nonzero(codes, axis=1)  # NUL never reaches here: lines holding one are refused
    digit = (codes >= 48) & (codes <= 57)
    ok = (length >= 1) & (length <= MAX_DIGITS) & (digit | (codes == 0)).all(axis=1)
    ok &= ~((codes[:, 0] == 48) & (length > 1))
    values = np.zeros(n, np.int64)
    for k in range(min(width, MAX_DIGITS)):
        values = np.where(ok & (k < length), values * 10 + (codes[:, k].astype(np.int64) - 48), values)
    return values, ok


def _tail(strings: np.ndarray, k: int) -> np.ndarray:
    """The last ``k`` characters of each string as code points, [n, k] (0 where shorter)."""
    n = len(strings)
    width = max(strings.dtype.itemsize // 4, 1)
    codes = np.ascontiguousarray(strings, dtype=f"<U{width}").view(np.uint32).reshape(n, width)
    at = np.strings.str_len(strings)[:, None] - k + np.arange(k)
    picked = codes[np.arange(n)[:, None], np.clip(at, 0, width - 1)]
    return np.where(at >= 0, picked, 0)


def _year_at_end(strings: np.ndarray, before: str, after: str) -> np.ndarray:
    """The 4-digit year that ends each string, framed by ``before`` (and ``after``); 0 if none."""
    tail = _tail(strings, len(before) + 4 + len(after))
    digits = tail[:, len(before) : len(before) + 4].astype(np.int64) - ord("0")
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    frame = [(i, c) for i, c in enumerate(before)] + [(len(before) + 4 + i, c) for i, c in enumerate(after)]
    for i, c in frame:
        ok &= tail[:, i] == ord(c)
    year = digits @ np.array([1000, 100, 10, 1])
    return np.where(ok, year, 0).astype(np.int32)


def release_years(dates: np.ndarray, titles: np.ndarray) -> np.ndarray:
    """The year of a release date like ``01-Jan-1995``, else of a title ending ``(1995)``, else 0."""
    dates = np.asarray(dates, dtype=str)
    titles = np.strings.rstrip(np.asarray(titles, dtype=str))
    from_date = _year_at_end(dates, "-", "")
    return np.where(from_date > 0, from_date, _year_at_end(titles, "(", ")")).astype(np.int32)


# --- '|'-separated tables (u.user, u.item) ---------------------------------------------------


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
    raw = _read_bytes(path)
    buf = np.frombuffer(raw, np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if raw and raw[-1:] != b"\n":
        raise _truncated(path, len(ends))
    n_good = len(ends)
    seps_before = np.searchsorted(np.flatnonzero(buf == ord("|")), ends)
    wrong = _first(np.diff(seps_before, prepend=0) != n_fields - 1)
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
    bad = _first(~ok)
    n_clean = table.n_good if bad is None else bad
    repeat = _first_repeat(ids[:n_clean])
    if repeat is not None:
        return repeat
    return (n_clean if n_clean < len(table.ends) else None), None


def read_users(path: Path) -> Users:
    """u.user: id | age | gender | occupation | zip code."""
    table = _read_pipe_table(path, 5)
    ids, ok = _decimal(table.columns[0])
    age, age_ok = _decimal(table.columns[1])
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
    ids, ok = _decimal(table.columns[0])
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


# --- ratings files: u.data, u1.base…, ratings.dat ('::'), ratings.csv (half stars) ------------

@dataclasses.dataclass
class _Block:
    """Some whole lines of a ratings file, parsed as far as the first malformed one."""

    first_line: int  # file line number of this block's first line
    data: bytes
    ends: np.ndarray  # offset of each line's newline in data
    columns: list[np.ndarray]  # user, movie, rating, timestamp of the lines [0, n_good); the rating float64
    n_good: int

    def line(self, row: int) -> str:
        start = int(self.ends[row - 1]) + 1 if row else 0
        return self.data[start : int(self.ends[row])].decode("latin-1")


def _parse_ratings_block(chunk: bytes, first_line: int, sep: bytes, half_stars: bool) -> _Block:
    """Parses whole ``user<sep>movie<sep>rating<sep>timestamp`` lines as far as the first malformed one.

    Ids and timestamps must be canonical integers (as in u.data); the rating an integer, or with
    ``half_stars`` also ``d.0`` / ``d.5``. The columns are int64 except the rating (float64).
    Range and id checks are the caller's.
    """
    n_fields, rating_field = 4, 2
    buf = np.frombuffer(chunk, np.uint8)
    newline = buf == ord("\n")
    ends = np.flatnonzero(newline)
    n_good = len(ends)

    def cut_at(position) -> None:  # the line holding byte ``position`` and those after it are not good
        nonlocal n_good
        n_good = min(n_good, int(np.searchsorted(ends, position)))

    in_sep = buf == sep[0]
    if len(sep) == 2:  # '::': runs of ':' must be exactly two long; a separator is where a run starts
        before = np.zeros_like(in_sep)
        before[1:] = in_sep[:-1]
        after = np.zeros_like(in_sep)
        after[:-1] = in_sep[1:]
        run_starts, run_ends = np.flatnonzero(in_sep & ~before), np.flatnonzero(in_sep & ~after)
        wrong = _first(run_ends - run_starts != 1)
        if wrong is not None:
            cut_at(run_starts[wrong])
        sep_at = np.zeros_like(in_sep)
        sep_at[run_starts] = True
    else:
        sep_at = in_sep
    dot = (buf == ord(".")) if half_stars else np.zeros_like(newline)
    other = (buf - np.uint8(ord("0")) > 9) & ~newline & ~in_sep & ~dot  # uint8 wraps below "0"
    if other.any():
        cut_at(np.argmax(other))
    field_end = newline | sep_at
    seps = np.flatnonzero(field_end)
    fields_per_line = np.diff(np.flatnonzero(newline[seps]), prepend=-1)
    wrong = _first(fields_per_line != n_fields)
    if wrong is not None:
        n_good = min(n_good, wrong)
    stops = seps[: n_good * n_fields]  # a field ends at its separator
    starts = np.zeros_like(stops)
    starts[1:] = stops[:-1] + np.where(newline[stops[:-1]], 1, len(sep))
    length = stops - starts
    is_rating = (np.arange(len(stops)) % n_fields) == rating_field
    first = buf[np.minimum(starts, len(buf) - 1)]
    bad = (length == 0) | (length > MAX_DIGITS) | ((first == ord("0")) & (length > 1) & ~is_rating)
    if half_stars:  # d, d.0 or d.5; a dot anywhere else is wrong
        second = buf[np.minimum(starts + 1, len(buf) - 1)]
        third = buf[np.minimum(starts + 2, len(buf) - 1)]
        half_form = (length == 3) & (second == ord(".")) & ((third == ord("0")) | (third == ord("5")))
        bad |= is_rating & (length != 1) & ~half_form
        dots = np.flatnonzero(dot)
        dots = dots[dots < (stops[-1] if len(stops) else 0)]
        field = np.searchsorted(stops, dots)
        wrong_dot = _first(~is_rating[field] | (dots != starts[field] + 1))
        if wrong_dot is not None:
            bad[field[wrong_dot]] = True
    else:
        bad |= is_rating & (length > 1) & (first == ord("0"))
    wrong = _first(bad.reshape(n_good, n_fields).any(axis=1))
    if wrong is not None:
        n_good = wrong
        starts, length = starts[: n_good * n_fields], length[: n_good * n_fields]
    # Every field of the good lines is now well formed: blank the separators (and each rating's
    # '.d') and numpy's C text reader converts the integers exactly.
    size = int(ends[n_good - 1]) + 1 if n_good else 0
    good = buf[:size].copy()
    good[field_end[:size] | in_sep[:size]] = ord(" ")
    half = np.zeros(n_good, bool)
    if half_stars and n_good:
        rating_starts, rating_length = starts[rating_field::n_fields], length[rating_field::n_fields]
        decimal = np.flatnonzero(rating_length == 3)
        half[decimal] = buf[rating_starts[decimal] + 2] == ord("5")
        good[rating_starts[decimal] + 1] = good[rating_starts[decimal] + 2] = ord(" ")
    values = np.fromstring(good.tobytes(), dtype=np.int64, sep=" ")
    if len(values) != n_good * n_fields:
        raise AssertionError(f"read {len(values)} integers from {n_good} checked lines")
    columns = list(values.reshape(n_good, n_fields).T)
    columns[rating_field] = columns[rating_field] + 0.5 * half
    return _Block(first_line, chunk, ends, columns, n_good)


_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_HALF_STAR = re.compile(r"[0-9](\.[05])?")


def _half_star_rating(path: Path, number: int, value: str) -> float:
    if not _NUMBER.fullmatch(value):
        raise DataError(path, number, f"rating {value!r} is not a number")
    rating = float(value)
    if not 0.5 <= rating <= 5:
        raise DataError(path, number, f"rating {value} is outside 0.5-5.0")
    if rating * 2 != int(rating * 2):
        raise DataError(path, number, f"rating {value} is not a multiple of 0.5")
    if not _HALF_STAR.fullmatch(value):
        raise DataError(path, number, f"rating {value!r} is not written as 4, 4.0 or 4.5")
    return rating


def _reject_ratings_line(path: Path, number: int, line: str, sep: str, half_stars: bool, movies: Movies,
                        users: Users | None, movies_file: str, users_file: str | None) -> None:
    _check_line(path, number, line)
    fields = _fields(path, number, line, sep, 4)
    user_id = str(_int(path, number, "user id", fields[0]))
    movie_id = str(_int(path, number, "movie id", fields[1]))
    if half_stars:
        _half_star_rating(path, number, fields[2])
    else:
        rating = _int(path, number, "rating", fields[2])
        if not 1 <= rating <= 5:
            raise DataError(path, number, f"rating {rating} is outside 1-5")
    _int(path, number, "timestamp", fields[3])
    if users is not None and users.index(user_id) < 0:
        raise DataError(path, number, f"rating for unknown user {user_id} (not in {users_file})")
    if movies.index(movie_id) < 0:
        raise DataError(path, number, f"rating for unknown movie {movie_id} (not in {movies_file})")
    raise _unexplained(path, number)


def read_ratings_file(path: Path, sep: bytes, half_stars: bool, header: bytes | None, movies: Movies,
                  users: Users | None, movies_file: str, users_file: str | None):
    """(user indices, movie indices, ratings, timestamps, user ids) of every line, or the first problem.

    With ``users`` the indices are theirs (an unknown user is an error); without, the users are the
    distinct ids that rated, in id order, returned as the last item.
    """
    low = 0.5 if half_stars else 1.0
    parts: list[tuple[np.ndarray, ...]] = []
    failed: tuple[int, str] | None = None
    first_line = 2 if header is not None else 1
    for block in read_blocks(path, lambda chunk, line: _parse_ratings_block(chunk, line, sep, half_stars), header):
        user_id, movie_id, rating, timestamp = block.columns
        user = user_id if users is None else users.index(user_id)
        movie = movies.index(movie_id)
        bad = _first((rating < low) | (rating > 5) | (user < 0) | (movie < 0))
        n = block.n_good if bad is None else bad
        parts.append((user[:n].copy(), movie[:n], rating[:n].astype(np.float32), timestamp[:n].copy()))
        if n < len(block.ends):
            failed = block.first_line + n, block.line(n)
            break
    if not parts:
        parts.append((np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
    user, movie, rating, timestamp = (np.concatenate(column) for column in zip(*parts))
    del parts
    if users is None:
        user_ids, user = np.unique(user, return_inverse=True)
    else:
        user_ids = users.ids
    repeat = _first_repeat(_pair_key(user, movie, len(movies)))
    if repeat is not None:  # every row read comes before the failed line
        row, earlier = repeat
        raise DataError(
            path, row + first_line,
            f"user {user_ids[user[row]]} rated movie {movies.ids[movie[row]]} again (first at line {earlier + first_line})",
        )
    if failed is not None:
        _reject_ratings_line(path, *failed, sep.decode(), half_stars, movies, users, movies_file, users_file)
    if not len(user):
        raise DataError(path, None, "no ratings")
    return user.astype(np.int32), movie, rating, timestamp, user_ids


def _read_tab_ratings(path: Path) -> Iterator[_Block]:
    """Yields u.data-style lines (user, movie, rating, timestamp; tab-separated integers), a block at a time."""
    return read_blocks(path, lambda chunk, first_line: _parse_ratings_block(chunk, first_line, b"\t", False))


def read_blocks(path: Path, parse, header: bytes | None = None) -> Iterator[_Block]:
    """Yields ``parse(data, first_line)`` of the file's lines, a block of whole lines at a time.

    A file that does not end with a newline is refused before any line is read. With a
    ``header``, line 1 must be exactly it and the blocks start at line 2.
    """
    chunk_bytes = CHUNK_BYTES
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    with f:
        size = f.seek(0, 2)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # reported before any line, as the line reader did
                f.seek(0)
                raise _truncated(path, sum(block.count(b"\n") for block in iter(lambda: f.read(chunk_bytes), b"")))
        f.seek(0)
        first_line = 1
        if header is not None:
            found = f.readline()
            if found != header + b"\n":
                shown = found.rstrip(b"\n").decode("latin-1")
                raise DataError(path, 1, f"expected the header {header.decode()!r}, found {shown!r}")
            first_line = 2
        carry = b""
        while block := f.read(chunk_bytes):
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this block: keep it for the next
                carry += block
                continue
            parsed = parse(carry + block[:cut], first_line)
            carry = block[cut:]
            yield parsed
            first_line += len(parsed.ends)
        if carry:  # the file grew a partial line while being read
            raise _truncated(path, first_line - 1)


def read_ratings(path: Path, movies: Movies, users: Users) -> Ratings:
    """u.data: user id, movie id, rating, timestamp (tab-separated), ids turned into indices."""
    user, movie, rating, timestamp, _ = read_ratings_file(path, b"\t", False, None, movies, users, MOVIES_FILE,
                                                          USERS_FILE)
    return Ratings(user, movie, rating, timestamp)


def _find_ratings(movielens: MovieLens, user_id: np.ndarray, movie_id: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Row of each (user id, movie id, timestamp) rating in ``movielens.ratings``, -1 if none."""
    user, movie = movielens.users.index(user_id), movielens.movies.index(movie_id)
    keys, order = movielens._pair_keys
    probe = _pair_key(user, movie, len(movielens.movies))
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
    for block in _read_tab_ratings(path):
        user_id, movie_id, rating, timestamp = block.columns
        row = _find_ratings(movielens, user_id, movie_id, timestamp)
        bad = _first((row < 0) | (movielens.ratings.rating[np.maximum(row, 0)] != rating))
        n = block.n_good if bad is None else bad
        parts.append(row[:n])
        if n < len(block.ends):
            failed = block.first_line + n, block.line(n)
            break
    rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    repeat = _first_repeat(rows)
    if repeat is not None:
        raise DataError(path, repeat[0] + 1, f"repeats line {repeat[1] + 1}")
    if failed is not None:
        _reject_pair_line(path, *failed, movielens)
    return rows


# --- checksums and the whole dataset ---------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(CHUNK_BYTES):
                digest.update(block)
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    return digest.hexdigest()


def verify_checksums(data_dir: Path, names=REQUIRED_FILES) -> dict[str, str]:
    """Hashes the files we read; checks them against SHA256SUMS when the directory has one."""
    data_dir = Path(data_dir)
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
    """Reads a MovieLens folder of any layout (100K, 1M or the CSV sets), detected from its files."""
    from train import layouts  # it builds on this module's readers

    return layouts.load(data_dir)


def load_100k(data_dir: Path | str) -> MovieLens:
    data_dir = Path(data_dir)
    digests = verify_checksums(data_dir)
    movies = read_movies(data_dir / MOVIES_FILE)
    users = read_users(data_dir / USERS_FILE)
    ratings = read_ratings(data_dir / RATINGS_FILE, movies, users)
    return MovieLens(ratings, movies, users, data_dir, digests)
