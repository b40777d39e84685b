"""The synthetic MovieLens generator: real formats, exact sizes, determinism, structure to learn."""

import re

import numpy as np
import pytest

from train import data, synthetic


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthetic.write_synthetic(tmp_path_factory.mktemp("synthetic"), n_users=200, n_movies=300, n_ratings=10_000, seed=3)


@pytest.fixture(scope="module")
def medium():
    return synthetic.generate(n_users=2_000, n_movies=3_000, n_ratings=100_000, seed=0)


def test_files_load_with_exact_counts(small):
    ml = data.load(small)
    assert len(ml) == 10_000 and len(ml.users) == 200 and len(ml.movies) == 300
    assert list(ml.users.ids) == [str(i) for i in range(1, 201)]
    assert list(ml.movies.ids) == [str(i) for i in range(1, 301)]
    keys = ml.ratings.user.astype(np.int64) * len(ml.movies) + ml.ratings.movie
    assert len(np.unique(keys)) == len(keys)  # (load refuses repeats too)
    assert set(np.unique(ml.ratings.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ml.ratings.timestamp.min() >= synthetic.T_START
    assert ml.ratings.timestamp.max() < synthetic.T_START + synthetic.T_SPAN
    assert (ml.movies.year > 1900).all()  # from the date, or from the title when the date is empty
    assert (ml.movies.genres.sum(axis=1) >= 1).all()


def test_file_formats(small):
    ratings = (small / "u.data").read_bytes()
    assert ratings.endswith(b"\n") and b"\r" not in ratings
    assert all(re.fullmatch(rb"[1-9][0-9]*\t[1-9][0-9]*\t[1-5]\t[1-9][0-9]{8,9}", line) for line in ratings.split(b"\n")[:-1])
    items = (small / "u.item").read_bytes().decode("latin-1").split("\n")[:-1]
    dates = []
    for line in items:
        fields = line.split("|")
        assert len(fields) == 24 and fields[3] == "" and fields[4].startswith("http://")
        assert re.fullmatch(r".+ \((19|20)\d\d\)", fields[1])
        assert all(flag in ("0", "1") for flag in fields[5:])
        dates.append(fields[2])
    assert all(re.fullmatch(r"(\d\d-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{4})?", d) for d in dates)
    assert any(ord(c) > 127 for line in items for c in line)  # latin-1 titles, as in the real u.item
    users = (small / "u.user").read_text(encoding="latin-1").split("\n")[:-1]
    for line in users:
        user_id, age, gender, occupation, zip_code = line.split("|")
        assert 7 <= int(age) <= 73 and gender in ("M", "F") and occupation in synthetic.OCCUPATIONS
        assert re.fullmatch(r"\d{5}", zip_code)


def test_latin1_encoding_is_single_byte(small):
    raw = (small / "u.item").read_bytes()
    assert "é".encode("latin-1") in raw or "ë".encode("latin-1") in raw or "ñ".encode("latin-1") in raw
    assert "é".encode("utf-8") not in raw


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synthetic.write_synthetic(tmp_path / "a", 50, 80, 1_000, seed=5)
    b = synthetic.write_synthetic(tmp_path / "b", 50, 80, 1_000, seed=5)
    c = synthetic.write_synthetic(tmp_path / "c", 50, 80, 1_000, seed=6)
    for name in (data.RATINGS_FILE, data.MOVIES_FILE, data.USERS_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()


def test_some_release_dates_are_unknown(medium):
    unknown = medium.movie_date == ""
    assert 0.002 < unknown.mean() < 0.03  # about 1%, as movie 267 of the real u.item
    # The year is then read from the title.
    years = data.release_years(medium.movie_date, medium.movie_title)
    assert (years > 1900).all()
    assert np.array_equal(years[unknown], data.release_years(np.full(unknown.sum(), ""), medium.movie_title[unknown]))


def test_popularity_and_activity_are_skewed(medium):
    n = len(medium.rating)
    movies = np.sort(np.bincount(medium.movie, minlength=3_000))[::-1]
    users = np.sort(np.bincount(medium.user, minlength=2_000))[::-1]
    assert movies[:300].sum() > 0.4 * n  # the top 10% of movies: 10% under uniform popularity
    assert movies[0] > 20 * n / 3_000
    assert users[:200].sum() > 0.2 * n  # the top 10% of users
    assert users.min() >= synthetic.MIN_RATINGS_PER_USER
    assert users.max() <= 3_000 // 2


def test_choices_and_ratings_follow_taste(medium):
    rng = np.random.default_rng(0)
    taste = medium.preference(medium.user, medium.movie)
    random_taste = medium.preference(rng.integers(0, 2_000, 100_000), rng.integers(0, 3_000, 100_000))
    assert taste.mean() > random_taste.mean() + 0.3  # users pick movies they like
    assert np.corrcoef(medium.rating, taste)[0, 1] > 0.4  # and rate them by taste
    # Genre affinity alone carries signal: the taste of a pair is correlated with its genre part.
    genre_part = np.einsum(
        "ij,ij->i", medium.user_taste[medium.user, synthetic.LATENT_DIM :], medium.movie_taste[medium.movie, synthetic.LATENT_DIM :]
    )
    assert np.corrcoef(medium.rating, genre_part)[0, 1] > 0.2
    shares = np.bincount(medium.rating, minlength=6)[1:] / len(medium.rating)
    assert (shares > 0.03).all() and 3.2 < medium.rating.mean() < 3.9  # roughly MovieLens' distribution


def test_dense_and_heavy_users(tmp_path):
    # Every pair: the proposals cannot cover it, so the top-up path must.
    full = synthetic.generate(10, 12, 120, seed=1)
    assert len(np.unique(full.user.astype(np.int64) * 12 + full.movie)) == 120
    # Few users with many ratings each.
    heavy = synthetic.generate(4, 1_000, 3_000, seed=2)
    keys = heavy.user.astype(np.int64) * 1_000 + heavy.movie
    assert len(heavy.user) == 3_000 and len(np.unique(keys)) == 3_000


@pytest.mark.parametrize("users, movies, ratings", [(3, 3, 10), (0, 5, 1), (5, 5, 0)])
def test_impossible_sizes(users, movies, ratings):
    with pytest.raises(ValueError):
        synthetic.generate(users, movies, ratings)


def test_format_rows_matches_str():
    rng = np.random.default_rng(0)
    columns = [rng.integers(0, 10**k, 500) for k in (1, 3, 9, 18)]
    columns[0][:3] = [0, 9, 1]
    columns[3][:2] = [10**17, 999_999_999_999_999_999]
    expected = "".join("\t".join(str(c[i]) for c in columns) + "\n" for i in range(500))
    assert synthetic._format_rows(columns).decode() == expected


def test_largest_remainder():
    counts = synthetic._largest_remainder(1_000, np.array([0.5, 0.3, 0.1, 0.1]), np.array([400, 1_000, 1_000, 1_000]))
    assert counts.sum() == 1_000 and counts[0] == 400 and counts.max() <= 1_000
    assert counts[1] > counts[2]


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synthetic.main(["--out", str(out), "--users", "30", "--movies", "40", "--ratings", "500", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 500 ratings of 30 users on 40 movies (seed 1)" in printed and str(out) in printed
    assert len(data.load(out)) == 500
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(out), "--users", "2", "--movies", "2", "--ratings", "5"])
