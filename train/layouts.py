"""Every MovieLens file layout, detected from the files present, read into the same ``MovieLens``.

- ``ml-100k``: ``u.data`` (tab), ``u.item`` and ``u.user`` (``|``, latin-1); read by ``train/ml100k.py``.
- ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, latin-1; genres
  ``A|B``; users have gender, an age group, an occupation code 0-20 and a zip code).
- ``csv`` (ML-20M, 25M, 32M, latest, latest-small): ``ratings.csv`` (``userId,movieId,rating,timestamp``)
  and ``movies.csv`` (``movieId,title,genres``), each with its header, UTF-8, titles quoted when they
  hold a comma, half-star ratings 0.5-5.0. RFC 4180 files (as Python's ``csv`` module writes them:
  CRLF line ends, any movies.csv field quoted) read the same as GroupLens' LF files. There is no user file: ``Users`` holds the ids that rated,
  in id order, with the "unknown" demographics (age 0, gender/occupation/zip "").

Whatever the layout, ids become integer rows once and every table has the same columns. Genres are
the 100K's 19 fixed flags; the other layouts name genres, mapped onto that vocabulary (``Children``
is ``Children's``, ``(no genres listed)`` is ``unknown``) plus ``IMAX`` for the CSV sets, a fixed
order, so ``Movies.genres`` stays multi-hot. The release year comes from the title's trailing
``(1995)`` where there is no date field.

The rules are ``train/line_rules.py``'s: strict (every malformed line is a ``DataError`` naming
``file:line``) and vectorised for the ratings (parsed a block of whole lines at a time with numpy,
no Python work per rating; the first bad line goes to a line-by-line validator that names the
problem). The movie and user files (at most ~90k lines) are read line by line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from train.checksums import verify_checksums
from train.line_rules import check_line, check_no_nul, parse_int, read_bytes, split_fields, truncated
from train.ml100k import load_100k
from train.ratings_file import read_ratings_file
from train.tables import AGE_BUCKETS, GENRES, REQUIRED_FILES, DataError, MovieLens, Movies, Ratings, Users
from train.vectorised import release_years

LAYOUT_100K, LAYOUT_1M, LAYOUT_CSV = "ml-100k", "ml-1m", "csv"


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    files: tuple[str, ...]  # the files read, the ratings file first
    what: str  # which MovieLens sets come in it


LAYOUTS = (
    Layout(LAYOUT_100K, REQUIRED_FILES, "MovieLens 100K"),
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
        return dataclasses.replace(load_100k(data_dir), layout=LAYOUT_100K)
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


def _text_lines(path: Path, encoding: str, crlf: bool = False) -> list[str]:
    """The file's lines without their line ends: LF, or with ``crlf`` also CRLF."""
    raw = read_bytes(path)
    if raw and not raw.endswith(b"\n"):
        raise truncated(path, raw.count(b"\n"))
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(path, raw.count(b"\n", 0, e.start) + 1, f"not {encoding}: byte 0x{raw[e.start]:02x}") from None
    lines = text.split("\n")[:-1]
    return [line.removesuffix("\r") for line in lines] if crlf else lines


def _check_text_line(path: Path, number: int, line: str, crlf: bool = False) -> None:
    check_line(path, number, line, crlf)
    check_no_nul(path, number, line)


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
        user, gender, age, occupation, zip_code = split_fields(path, number, line, "::", 5)
        user_id = parse_int(path, number, "user id", user)
        if gender not in ("M", "F"):
            raise DataError(path, number, f"gender {gender!r} is not M or F")
        age_group = parse_int(path, number, "age", age)
        if age_group not in AGE_BUCKETS:
            raise DataError(path, number, f"age {age_group} is not an ML-1M age group ({', '.join(map(str, AGE_BUCKETS))})")
        code = parse_int(path, number, "occupation", occupation)
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
        movie, title, genres = split_fields(path, number, line, "::", 3)
        _check_new_id(path, number, seen, parse_int(path, number, "movie id", movie), "movie")
        ids.append(movie)
        titles.append(title)
        genre_columns.append(_genre_flags(path, number, genres.split("|"), GENRES_1M))
    return _movies(ids, titles, genre_columns, GENRES_1M)


# A quoted field doubles its quotes ("" inside ""); an unquoted one holds neither ',' nor '"'.
# GroupLens quotes a title that holds a comma; csv.QUOTE_ALL quotes every field.
_CSV_FIELD = r'"(?:[^"]|"")*"|[^,"]*'
_MOVIE_CSV_LINE = re.compile(rf"(?P<id>{_CSV_FIELD}),(?P<title>{_CSV_FIELD}),(?P<genres>{_CSV_FIELD})")


def _unquoted(field: str) -> str:
    return field[1:-1].replace('""', '"') if field.startswith('"') else field


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
    lines = _text_lines(path, "utf-8", crlf=True)
    header = _MOVIE_CSV_LINE.fullmatch(lines[0]) if lines else None
    if header is None or ",".join(map(_unquoted, header.groups())) != MOVIES_CSV_HEADER:
        raise DataError(path, 1, f"expected the header {MOVIES_CSV_HEADER!r}, found {lines[0] if lines else ''!r}")
    seen: dict[int, int] = {}
    ids, titles, genre_columns = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        _check_text_line(path, number, line, crlf=True)
        match = _MOVIE_CSV_LINE.fullmatch(line)
        if match is None:
            _reject_movie_csv_line(path, number, line)
        movie, title, genres = map(_unquoted, match.groups())
        _check_new_id(path, number, seen, parse_int(path, number, "movie id", movie), "movie")
        ids.append(movie)
        titles.append(title)
        genre_columns.append(_genre_flags(path, number, genres.split("|"), GENRES_CSV))
    return _movies(ids, titles, genre_columns, GENRES_CSV)


# --- the ratings files (parsed by data.read_ratings_file, which reads u.data too) -------------


def read_ratings_1m(path: Path, movies: Movies, users: Users) -> Ratings:
    """ratings.dat: UserID::MovieID::Rating::Timestamp, ratings 1-5."""
    user, movie, rating, timestamp, _ = read_ratings_file(path, b"::", False, None, movies, users, "movies.dat", "users.dat")
    return Ratings(user, movie, rating, timestamp)


def read_ratings_csv(path: Path, movies: Movies) -> tuple[Ratings, Users]:
    """ratings.csv: a header, then userId,movieId,rating,timestamp with half-star ratings 0.5-5.0.

    There is no user file: the users are the ids that rated, in id order, without demographics.
    """
    user, movie, rating, timestamp, ids = read_ratings_file(path, b",", True, RATINGS_CSV_HEADER, movies, None,
                                                            "movies.csv", None, crlf=True)
    n = len(ids)
    users = Users(
        ids=ids.astype(str), age=np.zeros(n, np.int32), gender=np.full(n, "", dtype=str),
        occupation=np.full(n, "", dtype=str), zip_code=np.full(n, "", dtype=str),
    )
    return Ratings(user, movie, rating, timestamp), users
