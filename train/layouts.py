"""Every MovieLens file layout, detected from the files present, read into the same ``MovieLens``.

- ``ml-100k``: ``u.data`` (tab), ``u.item`` and ``u.user`` (``|``, latin-1); read by ``train/data.py``.
- ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, latin-1; genres
  ``A|B``; users have gender, an age group, an occupation code 0-20 and a zip code).
- ``csv`` (ML-20M, 25M, 32M, latest, latest-small): ``ratings.csv`` (``userId,movieId,rating,timestamp``)
  and ``movies.csv`` (``movieId,title,genres``), each with its header, UTF-8, titles quoted when they
  hold a comma, half-star ratings 0.5-5.0. There is no user file: ``Users`` holds the ids that rated,
  in id order, with the "unknown" demographics (age 0, gender/occupation/zip "").

Whatever the layout, ids become integer rows once and every table has the same columns. Genres are
the 100K's 19 fixed flags; the other layouts name genres, mapped onto that vocabulary (``Children``
is ``Children's``, ``(no genres listed)`` is ``unknown``) plus ``IMAX`` for the CSV sets, a fixed
order, so ``Movies.genres`` stays multi-hot. The release year comes from the title's trailing
``(1995)`` where there is no date field.

The rules are ``train/data.py``'s: strict (every malformed line is a ``DataError`` naming
``file:line``) and vectorised for the ratings (parsed a block of whole lines at a time with numpy,
no Python work per rating; the first bad line goes to a line-by-line validator that names the
problem). The movie and user files (at most ~90k lines) are read line by line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from train import data
from train.data import (
    AGE_BUCKETS, GENRES, DataError, Movies, MovieLens, Ratings, Users, _Block, _check_line, _check_no_nul, _fields,
    _first, _first_repeat, _int, _pair_key, _read_bytes, _truncated, _unexplained, read_blocks, release_years,
    verify_checksums,
)

LAYOUT_100K, LAYOUT_1M, LAYOUT_CSV = "ml-100k", "ml-1m", "csv"


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    files: tuple[str, ...]  # the files read, the ratings file first
    what: str  # which MovieLens sets come in it


LAYOUTS = (
    Layout(LAYOUT_100K, data.REQUIRED_FILES, "MovieLens 100K"),
    Layout(LAYOUT_1M, ("ratings.dat", "movies.dat", "users.dat"), "MovieLens 1M"),
    Layout(LAYOUT_CSV, ("ratings.csv", "movies.csv"), "MovieLens 20M/25M/32M/latest/latest-small"),
)
BY_NAME = {layout.name: layout for layout in LAYOUTS}

# ML-1M's occupation codes (its README).
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
)
GENRES_1M = GENRES  # 1M names 18 of the 100K's genres
GENRES_CSV = GENRES + ("IMAX",)
GENRE_ALIASES = {"Children": "Children's", "(no genres listed)": "unknown"}
RATINGS_CSV_HEADER = b"userId,movieId,rating,timestamp"
MOVIES_CSV_HEADER = "movieId,title,genres"


def describe() -> str:
    return "; ".join(f"{', '.join(layout.files)} ({layout.what})" for layout in LAYOUTS)


def find(directory: Path | str) -> Layout | None:
    """The layout whose files are all in ``directory`` (the first, if several are), or None."""
    directory = Path(directory)
    for layout in LAYOUTS:
        if all((directory / name).is_file() for name in layout.files):
            return layout
    return None


def detect(directory: Path | str) -> Layout:
    """The layout of ``directory``, from its ratings file; a DataError if it has none or several."""
    directory = Path(directory)
    present = [layout for layout in LAYOUTS if (directory / layout.files[0]).is_file()]
    if not present:
        state = "" if directory.is_dir() else " (no such directory)" if not directory.exists() else " (not a directory)"
        raise DataError(directory, None, f"no MovieLens ratings file{state}: expected {describe()}")
    if len(present) > 1:
        raise DataError(directory, None, f"holds more than one layout ({', '.join(l.files[0] for l in present)}): "
                                         "keep one dataset per folder")
    return present[0]


def load(data_dir: Path | str) -> MovieLens:
    data_dir = Path(data_dir)
    layout = detect(data_dir)
    if layout.name == LAYOUT_100K:
        return dataclasses.replace(data.load_100k(data_dir), layout=LAYOUT_100K)
    digests = verify_checksums(data_dir, layout.files)
    if layout.name == LAYOUT_1M:
        ratings_file, movies_file, users_file = (data_dir / name for name in layout.files)
        movies = read_movies_1m(movies_file)
        users = read_users_1m(users_file)
        ratings = read_ratings_1m(ratings_file, movies, users)
    else:
        ratings_file, movies_file = (data_dir / name for name in layout.files)
        movies = read_movies_csv(movies_file)
        ratings, users = read_ratings_csv(ratings_file, movies)
    return MovieLens(ratings, movies, users, data_dir, digests, layout.name)


# --- line-by-line tables (users.dat, movies.dat, movies.csv) ---------------------------------


def _text_lines(path: Path, encoding: str) -> list[str]:
    raw = _read_bytes(path)
    if raw and not raw.endswith(b"\n"):
        raise _truncated(path, raw.count(b"\n"))
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(path, raw.count(b"\n", 0, e.start) + 1, f"not {encoding}: byte 0x{raw[e.start]:02x}") from None
    return text.split("\n")[:-1]


def _check_text_line(path: Path, number: int, line: str) -> None:
    _check_line(path, number, line)
    _check_no_nul(path, number, line)


def _genre_flags(path: Path, number: int, names: list[str], vocabulary: tuple[str, ...]) -> list[int]:
    columns = []
    for name in names:
        column = GENRE_ALIASES.get(name, name)
        if column not in vocabulary:
            raise DataError(path, number, f"unknown genre {name!r} (known: {', '.join(vocabulary)})")
        columns.append(vocabulary.index(column))
    return columns


def _movies(ids: list[str], titles: list[str], genre_columns: list[list[int]], vocabulary: tuple[str, ...]) -> Movies:
    genres = np.zeros((len(ids), len(vocabulary)), np.uint8)
    rows = np.repeat(np.arange(len(ids)), [len(c) for c in genre_columns])
    genres[rows, np.asarray([g for c in genre_columns for g in c], np.int64)] = 1
    titles_array = np.asarray(titles, dtype=str)
    return Movies(
        ids=np.asarray(ids, dtype=str), titles=titles_array,
        year=release_years(np.full(len(ids), "", dtype=str), titles_array), genres=genres, genre_names=vocabulary,
    )


def _check_new_id(path: Path, number: int, seen: dict[int, int], value: int, what: str) -> None:
    if value in seen:
        raise DataError(path, number, f"duplicate {what} id {value}")
    seen[value] = number


def read_users_1m(path: Path) -> Users:
    """users.dat: UserID::Gender::Age::Occupation::Zip-code (latin-1); age is a group, occupation a code."""
    seen: dict[int, int] = {}
    ids, ages, genders, occupations, zips = [], [], [], [], []
    for number, line in enumerate(_text_lines(path, "latin-1"), start=1):
        _check_text_line(path, number, line)
        user, gender, age, occupation, zip_code = _fields(path, number, line, "::", 5)
        user_id = _int(path, number, "user id", user)
        if gender not in ("M", "F"):
            raise DataError(path, number, f"gender {gender!r} is not M or F")
        age_group = _int(path, number, "age", age)
        if age_group not in AGE_BUCKETS:
            raise DataError(path, number, f"age {age_group} is not an ML-1M age group ({', '.join(map(str, AGE_BUCKETS))})")
        code = _int(path, number, "occupation", occupation)
        if code >= len(OCCUPATIONS_1M):
            raise DataError(path, number, f"occupation {code} is outside 0-{len(OCCUPATIONS_1M) - 1}")
        _check_new_id(path, number, seen, user_id, "user")
        ids.append(user)
        ages.append(age_group)
        genders.append(gender)
        occupations.append(OCCUPATIONS_1M[code])
        zips.append(zip_code)
    return Users(
        ids=np.asarray(ids, dtype=str), age=np.asarray(ages, np.int32), gender=np.asarray(genders, dtype=str),
        occupation=np.asarray(occupations, dtype=str), zip_code=np.asarray(zips, dtype=str),
    )


def read_movies_1m(path: Path) -> Movies:
    """movies.dat: MovieID::Title::Genres (latin-1); a title may hold ':' but not '::'; genres 'A|B'."""
    seen: dict[int, int] = {}
    ids, titles, genre_columns = [], [], []
    for number, line in enumerate(_text_lines(path, "latin-1"), start=1):
        _check_text_line(path, number, line)
        movie, title, genres = _fields(path, number, line, "::", 3)
        _check_new_id(path, number, seen, _int(path, number, "movie id", movie), "movie")
        ids.append(movie)
        titles.append(title)
        genre_columns.append(_genre_flags(path, number, genres.split("|"), GENRES_1M))
    return _movies(ids, titles, genre_columns, GENRES_1M)


# A quoted title doubles its quotes ("" inside ""); an unquoted one holds neither ',' nor '"'.
_MOVIE_CSV_LINE = re.compile(r'(?P<id>[^,"]*),(?P<title>"(?:[^"]|"")*"|[^,"]*),(?P<genres>[^,"]*)')


def _reject_movie_csv_line(path: Path, number: int, line: str) -> None:
    import csv

    try:
        fields = next(csv.reader([line], strict=True))
    except csv.Error as e:
        raise DataError(path, number, f"malformed CSV quoting ({e})") from None
    if len(fields) != 3:
        raise DataError(path, number, f"expected 3 comma-separated fields (movieId,title,genres), found {len(fields)}")
    raise DataError(path, number, "malformed CSV line: a field holding ',' or '\"' must be quoted, with '\"' doubled")


def read_movies_csv(path: Path) -> Movies:
    """movies.csv: a header, then movieId,title,genres (UTF-8; a title holding a comma is quoted)."""
    lines = _text_lines(path, "utf-8")
    if not lines or lines[0] != MOVIES_CSV_HEADER:
        raise DataError(path, 1, f"expected the header {MOVIES_CSV_HEADER!r}, found {lines[0] if lines else ''!r}")
    seen: dict[int, int] = {}
    ids, titles, genre_columns = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        _check_text_line(path, number, line)
        match = _MOVIE_CSV_LINE.fullmatch(line)
        if match is None:
            _reject_movie_csv_line(path, number, line)
        movie, title = match["id"], match["title"]
        _check_new_id(path, number, seen, _int(path, number, "movie id", movie), "movie")
        if title.startswith('"'):
            title = title[1:-1].replace('""', '"')
        ids.append(movie)
        titles.append(title)
        genre_columns.append(_genre_flags(path, number, match["genres"].split("|"), GENRES_CSV))
    return _movies(ids, titles, genre_columns, GENRES_CSV)


# --- the ratings files, vectorised -----------------------------------------------------------


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
    bad = (length == 0) | (length > data.MAX_DIGITS) | ((first == ord("0")) & (length > 1) & ~is_rating)
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


def _reject_rating_line(path: Path, number: int, line: str, sep: str, half_stars: bool, movies: Movies,
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


def _read_ratings(path: Path, sep: bytes, half_stars: bool, header: bytes | None, movies: Movies,
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
        _reject_rating_line(path, *failed, sep.decode(), half_stars, movies, users, movies_file, users_file)
    if not len(user):
        raise DataError(path, None, "no ratings")
    return user.astype(np.int32), movie, rating, timestamp, user_ids


def read_ratings_1m(path: Path, movies: Movies, users: Users) -> Ratings:
    """ratings.dat: UserID::MovieID::Rating::Timestamp, ratings 1-5."""
    user, movie, rating, timestamp, _ = _read_ratings(path, b"::", False, None, movies, users, "movies.dat", "users.dat")
    return Ratings(user, movie, rating, timestamp)


def read_ratings_csv(path: Path, movies: Movies) -> tuple[Ratings, Users]:
    """ratings.csv: a header, then userId,movieId,rating,timestamp with half-star ratings 0.5-5.0.

    There is no user file: the users are the ids that rated, in id order, without demographics.
    """
    user, movie, rating, timestamp, ids = _read_ratings(path, b",", True, RATINGS_CSV_HEADER, movies, None,
                                                        "movies.csv", None)
    n = len(ids)
    users = Users(
        ids=ids.astype(str), age=np.zeros(n, np.int32), gender=np.full(n, "", dtype=str),
        occupation=np.full(n, "", dtype=str), zip_code=np.full(n, "", dtype=str),
    )
    return Ratings(user, movie, rating, timestamp), users
