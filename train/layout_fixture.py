"""Writes the test fixture (``train/fixture.py``) in the ML-1M and the CSV (20M/25M/32M/latest) layouts.

Same users, movies and ratings as the 100K fixture, so the same learnable
pattern, in each layout's own format and with its quirks: ``movies.dat`` holds
a title with ``:`` and latin-1 bytes, ``users.dat`` age groups and occupation
codes; ``movies.csv`` is UTF-8 with quoted titles holding a comma (and a doubled
quote), ``IMAX`` and ``(no genres listed)``, and ``ratings.csv`` half-star
ratings, with headers and no user file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from train import data
from train.fixture import write_movielens_fixture

COLON_TITLE = "Star Wars: Episode IV - A New Hope (1977)"  # movie 3 in both layouts
COMMA_TITLE = "Shawshank Redemption, The (1994)"  # movie 5 in the CSV layout
QUOTE_TITLE = '"Great Performances" Cats, Live (1998)'  # movie 11 in the CSV layout
LATIN1_TITLE = "Amélie (2001)"  # movie 7, as in the 100K fixture
IMAX_MOVIE = "13"
NO_GENRES_MOVIE = "19"  # its 100K genre is "unknown"


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
