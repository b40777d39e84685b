"""The ML-1M and CSV (20M/25M/32M/latest-small) layouts: parsing, every bad-input error, training on them."""

import csv
import dataclasses
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from testing.movielens_fixture import (
    COLON_TITLE, COMMA_TITLE, IMAX_MOVIE, LATIN1_TITLE, N_MOVIES, N_RATINGS, N_USERS, NO_GENRES_MOVIE, QUOTE_TITLE,
    write_1m_fixture, write_csv_fixture,
)
from train import data, layouts, ratings_file


@pytest.fixture(scope="module")
def ml1m_dir(tmp_path_factory) -> Path:
    return write_1m_fixture(tmp_path_factory.mktemp("ml-1m"))


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    return write_csv_fixture(tmp_path_factory.mktemp("ml-csv"))


def _lines(path: Path, encoding: str = "latin-1") -> list[str]:
    return path.read_bytes().decode(encoding).split("\n")[:-1]


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ml"
    shutil.copytree(source, target)
    return target


def _replace_line(path: Path, number: int, text: str | bytes, encoding: str = "latin-1") -> None:
    lines = path.read_bytes().split(b"\n")[:-1]
    lines[number - 1] = text if isinstance(text, bytes) else text.encode(encoding)
    path.write_bytes(b"\n".join(lines) + b"\n")


# --- each layout parses into the same tables ------------------------------------------------


def test_detects_each_layout(fixture_dir, ml1m_dir, csv_dir):
    assert [data.load(d).layout for d in (fixture_dir, ml1m_dir, csv_dir)] == ["ml-100k", "ml-1m", "csv"]
    assert [layouts.find(d).name for d in (fixture_dir, ml1m_dir, csv_dir)] == ["ml-100k", "ml-1m", "csv"]


def test_1m_layout(ml1m_dir, fixture_dir):
    ml = data.load(ml1m_dir)
    base = data.load(fixture_dir)
    assert (len(ml), len(ml.users), len(ml.movies)) == (N_RATINGS, N_USERS, N_MOVIES)
    r = ml.ratings
    assert r.user.dtype == np.int32 and r.movie.dtype == np.int32 and r.rating.dtype == np.float32
    assert r.timestamp.dtype == np.int64 and ml.users.age.dtype == np.int32
    # Row i is line i + 1, and the indices lead back to its ids.
    for i, line in enumerate(_lines(ml1m_dir / "ratings.dat")):
        user, movie, rating, timestamp = line.split("::")
        assert ml.users.ids[r.user[i]] == user and ml.movies.ids[r.movie[i]] == movie
        assert r.rating[i] == int(rating) and r.timestamp[i] == int(timestamp)
    for column in ("user", "movie", "rating", "timestamp"):  # the same ratings as the 100K fixture
        assert np.array_equal(getattr(r, column), getattr(base.ratings, column))
    movies = ml.movies
    assert movies.titles[movies.index("3")] == COLON_TITLE and movies.year[movies.index("3")] == 1977
    assert movies.titles[movies.index("7")] == LATIN1_TITLE  # latin-1 bytes
    assert movies.genre_names == data.GENRES and movies.genres.shape == (N_MOVIES, data.NUM_GENRES)
    assert movies.genres[movies.index("1")].tolist() == [int(g == "Action") for g in data.GENRES]
    assert set(ml.users.age) <= set(data.AGE_BUCKETS) and set(ml.users.gender) == {"M", "F"}
    assert ml.users.occupation[0] == "other" and ml.users.occupation[1] == "executive/managerial"  # codes 0 and 7
    assert ml.users.zip_code[0] == "10001"
    assert set(ml.sha256) == {"ratings.dat", "movies.dat", "users.dat"}


def test_csv_layout(csv_dir, fixture_dir):
    ml = data.load(csv_dir)
    base = data.load(fixture_dir)
    assert (len(ml), len(ml.users), len(ml.movies)) == (N_RATINGS, N_USERS, N_MOVIES)
    r = ml.ratings
    for i, line in enumerate(_lines(csv_dir / "ratings.csv", "utf-8")[1:]):
        user, movie, rating, timestamp = line.split(",")
        assert ml.users.ids[r.user[i]] == user and ml.movies.ids[r.movie[i]] == movie
        assert r.rating[i] == float(rating) and r.timestamp[i] == int(timestamp)
    assert set(np.unique(r.rating)) == {x / 2 for x in range(1, 11)}  # half stars 0.5 … 5.0
    assert (np.sort(r.timestamp) == np.sort(base.ratings.timestamp)).all()
    movies = ml.movies
    assert movies.titles[movies.index("5")] == COMMA_TITLE and movies.year[movies.index("5")] == 1994
    assert movies.titles[movies.index("11")] == QUOTE_TITLE
    assert movies.titles[movies.index("3")] == COLON_TITLE
    assert movies.titles[movies.index("7")] == LATIN1_TITLE  # UTF-8 here
    assert movies.genre_names == data.GENRES + ("IMAX",) and movies.genres.shape == (N_MOVIES, 20)
    imax = movies.genres[movies.index(IMAX_MOVIE)]
    assert imax[-1] == 1 and imax.sum() == 2
    assert movies.genres[movies.index(NO_GENRES_MOVIE)].tolist() == [1] + [0] * 19  # "(no genres listed)"
    assert movies.genres[movies.index("4")][data.GENRES.index("Children's")] == 1  # spelt "Children"
    # No user file: the ids that rated, in id order, with unknown demographics.
    assert list(ml.users.ids) == [str(u) for u in range(1, N_USERS + 1)]
    assert (ml.users.age == 0).all() and set(ml.users.gender) == {""} and set(ml.users.occupation) == {""}
    assert set(ml.sha256) == {"ratings.csv", "movies.csv"}


def test_small_blocks_read_the_same_ratings(ml1m_dir, csv_dir, monkeypatch):
    whole = [data.load(d).ratings for d in (ml1m_dir, csv_dir)]
    monkeypatch.setattr(ratings_file, "CHUNK_BYTES", 13)  # shorter than a line: blocks are joined
    for before, directory in zip(whole, (ml1m_dir, csv_dir)):
        after = data.load(directory).ratings
        for column in ("user", "movie", "rating", "timestamp"):
            assert np.array_equal(getattr(before, column), getattr(after, column))


def test_no_layout_or_two_layouts(tmp_path, fixture_dir, csv_dir):
    with pytest.raises(data.DataError, match=r"no MovieLens ratings file: expected u\.data, u\.item, u\.user .*ratings\.dat"):
        data.load(tmp_path)
    with pytest.raises(data.DataError, match="no such directory"):
        data.load(tmp_path / "absent")
    both = _copy(fixture_dir, tmp_path)
    shutil.copy(csv_dir / "ratings.csv", both)
    with pytest.raises(data.DataError, match=r"more than one layout \(u\.data, ratings\.csv\)"):
        data.load(both)
    assert layouts.find(tmp_path) is None


@pytest.mark.parametrize("layout, missing", [("1m", "users.dat"), ("1m", "movies.dat"), ("csv", "movies.csv")])
def test_missing_file(ml1m_dir, csv_dir, tmp_path, layout, missing):
    directory = _copy(ml1m_dir if layout == "1m" else csv_dir, tmp_path)
    (directory / missing).unlink()
    with pytest.raises(data.DataError, match=rf"{re.escape(missing)}: file not found"):
        data.load(directory)


# --- every malformed line names file and line -----------------------------------------------

BAD_1M = [
    ("ratings.dat", 3, "1::2::3", "expected 4 '::'-separated fields, found 3"),
    ("ratings.dat", 4, "1::2::6::978300760", "rating 6 is outside 1-5"),
    ("ratings.dat", 5, "1::2::4.5::978300760", "rating '4.5' is not an integer"),
    ("ratings.dat", 6, "1:2::3::978300760", "expected 4 '::'-separated fields, found 3"),
    ("ratings.dat", 7, "999::2::3::978300760", "rating for unknown user 999 (not in users.dat)"),
    ("ratings.dat", 8, "1::999::3::978300760", "rating for unknown movie 999 (not in movies.dat)"),
    ("ratings.dat", 9, "", "empty line"),
    ("ratings.dat", 10, "1::2::3::978300760\r", "carriage return"),
    ("ratings.dat", 11, "1:::2::3::978300760", "movie id ':2' is not an integer"),
    ("ratings.dat", 12, "01::2::3::978300760", "user id '01' is not an integer"),
    ("users.dat", 2, "2::X::25::3::55455", "gender 'X' is not M or F"),
    ("users.dat", 3, "3::M::30::3::55455", "age 30 is not an ML-1M age group"),
    ("users.dat", 4, "4::M::25::21::55455", "occupation 21 is outside 0-20"),
    ("users.dat", 5, "5::M::25::3", "expected 5 '::'-separated fields, found 4"),
    ("users.dat", 6, "3::M::25::3::55455", "duplicate user id 3"),
    ("movies.dat", 2, "2::Broken (1995)", "expected 3 '::'-separated fields, found 2"),
    ("movies.dat", 3, "3::Title: Part 2 (1995)::Action|Sci-Fy", "unknown genre 'Sci-Fy'"),
    ("movies.dat", 4, "x::Title (1995)::Action", "movie id 'x' is not an integer"),
    ("movies.dat", 5, "1::Again (1995)::Action", "duplicate movie id 1"),
    ("movies.dat", 6, "6::Nul\x00 (1995)::Action", "NUL character"),
]

BAD_CSV = [
    ("ratings.csv", 1, "userId,movieId,rating", "expected the header 'userId,movieId,rating,timestamp', found 'userId,movieId,rating'"),
    ("ratings.csv", 3, "1,2,4.3,1147880044", "rating 4.3 is not a multiple of 0.5"),
    ("ratings.csv", 4, "1,2,6.0,1147880044", "rating 6.0 is outside 0.5-5.0"),
    ("ratings.csv", 5, "1,2,0.0,1147880044", "rating 0.0 is outside 0.5-5.0"),
    ("ratings.csv", 6, "1,2,,1147880044", "rating '' is not a number"),
    ("ratings.csv", 7, "1,2,4.5", "expected 4 ','-separated fields, found 3"),
    ("ratings.csv", 8, "1,999,4.0,1147880044", "rating for unknown movie 999 (not in movies.csv)"),
    ("ratings.csv", 9, "1,2,four,1147880044", "rating 'four' is not a number"),
    ("ratings.csv", 10, "1,2,4.50,1147880044", "rating '4.50' is not written as 4, 4.0 or 4.5"),
    ("ratings.csv", 11, "1,2,4.5,1147880044.0", "timestamp '1147880044.0' is not an integer"),
    ("ratings.csv", 12, "1,2,5.5,1147880044", "rating 5.5 is outside 0.5-5.0"),
    ("ratings.csv", 13, '"1",2,4.5,1147880044', "user id '\"1\"' is not an integer"),
    ("ratings.csv", 14, "1,2,4.5\r,1147880044", "carriage return inside a line"),  # CRLF at the end is RFC 4180's
    ("movies.csv", 1, "movieId,title", "expected the header 'movieId,title,genres', found 'movieId,title'"),
    ("movies.csv", 3, '3,"Unclosed, title (1995),Drama', "malformed CSV quoting"),
    ("movies.csv", 4, "4,Comma, unquoted (1995),Drama", "expected 3 comma-separated fields (movieId,title,genres), found 4"),
    ("movies.csv", 5, "5,Title (1995),Drama|Sci-Fy", "unknown genre 'Sci-Fy'"),
    ("movies.csv", 6, "x6,Title (1995),Drama", "movie id 'x6' is not an integer"),
    ("movies.csv", 7, '7,Bad "quote" (1995),Drama', "malformed CSV line"),
    ("movies.csv", 8, b"8,Am\xe9lie (2001),Drama", "not utf-8: byte 0xe9"),
    ("movies.csv", 9, "2,Again (1995),Drama", "duplicate movie id 2"),
    ("movies.csv", 10, "", "empty line"),
    ("movies.csv", 11, "11,Title\r (1995),Drama", "carriage return inside a line"),
]


@pytest.mark.parametrize("file, line, text, message", BAD_1M + BAD_CSV)
def test_bad_line_names_file_and_line(ml1m_dir, csv_dir, tmp_path, file, line, text, message):
    directory = _copy(ml1m_dir if file.endswith(".dat") else csv_dir, tmp_path)
    _replace_line(directory / file, line, text, "latin-1" if file.endswith(".dat") else "utf-8")
    with pytest.raises(data.DataError) as e:
        data.load(directory)
    assert (e.value.path, e.value.line) == (str(directory / file), line)
    assert message in str(e.value) and f"{directory / file}:{line}: " in str(e.value)


@pytest.mark.parametrize("layout", ["1m", "csv"])
def test_repeated_rating_names_both_lines(ml1m_dir, csv_dir, tmp_path, layout):
    directory = _copy(ml1m_dir if layout == "1m" else csv_dir, tmp_path)
    path, sep = (directory / "ratings.dat", "::") if layout == "1m" else (directory / "ratings.csv", ",")
    lines = _lines(path)
    user, movie = lines[4].split(sep)[:2]
    lines[9] = sep.join([user, movie, "5", "978300761"])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=rf"{path.name}:10: user {user} rated movie {movie} again \(first at line 5\)"):
        data.load(directory)


@pytest.mark.parametrize("file", ["ratings.csv", "movies.csv", "ratings.dat", "users.dat"])
def test_truncated_last_line(ml1m_dir, csv_dir, tmp_path, file):
    directory = _copy(ml1m_dir if file.endswith(".dat") else csv_dir, tmp_path)
    raw = (directory / file).read_bytes()
    (directory / file).write_bytes(raw[:-3])
    lines = raw.count(b"\n")
    with pytest.raises(data.DataError, match=rf"{re.escape(file)}:{lines}: truncated line"):
        data.load(directory)


def test_header_only_ratings(csv_dir, tmp_path):
    directory = _copy(csv_dir, tmp_path)
    (directory / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(data.DataError, match=r"ratings\.csv: no ratings"):
        data.load(directory)


def test_bad_line_in_a_later_block(csv_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ratings_file, "CHUNK_BYTES", 50)
    directory = _copy(csv_dir, tmp_path)
    _replace_line(directory / "ratings.csv", 800, "3,4,4.3,1147880044")
    with pytest.raises(data.DataError, match=r"ratings\.csv:800: rating 4\.3 is not a multiple of 0\.5"):
        data.load(directory)


# --- RFC 4180: files written by Python's csv module read like GroupLens' own -------------------


def _rewrite_with_csv_module(directory: Path, **writer_options) -> None:
    """Rewrites movies.csv and ratings.csv through csv.reader / csv.writer (CRLF line ends by default)."""
    for name in ("movies.csv", "ratings.csv"):
        path = directory / name
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, strict=True))
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, **writer_options).writerows(rows)


def _tables(ml: data.MovieLens) -> list:
    return [getattr(table, field.name) for table in (ml.ratings, ml.movies, ml.users)
            for field in dataclasses.fields(table)]


@pytest.mark.parametrize("writer_options", [{}, {"lineterminator": "\n"}, {"quoting": csv.QUOTE_ALL, "which": "movies"}],
                         ids=["crlf", "lf", "movies-quote-all"])
def test_csv_written_by_pythons_csv_module_reads_the_same(csv_dir, tmp_path, writer_options):
    directory = _copy(csv_dir, tmp_path)
    options = dict(writer_options)
    if options.pop("which", None) == "movies":  # every field quoted: the ids and genres too
        with (directory / "movies.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, strict=True))
        with (directory / "movies.csv").open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, **options).writerows(rows)
        assert (directory / "movies.csv").read_bytes().startswith(b'"movieId","title","genres"\r\n"1",')
    else:
        _rewrite_with_csv_module(directory, **options)
    if not options:
        assert b"\r\n" in (directory / "ratings.csv").read_bytes() and b"\r\n" in (directory / "movies.csv").read_bytes()
        assert f'"{COMMA_TITLE}"'.encode() in (directory / "movies.csv").read_bytes()
    new, old = data.load(directory), data.load(csv_dir)
    assert new.layout == "csv"
    for a, b in zip(_tables(new), _tables(old), strict=True):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        else:
            assert a == b
    assert COMMA_TITLE in new.movies.titles and QUOTE_TITLE in new.movies.titles


@pytest.mark.parametrize("file, line, row, message", [
    ("ratings.csv", 7, ["1", "2", "4.3", "1147880044"], "rating 4.3 is not a multiple of 0.5"),
    ("ratings.csv", 9, ["1", "999", "4.0", "1147880044"], "rating for unknown movie 999 (not in movies.csv)"),
    ("ratings.csv", 11, ["1", "2", "4.5"], "expected 4 ','-separated fields, found 3"),
    ("movies.csv", 4, ["4", "Title (1995)", "Drama|Sci-Fy"], "unknown genre 'Sci-Fy'"),
    ("movies.csv", 6, ["x6", "Title, with a comma (1995)", "Drama"], "movie id 'x6' is not an integer"),
    ("movies.csv", 8, ["2", "Again (1995)", "Drama"], "duplicate movie id 2"),
])
def test_csv_module_files_name_the_same_file_and_line(csv_dir, tmp_path, file, line, row, message):
    directory = _copy(csv_dir, tmp_path)
    path = directory / file
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, strict=True))
    rows[line - 1] = row
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)  # CRLF line ends
    with pytest.raises(data.DataError) as e:
        data.load(directory)
    assert (e.value.path, e.value.line) == (str(path), line)
    assert message in str(e.value)


def test_csv_header_with_crlf_but_wrong_names_is_refused(csv_dir, tmp_path):
    directory = _copy(csv_dir, tmp_path)
    _rewrite_with_csv_module(directory)
    raw = (directory / "ratings.csv").read_bytes()
    (directory / "ratings.csv").write_bytes(raw.replace(b"userId,", b"user,", 1))
    with pytest.raises(data.DataError, match=r"ratings\.csv:1: expected the header 'userId,movieId,rating,timestamp', "
                                             r"found 'user,movieId,rating,timestamp'$"):
        data.load(directory)


# --- the vectorised ratings reader agrees with a plain line-by-line reader ------------------


def _reference_error(directory: Path, layout: str) -> str | None:
    """The line rules of ratings.dat / ratings.csv, line by line, as an independent oracle."""
    if layout == "1m":
        path, sep, movies_file = directory / "ratings.dat", "::", "movies.dat"
        users = {line.split("::")[0] for line in _lines(directory / "users.dat")}
    else:
        path, sep, movies_file, users = directory / "ratings.csv", ",", "movies.csv", None
    movies = {line.split(sep)[0] for line in _lines(directory / movies_file)}
    raw = path.read_bytes().decode("latin-1")
    if raw and not raw.endswith("\n"):
        return f"{path}:{raw.count(chr(10)) + 1}: truncated line: the file does not end with a newline"
    lines = raw.split("\n")[:-1]
    if layout == "csv":  # RFC 4180: a line may end with CRLF
        lines = [line.removesuffix("\r") for line in lines]
    first = 1
    if layout == "csv":
        header = lines[0] if lines else ""
        if header != "userId,movieId,rating,timestamp":
            return f"{path}:1: expected the header 'userId,movieId,rating,timestamp', found {header!r}"
        lines, first = lines[1:], 2
    seen = {}
    for number, line in enumerate(lines, start=first):
        where = f"{path}:{number}: "
        if not line.strip():
            return where + "empty line"
        if "\r" in line:
            if layout == "csv":
                return where + "carriage return inside a line (lines end with LF or CRLF)"
            return where + "carriage return: the files use Unix line endings"
        fields = line.split(sep)
        if len(fields) != 4:
            return where + f"expected 4 {sep!r}-separated fields, found {len(fields)}"
        for name, value in zip(("user id", "movie id", "rating", "timestamp"), fields):
            if name == "rating" and layout == "csv":
                if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
                    return where + f"rating {value!r} is not a number"
                if not 0.5 <= float(value) <= 5:
                    return where + f"rating {value} is outside 0.5-5.0"
                if float(value) * 2 % 1:
                    return where + f"rating {value} is not a multiple of 0.5"
                if not re.fullmatch(r"[0-9](\.[05])?", value):
                    return where + f"rating {value!r} is not written as 4, 4.0 or 4.5"
                continue
            if not re.fullmatch(r"0|[1-9][0-9]*", value):
                return where + f"{name} {value!r} is not an integer"
            if len(value) > 18:
                return where + f"{name} {value!r} is too large (more than 18 digits)"
            if name == "rating" and not 1 <= int(value) <= 5:
                return where + f"rating {int(value)} is outside 1-5"
        user, movie = fields[0], fields[1]
        if users is not None and user not in users:
            return where + f"rating for unknown user {user} (not in users.dat)"
        if movie not in movies:
            return where + f"rating for unknown movie {movie} (not in {movies_file})"
        if (user, movie) in seen:
            return where + f"user {user} rated movie {movie} again (first at line {seen[user, movie]})"
        seen[user, movie] = number
    return None if seen else f"{path}: no ratings"


_EDITS = ["", " ", "+", "0", "00", "x", "\r", ":", "::", ",", ".", ".5", ".0", "\x00", "é", "9" * 19, "\n", "-1", "6", "1"]


@pytest.mark.parametrize("seed", range(80))
def test_random_corruptions_match_the_line_reader(ml1m_dir, csv_dir, tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    layout = ("1m", "csv")[seed % 2]
    monkeypatch.setattr(ratings_file, "CHUNK_BYTES", int(rng.choice([40, 333, 1 << 20])))
    directory = _copy(ml1m_dir if layout == "1m" else csv_dir, tmp_path)
    path, sep = (directory / "ratings.dat", b"::") if layout == "1m" else (directory / "ratings.csv", b",")
    raw = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(0, 4)
        if kind <= 1:  # insert or replace a few bytes anywhere
            at = int(rng.integers(0, len(raw)))
            span = int(rng.integers(0, 3))
            raw[at : at + span] = _EDITS[rng.integers(len(_EDITS))].encode("latin-1")
        elif kind == 2 and raw.count(b"\n") > 3:  # repeat an earlier pair later, or rate an unknown user or movie
            lines = bytes(raw).split(b"\n")
            i, j = sorted(rng.choice(np.arange(1, len(lines) - 1), 2, replace=False))
            parts, other = lines[i].split(sep), lines[j].split(sep)
            if rng.random() < 0.5 and len(parts) > 2 and len(other) > 2:
                other[:2] = parts[:2]
            elif other:
                other[int(rng.integers(0, min(2, len(other))))] = str(int(rng.integers(61, 10**6))).encode()
            lines[j] = sep.join(other)
            raw = bytearray(b"\n".join(lines))
        elif kind == 3:  # drop whole lines at the end, or cut anywhere
            del raw[int(rng.integers(0, len(raw) + 1)) :]
    path.write_bytes(bytes(raw))
    expected = _reference_error(directory, layout)
    if expected is None:
        ml = data.load(directory)
        assert len(ml) == len(_lines(path)) - (layout == "csv")
    else:
        with pytest.raises(data.DataError) as e:
            data.load(directory)
        assert str(e.value) == expected


# --- features and training without demographics ----------------------------------------------


def test_features_without_demographics(csv_dir, ml1m_dir):
    from train import features, splits

    ml = data.load(csv_dir)
    tables = features.build(ml, splits.make(splits.RANDOM, ml).train)
    assert (tables.user_age == features.UNKNOWN).all() and (tables.user_gender == features.UNKNOWN).all()
    assert (tables.user_occupation == features.UNKNOWN).all() and tables.n_occupations == 1
    assert tables.n_genres == 20
    with_profiles = features.build(data.load(ml1m_dir), np.arange(N_RATINGS))
    assert (with_profiles.user_age[1:] > 0).all() and set(with_profiles.user_gender[1:]) == {1, 2}
    assert (with_profiles.user_occupation[1:] > 0).all()
    assert list(features.age_bucket(np.array([0, 1, 18, 56]))) == [0, 1, 2, 7]


@pytest.mark.skipif(os.environ.get("RUN_TRAINING_SCENARIOS") != "1",
                    reason="a whole run per layout: make test-training (RUN_TRAINING_SCENARIOS=1)")
@pytest.mark.parametrize("layout, split", [("1m", "seed-temporal"), ("csv", "leave-last-out")])
def test_default_preset_trains_on_each_layout(ml1m_dir, csv_dir, tmp_path, layout, split):
    import tensorflow as tf

    from train import trainer
    from train.config import DEFAULT_PRESET, PRESETS, TrainConfig

    config = TrainConfig(**{**PRESETS[DEFAULT_PRESET], "preset": DEFAULT_PRESET, "split": split, "epochs": 1,
                            "retrieval_epochs": 1, "batch_size": 128, "retrieval_batch_size": 128})
    metrics = trainer.run(config, ml1m_dir if layout == "1m" else csv_dir, tmp_path / "run", verbose=0)
    assert sum(metrics["rows"].values()) == N_RATINGS
    assert np.isfinite(metrics["test_rmse"]) and 0 <= metrics["recall_at_10"] <= 1
    recommender, _, features = trainer.load_recommender(tmp_path / "run")
    movies, scores = recommender.recommend(tf.constant([1, 0], tf.int64), tf.constant(5))
    assert movies.shape == (2, 5) and np.isfinite(scores.numpy()).all()
    # A new user from a few ratings: the query encoder needs no profile.
    given = tf.constant([[1, 2, 3]], tf.int64)
    movies, scores = recommender.recommend_from_ratings(tf.constant([0], tf.int64), given,
                                                        tf.constant([[4.5, 3.0, 0.5]]), tf.constant(5))
    assert movies.shape == (1, 5) and not set(movies.numpy()[0]) & {1, 2, 3}
