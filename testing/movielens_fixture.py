"""The small MovieLens-format fixture the tests train and parse on, in every layout the reader knows.

The real files may not be redistributed and are not always at hand, so tests
that exercise parsing, splitting and a smoke train use this synthetic copy:
a few hundred ratings with a learnable pattern (users prefer movies whose id
parity matches theirs).

``write_movielens_fixture`` writes it in the 100K layout (tab-separated u.data
with the u1...u5 folds, latin-1 pipe-separated u.item and u.user) through the
project's one 100K writer (``train/synthetic.py``). ``write_1m_fixture`` and
``write_csv_fixture`` render the same users, movies and ratings in the ML-1M and
the CSV (20M/25M/32M/latest) layouts, with each layout's quirks: ``movies.dat``
holds a title with ``:`` and latin-1 bytes, ``users.dat`` age groups and
occupation codes; ``movies.csv`` is UTF-8 with quoted titles holding a comma (and
a doubled quote), ``IMAX`` and ``(no genres listed)``, and ``ratings.csv``
half-star ratings, with headers and no user file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from train import data, synthetic

N_USERS = 40
N_MOVIES = 60
N_RATINGS = 900
T0 = 874_724_710
OCCUPATIONS = ("student", "engineer", "writer", "doctor", "other")

COLON_TITLE = "Star Wars: Episode IV - A New Hope (1977)"  # movie 3 in the 1M and CSV layouts
COMMA_TITLE = "Shawshank Redemption, The (1994)"  # movie 5 in the CSV layout
QUOTE_TITLE = '"Great Performances" Cats, Live (1998)'  # movie 11 in the CSV layout
LATIN1_TITLE = "Amélie (2001)"  # movie 7 in every layout
IMAX_MOVIE = "13"
NO_GENRES_MOVIE = "19"  # its 100K genre is "unknown"


def _ratings(rng: np.random.Generator) -> np.ndarray:
    """N_RATINGS distinct (user id, movie id, rating, timestamp) rows: the rating follows id parity."""
    pairs = set()
    lines = []
    while len(lines) < N_RATINGS:
        u, m = int(rng.integers(1, N_USERS + 1)), int(rng.integers(1, N_MOVIES + 1))
        if (u, m) in pairs:
            continue
        pairs.add((u, m))
        rating = int(np.clip(round(3 + (1.5 if u % 2 == m % 2 else -1.5) + rng.normal(0, 0.5)), 1, 5))
        lines.append((u, m, rating, T0 + int(rng.integers(0, 10_000_000))))
    return np.array(lines, np.int64)


def write_movielens_fixture(directory: Path, seed: int = 0) -> Path:
    """The fixture in the 100K layout, with the u1...u5 folds (every fifth rating is one fold's test part)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    users = np.arange(1, N_USERS + 1)
    synthetic.write_users(directory / data.USERS_FILE, 18 + users % 50, np.array(list("MF"))[users % 2],
                          np.array(OCCUPATIONS)[users % 5], (10000 + users).astype(str))
    movies = np.arange(1, N_MOVIES + 1)
    titles = np.array([f"Film {m} (19{50 + m % 50})" if m != 7 else LATIN1_TITLE for m in movies])
    genres = (movies[:, None] % 19 == np.arange(data.NUM_GENRES)[None, :]).astype(np.uint8)
    synthetic.write_movies(directory / data.MOVIES_FILE, titles, np.full(N_MOVIES, "01-Jan-1995"), genres,
                           np.strings.add("http://example.invalid/", movies.astype(str)))
    ratings = _ratings(rng)
    synthetic.write_ratings(directory / data.RATINGS_FILE, *ratings.T)
    for fold in range(1, 6):
        test = np.arange(N_RATINGS) % 5 == fold - 1
        synthetic.write_ratings(directory / f"u{fold}.base", *ratings[~test].T)
        synthetic.write_ratings(directory / f"u{fold}.test", *ratings[test].T)
    return directory


def _base(seed: int) -> data.MovieLens:
    with tempfile.TemporaryDirectory() as tmp:
        return data.load_100k(write_movielens_fixture(Path(tmp), seed))


def _genre_names(movielens: data.MovieLens, row: int) -> list[str]:
    return [data.GENRES[g] for g in np.flatnonzero(movielens.movies.genres[row])]


def write_1m_fixture(directory: Path, seed: int = 0) -> Path:
    ml = _base(seed)
    directory.mkdir(parents=True, exist_ok=True)
    from train.layouts import OCCUPATIONS_1M

    with (directory / "users.dat").open("w", encoding="latin-1", newline="\n") as f:
        for i, user in enumerate(ml.users.ids):
            f.write(f"{user}::{ml.users.gender[i]}::{data.bucketize_age(int(ml.users.age[i]))}::{(i * 7) % len(OCCUPATIONS_1M)}"
                    f"::{ml.users.zip_code[i]}\n")
    with (directory / "movies.dat").open("w", encoding="latin-1", newline="\n") as f:
        for i, movie in enumerate(ml.movies.ids):
            title = COLON_TITLE if movie == "3" else str(ml.movies.titles[i])
            genres = [g for g in _genre_names(ml, i) if g != "unknown"] or ["Drama", "Film-Noir"]
            f.write(f"{movie}::{title}::{'|'.join(genres)}\n")
    with (directory / "ratings.dat").open("w", newline="\n") as f:
        r = ml.ratings
        for u, m, rating, t in zip(r.user, r.movie, r.rating, r.timestamp):
            f.write(f"{ml.users.ids[u]}::{ml.movies.ids[m]}::{int(rating)}::{t}\n")
    return directory


def _csv_field(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if ("," in text or '"' in text) else text


def write_csv_fixture(directory: Path, seed: int = 0) -> Path:
    ml = _base(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "movies.csv").open("w", encoding="utf-8", newline="\n") as f:
        f.write("movieId,title,genres\n")
        for i, movie in enumerate(ml.movies.ids):
            title = {"3": COLON_TITLE, "5": COMMA_TITLE, "11": QUOTE_TITLE}.get(movie, str(ml.movies.titles[i]))
            genres = ["Children" if g == "Children's" else g for g in _genre_names(ml, i) if g != "unknown"]
            if movie == IMAX_MOVIE:
                genres.append("IMAX")
            f.write(f"{movie},{_csv_field(title)},{'|'.join(genres) or '(no genres listed)'}\n")
    with (directory / "ratings.csv").open("w", newline="\n") as f:
        f.write("userId,movieId,rating,timestamp\n")
        r = ml.ratings
        # Half a star off every third rating, and the rows in (user, time) order as GroupLens writes them.
        for k in np.lexsort((r.timestamp, r.user.astype(np.int64))):
            rating = float(r.rating[k]) - (0.5 if k % 3 == 0 else 0.0)
            f.write(f"{ml.users.ids[r.user[k]]},{ml.movies.ids[r.movie[k]]},{rating:.1f},{r.timestamp[k]}\n")
    return directory
