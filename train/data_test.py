"""Parsing of the MovieLens files into indexed columns, and every bad-input error."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from testing.movielens_fixture import N_MOVIES, N_RATINGS, N_USERS
from train import data, ratings_file


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("latin-1").split("\n")[:-1]


def test_tables_are_indexed_columns(fixture_dir):
    ml = data.load(fixture_dir)
    assert len(ml) == len(ml.ratings) == N_RATINGS
    assert len(ml.users) == N_USERS and len(ml.movies) == N_MOVIES
    r = ml.ratings
    assert r.user.dtype == np.int32 and r.movie.dtype == np.int32
    assert r.rating.dtype == np.float32 and r.timestamp.dtype == np.int64
    assert ml.users.ids.dtype.kind == "U" and ml.movies.ids.dtype.kind == "U"
    assert ml.users.age.dtype == np.int32 and ml.movies.year.dtype == np.int32
    assert ml.movies.genres.dtype == np.uint8 and ml.movies.genres.shape == (N_MOVIES, data.NUM_GENRES)
    # Row i of the ratings is line i + 1 of u.data, and the indices lead back to its ids.
    for i, line in enumerate(_lines(fixture_dir / "u.data")):
        user, movie, rating, timestamp = line.split("\t")
        assert ml.users.ids[r.user[i]] == user and ml.movies.ids[r.movie[i]] == movie
        assert r.rating[i] == int(rating) and r.timestamp[i] == int(timestamp)
    # Users and movies keep file order; every column matches its line.
    for i, line in enumerate(_lines(fixture_dir / "u.user")):
        assert "|".join([ml.users.ids[i], str(ml.users.age[i]), ml.users.gender[i], ml.users.occupation[i], ml.users.zip_code[i]]) == line
    for i, line in enumerate(_lines(fixture_dir / "u.item")):
        fields = line.split("|")
        assert ml.movies.ids[i] == fields[0] and ml.movies.titles[i] == fields[1]
        assert "|".join(map(str, ml.movies.genres[i])) == "|".join(fields[5:])


def test_latin1_titles(fixture_dir):
    movies = data.load(fixture_dir).movies
    assert movies.titles[movies.index("7")] == "Amélie (2001)"


def test_index_looks_up_str_and_int_ids(fixture_dir):
    users = data.load(fixture_dir).users
    assert users.index("1") == 0 and users.index(str(N_USERS)) == N_USERS - 1
    found = users.index(np.array(["3", "999", "03", "", "1"]))
    assert found.dtype == np.int32 and list(found) == [2, -1, -1, -1, 0]
    assert list(users.index(["2", "1"])) == [1, 0]
    assert list(users.index(np.array([3, 999, 1], dtype=np.int64))) == [2, -1, 0]
    assert users.index(np.array([], dtype=str)).shape == (0,)


def test_index_follows_file_order_not_sorted_order():
    users = data.Users(
        ids=np.array(["30", "4", "100"]), age=np.zeros(3, np.int32), gender=np.array(["M"] * 3),
        occupation=np.array(["x"] * 3), zip_code=np.array(["1"] * 3),
    )
    assert list(users.index(["100", "30", "4", "5"])) == [2, 0, 1, -1]
    assert list(users.index(np.array([4, 100, 101, -4, 0]))) == [1, 2, -1, -1, -1]
    assert len(users) == 3
    sparse = data.Movies(  # ids far apart: binary search instead of a direct table
        ids=np.array(["5", "1000000", "70000"]), titles=np.array(["a", "b", "c"]), year=np.zeros(3, np.int32),
        genres=np.zeros((3, data.NUM_GENRES), np.uint8),
    )
    assert list(sparse.index(np.array([70000, 5, 1000000, 6, 2000000, -1]))) == [2, 0, 1, -1, -1, -1]
    assert list(sparse.index(["1000000", "7"])) == [1, -1]


def test_genre_names():
    assert len(data.GENRES) == data.NUM_GENRES
    assert data.GENRES[0] == "unknown" and data.GENRES[4] == "Children's" and data.GENRES[-1] == "Western"


@pytest.mark.parametrize("age, bucket", [(7, 1), (18, 18), (24, 18), (25, 25), (44, 35), (49, 45), (55, 50), (73, 56), (0, 1)])
def test_bucketize_age(age, bucket):
    assert data.bucketize_age(age) == bucket
    assert isinstance(data.bucketize_age(age), int)


def test_bucketize_age_is_vectorised():
    ages = np.array([7, 18, 24, 25, 44, 49, 55, 73])
    assert list(data.bucketize_age(ages)) == [data.bucketize_age(int(a)) for a in ages] == [1, 18, 18, 25, 35, 45, 50, 56]


def test_release_years():
    dates = np.array(["01-Jan-1995", "4-Feb-1971", "", "", "", "1995", "01-Jan-95"])
    titles = np.array(["A (1990)", "B", "C (1988) ", "unknown", "D (1995) (V)", "E", "F"])
    assert list(data.release_years(dates, titles)) == [1995, 1971, 1988, 0, 0, 0, 0]


def _copy(fixture_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ml"
    shutil.copytree(fixture_dir, target)
    return target


def _replace_line(path: Path, number: int, text: str | None, newline: bool = True) -> None:
    lines = _lines(path)
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_bytes(("\n".join(lines) + ("\n" if newline else "")).encode("latin-1"))


BAD_LINES = [
    ("u.data", 3, "1\t2\t3", "expected 4 '\\t'-separated fields, found 3"),
    ("u.data", 4, "1\t2\t3\t4\t5", "found 5"),
    ("u.data", 5, "1\tx\t3\t874724710", "movie id 'x' is not an integer"),
    ("u.data", 6, "1\t2\tfour\t874724710", "rating 'four' is not an integer"),
    ("u.data", 7, "1\t2\t6\t874724710", "rating 6 is outside 1-5"),
    ("u.data", 8, "1\t2\t0\t874724710", "rating 0 is outside 1-5"),
    ("u.data", 9, "1\t9999\t3\t874724710", "unknown movie 9999"),
    ("u.data", 10, "9999\t2\t3\t874724710", "unknown user 9999"),
    ("u.data", 11, "", "empty line"),
    ("u.data", 14, "\t\t\t", "empty line"),
    ("u.data", 15, "1\t2\t3\t", "timestamp '' is not an integer"),
    ("u.data", 16, "1 \t2\t3\t874724710", "user id '1 ' is not an integer"),
    ("u.data", 17, "1\t2\t3\t8747247100000000000", "timestamp '8747247100000000000' is too large"),
    ("u.data", 18, "1\t2\t3\t87472\x0047", "timestamp '87472\\x0047' is not an integer"),
    ("u.data", 19, "1\t2\t3\t87472é", "timestamp '87472é' is not an integer"),
    ("u.data", 20, "1\t2\t10\t874724710", "rating 10 is outside 1-5"),
    ("u.item", 2, "2|Broken (1995)|01-Jan-1995", "expected 24 '|'-separated fields, found 3"),
    ("u.item", 3, "3|Flags (1995)|01-Jan-1995||u" + "|0" * 18 + "|2", "genre flags must be 0 or 1"),
    ("u.item", 4, "4|Flags (1995)|01-Jan-1995||u" + "|0" * 18 + "|", "genre flag '' is not an integer"),
    ("u.item", 5, "05|Zero (1995)|01-Jan-1995||u" + "|0" * 19, "movie id '05' is not an integer"),
    ("u.item", 6, "", "empty line"),
    ("u.user", 3, "3|old|M|writer|12345", "age 'old' is not an integer"),
    ("u.user", 4, "4|30|X|writer|12345", "gender 'X' is not M or F"),
    ("u.user", 5, "5|+30|M|writer|12345", "age '+30' is not an integer"),
    ("u.user", 6, "6|30|M|writer|12345\r", "carriage return"),
    ("u.user", 7, "7|30|M|writer", "expected 5 '|'-separated fields, found 4"),
    ("u.user", 8, "8|99999999999|M|writer|12345", "age 99999999999 is too large"),
    ("u.user", 9, "9|30|M|writer|12345\x00", "NUL character"),
    ("u.user", 10, "1\x000|30|M|writer|12345", "user id '1\\x000' is not an integer"),
    ("u.item", 7, "7|Nul\x00 (1995)|01-Jan-1995||u" + "|0" * 19, "NUL character"),
    ("u.data", 12, "07\t2\t3\t874724710", "user id '07' is not an integer"),
    ("u.data", 13, "1\t2\t3\t874724710\r", "carriage return"),
]


@pytest.mark.parametrize("file, line, text, message", BAD_LINES)
def test_bad_line_names_file_and_line(fixture_dir, tmp_path, file, line, text, message):
    directory = _copy(fixture_dir, tmp_path)
    _replace_line(directory / file, line, text)
    with pytest.raises(data.DataError) as e:
        data.load(directory)
    assert e.value.path == str(directory / file)
    assert e.value.line == line
    assert message in str(e.value)
    assert f"{directory / file}:{line}:" in str(e.value)


@pytest.mark.parametrize("file, line, text, message", [b for b in BAD_LINES if b[0] == "u.data"])
def test_bad_line_in_a_later_block(fixture_dir, tmp_path, monkeypatch, file, line, text, message):
    """u.data is read in blocks: line numbers and rows carry across block boundaries."""
    monkeypatch.setattr(ratings_file, "CHUNK_BYTES", 50)  # a few lines per block, some blocks cut mid-line
    directory = _copy(fixture_dir, tmp_path)
    late = N_RATINGS - 100 + line
    _replace_line(directory / file, late, text)
    with pytest.raises(data.DataError) as e:
        data.load(directory)
    assert e.value.line == late and message in str(e.value)


def test_small_blocks_read_the_same_ratings(fixture_dir, monkeypatch):
    whole = data.load(fixture_dir).ratings
    monkeypatch.setattr(ratings_file, "CHUNK_BYTES", 7)  # shorter than a line: blocks are joined
    small = data.load(fixture_dir).ratings
    for column in ("user", "movie", "rating", "timestamp"):
        assert np.array_equal(getattr(whole, column), getattr(small, column))


def test_truncated_last_line(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    path = directory / "u.data"
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])  # cut mid-line: no trailing newline
    with pytest.raises(data.DataError, match=r"u\.data:900: truncated line"):
        data.load(directory)


def test_truncation_is_reported_before_earlier_bad_lines(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    _replace_line(directory / "u.user", 2, "2|x|M|writer|1", newline=False)
    with pytest.raises(data.DataError, match=rf"u\.user:{N_USERS}: truncated line"):
        data.load(directory)


def test_missing_file(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "u.user").unlink()
    with pytest.raises(data.DataError, match="u.user: file not found"):
        data.load(directory)


def test_empty_ratings_file(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "u.data").write_bytes(b"")
    with pytest.raises(data.DataError, match=r"u\.data: no ratings"):
        data.load(directory)


def test_checksum_mismatch_is_reported(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "SHA256SUMS").write_text("0" * 64 + "  u.data\n")
    with pytest.raises(data.DataError, match="u.data: SHA-256 .* does not match SHA256SUMS"):
        data.load(directory)


def test_checksums_are_recorded(fixture_dir):
    import hashlib

    ml = data.load(fixture_dir)
    assert ml.sha256 == {name: hashlib.sha256((fixture_dir / name).read_bytes()).hexdigest() for name in data.REQUIRED_FILES}


def test_real_data_counts(movielens_dir):
    ml = data.load(movielens_dir)
    assert len(ml) == 100_000
    assert len(ml.movies) == 1682 and len(ml.users) == 943
    # Titles are not unique: keying by title would merge different films.
    assert len(set(ml.movies.titles)) == 1664
    assert ml.ratings.rating.sum() == 352_986  # mean 3.52986
    assert ml.movies.titles[ml.movies.index("1")] == "Toy Story (1995)"
    assert ml.movies.year[ml.movies.index("1")] == 1995
    assert ml.movies.year[ml.movies.index("267")] == 0  # "unknown", no date
    assert np.bincount(ml.ratings.user, minlength=943).min() == 20  # every user rated at least 20


def test_repeated_rating_names_both_lines(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    path = directory / "u.data"
    lines = path.read_text().splitlines()
    user, movie, _, _ = lines[4].split("\t")
    lines[9] = f"{user}\t{movie}\t5\t874724711"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=rf"u\.data:10: user {user} rated movie {movie} again \(first at line 5\)"):
        data.load(directory)


def test_first_problem_in_file_order_wins(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    path = directory / "u.data"
    lines = _lines(path)
    user, movie, _, _ = lines[4].split("\t")
    lines[9] = f"{user}\t{movie}\t5\t874724711"  # repeats line 5
    lines[19] = "1\t2\t9\t874724711"  # a bad rating after the repeat
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"u\.data:10: .* again \(first at line 5\)"):
        data.load(directory)
    lines[2] = "1\t2\t9\t874724711"  # now a bad line comes first
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"u\.data:3: rating 9 is outside 1-5"):
        data.load(directory)


@pytest.mark.parametrize("file, line, what", [("u.user", 6, "user"), ("u.item", 9, "movie")])
def test_duplicate_ids(fixture_dir, tmp_path, file, line, what):
    directory = _copy(fixture_dir, tmp_path)
    lines = _lines(directory / file)
    _replace_line(directory / file, line, "3|" + lines[line - 1].split("|", 1)[1])
    with pytest.raises(data.DataError, match=rf"{re.escape(file)}:{line}: duplicate {what} id 3$"):
        data.load(directory)


def test_malformed_checksum_line(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "SHA256SUMS").write_text("justonefield\n")
    with pytest.raises(data.DataError, match=r"SHA256SUMS:1: expected"):
        data.load(directory)


# --- the vectorised checks agree with a plain line-by-line reader ------------------------------


def _reference_error(directory: Path) -> str | None:
    """The line-by-line rules of the original reader (u.data only), as an independent oracle."""
    users = {line.split("|")[0] for line in _lines(directory / "u.user")}
    movies = {line.split("|")[0] for line in _lines(directory / "u.item")}
    path = directory / "u.data"
    raw = path.read_bytes().decode("latin-1")
    if raw and not raw.endswith("\n"):
        return f"{path}:{raw.count(chr(10)) + 1}: truncated line: the file does not end with a newline"
    seen = {}
    for number, line in enumerate(raw.split("\n")[:-1], start=1):
        where = f"{path}:{number}: "
        if not line.strip():
            return where + "empty line"
        if "\r" in line:
            return where + "carriage return: the files use Unix line endings"
        fields = line.split("\t")
        if len(fields) != 4:
            return where + f"expected 4 '\\t'-separated fields, found {len(fields)}"
        for name, value in zip(("user id", "movie id", "rating", "timestamp"), fields):
            if not re.fullmatch(r"0|[1-9][0-9]*", value):
                return where + f"{name} {value!r} is not an integer"
            if len(value) > 18:
                return where + f"{name} {value!r} is too large (more than 18 digits)"
        user, movie, rating = fields[0], fields[1], int(fields[2])
        if not 1 <= rating <= 5:
            return where + f"rating {rating} is outside 1-5"
        if user not in users:
            return where + f"rating for unknown user {user} (not in u.user)"
        if movie not in movies:
            return where + f"rating for unknown movie {movie} (not in u.item)"
        if (user, movie) in seen:
            return where + f"user {user} rated movie {movie} again (first at line {seen[user, movie]})"
        seen[user, movie] = number
    return None if seen else f"{path}: no ratings"


_EDITS = ["", " ", "+", "0", "00", "x", "\r", "\t", "\x00", "é", "9" * 19, "\n", "\n\n", "-1", "6", "1"]


@pytest.mark.parametrize("seed", range(100))
def test_random_corruptions_match_the_line_reader(fixture_dir, tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(ratings_file, "CHUNK_BYTES", int(rng.choice([40, 333, 1 << 20])))
    directory = _copy(fixture_dir, tmp_path)
    path = directory / "u.data"
    raw = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(0, 4)
        if kind == 0:  # insert or replace a few bytes anywhere before the last newline
            at = int(rng.integers(0, len(raw)))
            span = int(rng.integers(0, 2))
            raw[at : at + span] = _EDITS[rng.integers(len(_EDITS))].encode("latin-1")
        elif kind == 1:  # repeat an earlier pair later
            lines = bytes(raw).split(b"\n")
            i, j = sorted(rng.choice(len(lines) - 1, 2, replace=False))
            parts = lines[i].split(b"\t")
            lines[j] = b"\t".join(parts[:2] + [b"3", b"874724711"])
            raw = bytearray(b"\n".join(lines))
        elif kind == 2:  # an unknown user or movie
            lines = bytes(raw).split(b"\n")
            j = int(rng.integers(0, len(lines) - 1))
            parts = lines[j].split(b"\t")
            parts[int(rng.integers(0, 2))] = str(int(rng.integers(61, 10**6))).encode()
            lines[j] = b"\t".join(parts)
            raw = bytearray(b"\n".join(lines))
        elif rng.random() < 0.8:  # drop whole lines at the end
            ends = [i + 1 for i, b in enumerate(raw) if b == ord("\n")]
            del raw[ends[int(rng.integers(0, len(ends)))] :]
        else:  # cut anywhere
            del raw[int(rng.integers(0, len(raw) + 1)) :]
    path.write_bytes(bytes(raw))
    expected = _reference_error(directory)
    if expected is None:
        ml = data.load(directory)
        assert len(ml) == len(_lines(path))
    else:
        with pytest.raises(data.DataError) as e:
            data.load(directory)
        assert str(e.value) == expected


def _reference_table_error(path: Path, what: str) -> str | None:
    """The line rules of u.user / u.item, line by line, as an independent oracle."""
    raw = path.read_bytes().decode("latin-1")
    if raw and not raw.endswith("\n"):
        return f"{path}:{raw.count(chr(10)) + 1}: truncated line: the file does not end with a newline"
    seen = set()
    for number, line in enumerate(raw.split("\n")[:-1], start=1):
        where = f"{path}:{number}: "
        if not line.strip():
            return where + "empty line"
        if "\r" in line:
            return where + "carriage return: the files use Unix line endings"
        fields = line.split("|")
        expected = 5 if what == "user" else 24
        if len(fields) != expected:
            return where + f"expected {expected} '|'-separated fields, found {len(fields)}"
        names = ["user id", "age"] if what == "user" else ["movie id"] + ["genre flag"] * 19
        values = fields[:2] if what == "user" else fields[:1] + fields[5:]
        for name, value in zip(names, values):
            if not re.fullmatch(r"0|[1-9][0-9]*", value):
                return where + f"{name} {value!r} is not an integer"
            if len(value) > 18:
                return where + f"{name} {value!r} is too large (more than 18 digits)"
        if what == "user" and fields[2] not in ("M", "F"):
            return where + f"gender {fields[2]!r} is not M or F"
        if what == "user" and int(fields[1]) > 2**31 - 1:
            return where + f"age {int(fields[1])} is too large"
        if what == "movie" and any(int(f) not in (0, 1) for f in fields[5:]):
            return where + "genre flags must be 0 or 1"
        if "\x00" in line:
            return where + "NUL character"
        if fields[0] in seen:
            return where + f"duplicate {what} id {fields[0]}"
        seen.add(fields[0])
    return None


_TABLE_EDITS = ["", "|", "||", "\r", "\x00", " ", "0", "+", "x", "\n", "é", "2", "9" * 19, "M", "F", "1"]


@pytest.mark.parametrize("seed", range(60))
def test_random_table_corruptions_match_the_line_reader(fixture_dir, tmp_path, seed):
    rng = np.random.default_rng(seed)
    what = ("user", "movie")[seed % 2]
    directory = _copy(fixture_dir, tmp_path)
    path = directory / ("u.user" if what == "user" else "u.item")
    raw = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.75:  # insert or replace a few bytes before the last newline
            at = int(rng.integers(0, len(raw)))
            span = int(rng.integers(0, 3))
            raw[at : at + span] = _TABLE_EDITS[rng.integers(len(_TABLE_EDITS))].encode("latin-1")
        else:  # give a later line an earlier line's id
            lines = bytes(raw).split(b"\n")
            i, j = sorted(rng.choice(len(lines) - 1, 2, replace=False))
            lines[j] = lines[i].split(b"|")[0] + b"|" + lines[j].split(b"|", 1)[-1]
            raw = bytearray(b"\n".join(lines))
    path.write_bytes(bytes(raw))
    read = data.read_users if what == "user" else data.read_movies
    expected = _reference_table_error(path, what)
    if expected is None:
        table = read(path)
        assert list(table.ids) == [line.split("|")[0] for line in _lines(path)]
    else:
        with pytest.raises(data.DataError) as e:
            read(path)
        assert str(e.value) == expected
