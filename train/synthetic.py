"""Writes a synthetic MovieLens-100K-format dataset of any size, with structure to learn.

The files have the real formats (``u.data`` tab-separated with Unix newlines,
``u.item`` latin-1 with 24 '|'-separated fields and release dates like
``01-Jan-1995``, ``u.user`` as ``id|age|gender|occupation|zip``), so
``train.data.load`` reads them like the real thing, at sizes the real 100K
set cannot reach (20k users × 45k movies × 1M ratings, or ML-25M's scale).

What a model can learn from it:

* popularity: movies are proposed with Zipf-like probabilities (rank^-0.9)
  and users rate Zipf-like numbers of movies (rank^-0.6, at least 20 each when
  there are enough ratings, and at most half the movies unless the ratings
  need more), both in random id order;
* taste: a user rates the movies that score best on ``popularity proposal +
  BETA·preference + Gumbel noise`` (sampling without replacement), where
  ``preference`` is a dot product of latent user and movie factors plus the
  user's affinity for the movie's genres; the affinity is partly shared by
  users of one age group and one occupation, so side features carry signal
  for users with few ratings;
* ratings: 1-5 by thresholding ``user bias + movie bias + GAMMA·preference +
  noise``, calibrated to roughly MovieLens-100K's rating distribution.

Everything is vectorised and chunked by users, so 25M ratings stay within a
few GiB: candidate pairs are deduplicated with int64 keys ``user·n_movies +
movie``. ``generate`` returns the tables and the hidden factors (for tests
and model comparisons); ``write_synthetic`` writes the files. ``write_users``,
``write_movies`` and ``write_ratings`` are the project's one writer of the 100K
format; the test fixtures (``testing/movielens_fixture.py``) write through them.

    python -m train.synthetic --out DIR --users 20000 --movies 45000 --ratings 1000000 [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from train.data import AGE_BUCKETS, MOVIES_FILE, NUM_GENRES, RATINGS_FILE, USERS_FILE

LATENT_DIM = 8
BETA = 1.0  # how much preference (vs popularity alone) decides what a user rates
GAMMA = 0.8  # how much preference moves the rating
MOVIE_POPULARITY_EXPONENT = 0.9
USER_ACTIVITY_EXPONENT = 0.6
MIN_RATINGS_PER_USER = 20  # as in MovieLens, when n_ratings allows it
OVERSAMPLE = 3  # candidate proposals per rating to choose
CHUNK_RATINGS = 250_000  # ratings chosen per batch of users
WRITE_ROWS = 1_000_000  # u.data lines formatted at a time
# Thresholds on the latent rating: 1 below the first, 5 above the last (≈ ML-100K's 6/11/27/34/21%).
RATING_THRESHOLDS = np.array([-1.3, -0.63, 0.27, 1.3])
T_START = 946_684_800  # 2000-01-01 UTC
T_SPAN = 5 * 365 * 86_400

OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive", "healthcare",
    "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer", "retired", "salesman",
    "scientist", "student", "technician", "writer",
)
# ML-100K's head counts per occupation, and per genre (of 1,682 movies).
_OCCUPATION_WEIGHTS = np.array([79, 28, 7, 95, 67, 18, 32, 16, 7, 12, 51, 26, 9, 105, 66, 14, 12, 31, 196, 27, 45], float)
_GENRE_SHARE = np.array([2, 251, 135, 42, 122, 505, 109, 50, 725, 22, 24, 92, 56, 61, 247, 101, 251, 71, 27]) / 1682
_MONTHS = np.array(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
_TITLE_FIRST = np.array([
    "Silent", "Last", "Crimson", "Hidden", "Broken", "Golden", "Midnight", "Lost", "Wild", "Café", "Secret",
    "Distant", "Frozen", "Burning", "Electric", "Quiet", "Little", "Dark", "Endless", "Bright",
])
_TITLE_SECOND = np.array([
    "River", "Garden", "Señor", "City", "Noël", "Road", "Dream", "Kingdom", "Shadow", "Summer", "Storm",
    "Island", "Letter", "Mirror", "Train", "Heart", "Night", "Stranger", "Season", "Crossing",
])


@dataclasses.dataclass(frozen=True, eq=False)
class Synthetic:
    """A generated dataset: user i has id i + 1, movie j has id j + 1; ratings in u.data order."""

    user_age: np.ndarray  # int32
    user_gender: np.ndarray  # str 'M' / 'F'
    user_occupation: np.ndarray  # int32 index into OCCUPATIONS
    user_zip: np.ndarray  # str
    movie_title: np.ndarray  # str
    movie_date: np.ndarray  # str, '' for a few movies (the year is then only in the title)
    movie_genres: np.ndarray  # uint8 [n_movies, NUM_GENRES]
    movie_popularity: np.ndarray  # float64 proposal probability of each movie
    user_taste: np.ndarray  # float32 [n_users, LATENT_DIM + NUM_GENRES]: factors, then genre affinity
    movie_taste: np.ndarray  # float32 [n_movies, LATENT_DIM + NUM_GENRES]: factors, then genre weights
    user: np.ndarray  # int32 user index of each rating
    movie: np.ndarray  # int32 movie index
    rating: np.ndarray  # int8, 1-5
    timestamp: np.ndarray  # int64

    def preference(self, user: np.ndarray, movie: np.ndarray) -> np.ndarray:
        """The hidden taste score of (user, movie) pairs, about unit variance."""
        return _preference(self.user_taste.T.copy(), self.movie_taste.T.copy(), np.asarray(user), np.asarray(movie))


def _preference(user_taste_t: np.ndarray, movie_taste_t: np.ndarray, user: np.ndarray, movie: np.ndarray) -> np.ndarray:
    """Dot products of gathered rows, from transposed (dim × n) tables.

    One 1-D gather per dimension: several times faster than gathering 2-D rows.
    """
    out = np.zeros(len(user), np.float32)
    for u, m in zip(user_taste_t, movie_taste_t):
        out += u[user] * m[movie]
    return out / np.float32(np.sqrt(2))


def _unique(keys: np.ndarray) -> np.ndarray:
    """np.unique of int64 keys by sorting (np.unique's hash path is far slower here)."""
    keys = np.sort(keys)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


def _largest_remainder(total: int, weights: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Integers proportional to weights, summing to total, none above its cap."""
    counts = np.zeros(len(weights), np.int64)
    while (remaining := total - int(counts.sum())) > 0:
        open_ = counts < cap
        share = np.zeros(len(weights))
        share[open_] = remaining * weights[open_] / weights[open_].sum()
        add = np.floor(share).astype(np.int64)
        left = remaining - int(add.sum())
        if left:  # the largest fractional parts get one more each
            add[np.argsort(add - share, kind="stable")[:left]] += 1
        counts = np.minimum(counts + add, cap)
    return counts


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Zipf-like weights rank^-exponent, in random order, summing to 1."""
    weights = np.arange(1, n + 1, dtype=float) ** -exponent
    return rng.permutation(weights / weights.sum())


def _users(rng: np.random.Generator, n_users: int):
    age = np.clip(np.round(rng.normal(33, 12, n_users)), 7, 73).astype(np.int32)
    gender = np.where(rng.random(n_users) < 0.71, "M", "F")
    occupation = rng.choice(len(OCCUPATIONS), n_users, p=_OCCUPATION_WEIGHTS / _OCCUPATION_WEIGHTS.sum()).astype(np.int32)
    zip_code = np.char.zfill(rng.integers(0, 100_000, n_users).astype(str), 5)
    return age, gender, occupation, zip_code


def _movies(rng: np.random.Generator, n_movies: int):
    genres = rng.random((n_movies, NUM_GENRES)) < _GENRE_SHARE
    none = ~genres.any(axis=1)
    genres[np.flatnonzero(none), rng.choice(NUM_GENRES, int(none.sum()), p=_GENRE_SHARE / _GENRE_SHARE.sum())] = True
    year = np.clip(2004 - np.floor(rng.exponential(12, n_movies)), 1920, 2004).astype(int)
    title = np.strings.add(
        np.strings.add("The ", _TITLE_FIRST[rng.integers(0, len(_TITLE_FIRST), n_movies)]),
        np.strings.add(" ", _TITLE_SECOND[rng.integers(0, len(_TITLE_SECOND), n_movies)]),
    )
    title = np.strings.add(title, np.strings.add(" (", np.strings.add(year.astype(str), ")")))
    day = np.char.zfill(rng.integers(1, 29, n_movies).astype(str), 2)
    date = np.strings.add(np.strings.add(day, "-"), np.strings.add(_MONTHS[rng.integers(0, 12, n_movies)], "-"))
    date = np.strings.add(date, year.astype(str))
    date = np.where(rng.random(n_movies) < 0.01, "", date)  # unknown release date: the title still has the year
    return title, date, genres.astype(np.uint8)


def _tastes(rng: np.random.Generator, age: np.ndarray, occupation: np.ndarray, genres: np.ndarray):
    """Factor rows whose dot product is about unit variance: latent part + genre part, each variance 1."""
    n_users, n_movies = len(age), len(genres)
    scale = LATENT_DIM**-0.25
    user_factors = rng.normal(0, scale, (n_users, LATENT_DIM))
    movie_factors = rng.normal(0, scale, (n_movies, LATENT_DIM))
    # Genre affinity: shared by an age group, shared by an occupation, and personal.
    by_age = rng.normal(0, 1, (len(AGE_BUCKETS), NUM_GENRES))
    by_occupation = rng.normal(0, 1, (len(OCCUPATIONS), NUM_GENRES))
    age_group = np.searchsorted(AGE_BUCKETS, age, side="right") - 1
    affinity = (by_age[age_group] + by_occupation[occupation] + rng.normal(0, 1, (n_users, NUM_GENRES))) / np.sqrt(3)
    genre_weight = genres / np.sqrt(genres.sum(axis=1, keepdims=True))
    user_taste = np.concatenate([user_factors, affinity], axis=1).astype(np.float32)
    movie_taste = np.concatenate([movie_factors, genre_weight], axis=1).astype(np.float32)
    return user_taste, movie_taste


def _choose_movies(rng, users: np.ndarray, need: np.ndarray, popularity, cdf, user_t, movie_t):
    """For each user, ``need`` distinct movies: popularity proposals, then the best by taste + Gumbel."""
    n_movies = len(popularity)
    proposals = need * OVERSAMPLE + 8
    user = np.repeat(users.astype(np.int64), proposals)
    movie = np.minimum(np.searchsorted(cdf, rng.random(len(user)), side="right"), n_movies - 1)
    keys = _unique(user * n_movies + movie)  # sorted by user, then movie
    user, movie = keys // n_movies, keys % n_movies
    score = BETA * _preference(user_t, movie_t, user, movie) + rng.gumbel(size=len(keys)).astype(np.float32)
    order = np.lexsort((-score, user))
    user, movie = user[order], movie[order]
    first = np.searchsorted(user, users)  # users are ascending; each one's block starts here
    rank = np.arange(len(user)) - np.repeat(first, np.diff(np.append(first, len(user))))
    keep = rank < np.repeat(need, np.diff(np.append(first, len(user))))
    user, movie = user[keep], movie[keep]
    short = need - np.bincount(np.searchsorted(users, user), minlength=len(users))
    if short.any():  # heavy users whose proposals repeat too much: score every movie for them
        extra_user, extra_movie = _top_up(rng, users[short > 0], short[short > 0], user, movie, popularity, user_t, movie_t)
        user, movie = np.concatenate([user, extra_user]), np.concatenate([movie, extra_movie])
    return user, movie


def _top_up(rng, users, short, chosen_user, chosen_movie, popularity, user_t, movie_t):
    n_movies = len(popularity)
    chosen = chosen_user * n_movies + chosen_movie
    out_user, out_movie = [], []
    batch = max(1, 2_000_000 // n_movies)
    for start in range(0, len(users), batch):
        u, k = users[start : start + batch], short[start : start + batch]
        score = np.log(popularity)[None, :] + BETA * (user_t[:, u].T @ movie_t) / np.sqrt(2)
        score += rng.gumbel(size=score.shape)
        taken = np.isin(u[:, None].astype(np.int64) * n_movies + np.arange(n_movies)[None, :], chosen)
        score[taken] = -np.inf
        best = np.argsort(-score, axis=1, kind="stable")[:, : int(k.max())]
        keep = np.arange(best.shape[1])[None, :] < k[:, None]
        out_user.append(np.broadcast_to(u[:, None], best.shape)[keep])
        out_movie.append(best[keep])
    return np.concatenate(out_user), np.concatenate(out_movie)


def generate(n_users: int, n_movies: int, n_ratings: int, seed: int = 0) -> Synthetic:
    if min(n_users, n_movies) < 1 or n_ratings < 1:
        raise ValueError("need at least one user, one movie and one rating")
    if n_ratings > n_users * n_movies:
        raise ValueError(f"{n_ratings} ratings cannot be unique pairs of {n_users} users and {n_movies} movies")
    rng = np.random.default_rng(seed)
    age, gender, occupation, zip_code = _users(rng, n_users)
    title, date, genres = _movies(rng, n_movies)
    user_taste, movie_taste = _tastes(rng, age, occupation, genres)
    user_t, movie_t = user_taste.T.copy(), movie_taste.T.copy()  # dim × n: fast per-dimension gathers
    popularity = _zipf(rng, n_movies, MOVIE_POPULARITY_EXPONENT)
    cdf = np.cumsum(popularity)
    floor = min(MIN_RATINGS_PER_USER, n_ratings // n_users, n_movies)
    # Nobody rates more than half the catalogue, unless the ratings need denser users.
    cap = max(n_movies // 2, -(-n_ratings // n_users))
    need = floor + _largest_remainder(
        n_ratings - floor * n_users, _zipf(rng, n_users, USER_ACTIVITY_EXPONENT), np.full(n_users, cap - floor)
    )
    users_of_chunk = np.searchsorted(np.cumsum(need), np.arange(CHUNK_RATINGS, int(need.sum()), CHUNK_RATINGS))
    parts = []
    for users in np.split(np.arange(n_users), np.unique(users_of_chunk + 1)):
        users = users[need[users] > 0]
        if len(users):
            parts.append(_choose_movies(rng, users, need[users], popularity, cdf, user_t, movie_t))
    user = np.concatenate([p[0] for p in parts]).astype(np.int32)
    movie = np.concatenate([p[1] for p in parts]).astype(np.int32)
    assert len(user) == n_ratings

    bias_user = rng.normal(0, 0.4, n_users).astype(np.float32)
    bias_movie = rng.normal(0, 0.4, n_movies).astype(np.float32)
    latent = bias_user[user] + bias_movie[movie] + GAMMA * _preference(user_t, movie_t, user, movie)
    latent += rng.normal(0, 0.6, n_ratings).astype(np.float32)
    rating = (1 + np.searchsorted(RATING_THRESHOLDS, latent)).astype(np.int8)
    # Each user is active over a window of the span; ratings fall uniformly inside it.
    start = rng.uniform(0, T_SPAN, n_users)
    end = np.minimum(start + rng.exponential(T_SPAN / 5, n_users), T_SPAN)
    timestamp = (T_START + start[user] + rng.random(n_ratings) * (end - start)[user]).astype(np.int64)

    order = rng.permutation(n_ratings)  # u.data lists ratings in no particular order
    return Synthetic(
        age, gender, occupation, zip_code, title, date, genres, popularity, user_taste, movie_taste,
        user[order], movie[order], rating[order], timestamp[order],
    )


# --- writing ---------------------------------------------------------------------------------

_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def _format_rows(columns: list[np.ndarray]) -> bytes:
    """Non-negative integer columns as tab-separated lines, built as one byte array."""
    digits = [1 + np.searchsorted(_POWERS, c, side="right") for c in columns]
    width = sum(digits) + len(columns)
    out = np.empty(int(width.sum()), np.uint8)
    at = np.cumsum(width) - width
    for j, (column, n) in enumerate(zip(columns, digits)):
        value = column.astype(np.int64)
        for k in range(int(n.max(initial=0))):  # the k-th digit from the right
            live = k < n
            out[(at + n - 1 - k)[live]] = (value[live] % 10 + ord("0")).astype(np.uint8)
            value //= 10
        at = at + n
        out[at] = ord("\t") if j < len(columns) - 1 else ord("\n")
        at += 1
    return out.tobytes()


def _join(*fields) -> np.ndarray:
    """Rows of '|'-joined fields, from str arrays (or str scalars) of one length."""
    line = fields[0]
    for field in fields[1:]:
        line = np.strings.add(np.strings.add(line, "|"), field)
    return line


def _write_lines(path: Path, lines: np.ndarray) -> None:
    path.write_bytes("".join(np.strings.add(lines, "\n").tolist()).encode("latin-1"))


def write_users(path: Path, age: np.ndarray, gender: np.ndarray, occupation: np.ndarray, zip_code: np.ndarray) -> None:
    """``u.user``: ``id|age|gender|occupation|zip`` (occupation by name), user i with id i + 1; latin-1."""
    user_ids = np.arange(1, len(age) + 1).astype(str)
    _write_lines(path, _join(user_ids, np.asarray(age).astype(str), gender, occupation, zip_code))


def write_movies(path: Path, title: np.ndarray, date: np.ndarray, genres: np.ndarray, url: np.ndarray) -> None:
    """``u.item``: ``id|title|release date||url`` and the NUM_GENRES 0/1 flags, movie j with id j + 1; latin-1."""
    flags = np.full(len(title), "", dtype=f"<U{2 * NUM_GENRES}")
    for g in range(NUM_GENRES):
        flags = np.strings.add(flags, np.where(genres[:, g] == 1, "|1", "|0"))
    movie_ids = np.arange(1, len(title) + 1).astype(str)
    _write_lines(path, np.strings.add(_join(movie_ids, title, date, "", url), flags))


def write_ratings(path: Path, user_id: np.ndarray, movie_id: np.ndarray, rating: np.ndarray, timestamp: np.ndarray) -> None:
    """``u.data`` lines (also the format of the ``u1.base`` ... ``u5.test`` folds):
    ``user id, movie id, rating, timestamp``, tab-separated, Unix newlines."""
    with path.open("wb") as f:
        for start in range(0, len(user_id), WRITE_ROWS):
            rows = slice(start, start + WRITE_ROWS)
            f.write(_format_rows([user_id[rows], movie_id[rows], rating[rows], timestamp[rows]]))


def write(synthetic: Synthetic, directory: Path | str) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    s = synthetic
    url = np.strings.add("http://example.invalid/synthetic/", np.arange(1, len(s.movie_title) + 1).astype(str))
    write_movies(directory / MOVIES_FILE, s.movie_title, s.movie_date, s.movie_genres, url)
    write_users(directory / USERS_FILE, s.user_age, s.user_gender, np.asarray(OCCUPATIONS)[s.user_occupation], s.user_zip)
    write_ratings(directory / RATINGS_FILE, s.user + 1, s.movie + 1, s.rating, s.timestamp)
    return directory


def write_synthetic(directory: Path | str, n_users: int, n_movies: int, n_ratings: int, seed: int = 0) -> Path:
    """Writes u.data, u.item and u.user of a generated dataset into ``directory``; returns it."""
    return write(generate(n_users, n_movies, n_ratings, seed), directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write u.data, u.item, u.user into")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--movies", type=int, required=True)
    parser.add_argument("--ratings", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        directory = write_synthetic(args.out, args.users, args.movies, args.ratings, args.seed)
    except ValueError as e:
        parser.error(str(e))
    sizes = ", ".join(f"{name} {(directory / name).stat().st_size / 2**20:.1f} MiB" for name in (RATINGS_FILE, MOVIES_FILE, USERS_FILE))
    print(
        f"wrote {args.ratings:,} ratings of {args.users:,} users on {args.movies:,} movies (seed {args.seed}) "
        f"to {directory} in {time.perf_counter() - started:.1f} s: {sizes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
