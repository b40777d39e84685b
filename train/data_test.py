"""Parsing and join of the MovieLens files, and every bad-input error."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from train import data
from train.fixture import N_RATINGS


def test_join_has_tfds_fields(fixture_dir):
    ml = data.load(fixture_dir)
    assert len(ml) == N_RATINGS
    assert set(ml.ratings) == set(data.RECORD_FIELDS)
    r = ml.ratings
    i = 0
    user, movie = ml.users[r["user_id"][i]], ml.movies[r["movie_id"][i]]
    assert r["movie_title"][i] == movie.title
    assert tuple(r["movie_genres"][i]) == movie.genres
    assert r["raw_user_age"][i] == user.age
    assert r["bucketized_user_age"][i] == data.bucketize_age(user.age)
    assert r["user_gender"][i] == (user.gender == "M")
    assert r["user_occupation_text"][i] == user.occupation
    assert r["user_zip_code"][i] == user.zip_code
    assert r["user_rating"].dtype == np.float32 and r["timestamp"].dtype == np.int64


def test_latin1_titles(fixture_dir):
    assert data.load(fixture_dir).movies["7"].title == "Amélie (2001)"


@pytest.mark.parametrize("age, bucket", [(7, 1), (18, 18), (24, 18), (25, 25), (44, 35), (49, 45), (55, 50), (73, 56)])
def test_bucketize_age(age, bucket):
    assert data.bucketize_age(age) == bucket


def _copy(fixture_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ml"
    shutil.copytree(fixture_dir, target)
    return target


def _replace_line(path: Path, number: int, text: str | None, newline: bool = True) -> None:
    lines = path.read_bytes().decode("latin-1").split("\n")[:-1]
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_bytes(("\n".join(lines) + ("\n" if newline else "")).encode("latin-1"))


@pytest.mark.parametrize(
    "file, line, text, message",
    [
        ("u.data", 3, "1\t2\t3", "expected 4 '\\t'-separated fields, found 3"),
        ("u.data", 4, "1\t2\t3\t4\t5", "found 5"),
        ("u.data", 5, "1\tx\t3\t874724710", "movie id 'x' is not an integer"),
        ("u.data", 6, "1\t2\tfour\t874724710", "rating 'four' is not an integer"),
        ("u.data", 7, "1\t2\t6\t874724710", "rating 6 is outside 1-5"),
        ("u.data", 8, "1\t2\t0\t874724710", "rating 0 is outside 1-5"),
        ("u.data", 9, "1\t9999\t3\t874724710", "unknown movie 9999"),
        ("u.data", 10, "9999\t2\t3\t874724710", "unknown user 9999"),
        ("u.data", 11, "", "empty line"),
        ("u.item", 2, "2|Broken (1995)|01-Jan-1995", "expected 24 '|'-separated fields, found 3"),
        ("u.user", 3, "3|old|M|writer|12345", "age 'old' is not an integer"),
        ("u.user", 4, "4|30|X|writer|12345", "gender 'X' is not M or F"),
        ("u.user", 5, "5|+30|M|writer|12345", "age '+30' is not an integer"),
        ("u.data", 12, "07\t2\t3\t874724710", "user id '07' is not an integer"),
        ("u.data", 13, "1\t2\t3\t874724710\r", "carriage return"),
    ],
)
def test_bad_line_names_file_and_line(fixture_dir, tmp_path, file, line, text, message):
    directory = _copy(fixture_dir, tmp_path)
    _replace_line(directory / file, line, text)
    with pytest.raises(data.DataError) as e:
        data.load(directory)
    assert e.value.path == str(directory / file)
    assert e.value.line == line
    assert message in str(e.value)
    assert f"{directory / file}:{line}:" in str(e.value)


def test_truncated_last_line(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    path = directory / "u.data"
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])  # cut mid-line: no trailing newline
    with pytest.raises(data.DataError, match=r"u\.data:900: truncated line"):
        data.load(directory)


def test_missing_file(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "u.user").unlink()
    with pytest.raises(data.DataError, match="u.user: file not found"):
        data.load(directory)


def test_checksum_mismatch_is_reported(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "SHA256SUMS").write_text("0" * 64 + "  u.data\n")
    with pytest.raises(data.DataError, match="u.data: SHA-256 .* does not match SHA256SUMS"):
        data.load(directory)


def test_real_data_counts(movielens_dir):
    ml = data.load(movielens_dir)
    assert len(ml) == 100_000
    assert len(ml.movies) == 1682 and len(ml.users) == 943
    # Titles are not unique: keying by title would merge different films.
    assert len({m.title for m in ml.movies.values()}) == 1664


def test_repeated_rating_names_both_lines(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    path = directory / "u.data"
    lines = path.read_text().splitlines()
    user, movie, _, _ = lines[4].split("\t")
    lines[9] = f"{user}\t{movie}\t5\t874724711"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=rf"u\.data:10: user {user} rated movie {movie} again \(first at line 5\)"):
        data.load(directory)


def test_malformed_checksum_line(fixture_dir, tmp_path):
    directory = _copy(fixture_dir, tmp_path)
    (directory / "SHA256SUMS").write_text("justonefield\n")
    with pytest.raises(data.DataError, match=r"SHA256SUMS:1: expected"):
        data.load(directory)
