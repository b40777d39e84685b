"""Reads a MovieLens folder of any layout (100K, 1M, the CSV sets) into integer-indexed tables.

This is the reader's public face; each concern has its module:

- ``train/tables.py``: ``Users``, ``Movies``, ``Ratings``, ``MovieLens`` and their id → row index;
  ``DataError``.
- ``train/line_rules.py``: the per-line rules that name what is wrong with a line.
- ``train/vectorised.py``: the numpy helpers (first bad row, repeated keys, strict decimals, years).
- ``train/ratings_file.py``: the ratings files of every layout, parsed a block of lines at a time.
- ``train/ml100k.py``: MovieLens 100K's files and the u1.base… split files.
- ``train/layouts.py``: which layout a folder holds, and the 1M and CSV files.
- ``train/checksums.py``: SHA-256 of the files read, checked against SHA256SUMS.

The files come from GroupLens, not TFDS (see ``train/download.py``), and any MovieLens-format
folder of any size reads the same way (``train/synthetic.py`` writes such folders).

Parsing is strict. Every malformed line raises ``DataError`` naming the file and line; nothing is
dropped or coerced, because a silently shortened dataset moves every metric downstream without
anyone noticing. Parsing is also linear and vectorised: each file is checked and parsed as whole
numpy arrays (the ratings in blocks, so memory stays a small multiple of the result), with no
Python work per rating. The vectorised checks are exactly as strict as the line rules; when they
find something wrong, the first bad line is handed to a line rule, which names the problem.
"""

from __future__ import annotations

from train.checksums import CHECKSUMS_FILE, sha256_of, verify_checksums
from train.layouts import load
from train.ml100k import load_100k, read_movies, read_pairs, read_ratings, read_users
from train.ratings_file import read_blocks, read_ratings_file
from train.tables import (
    AGE_BUCKETS, GENRES, MOVIES_FILE, NUM_GENRES, RATINGS_FILE, REQUIRED_FILES, USERS_FILE, DataError, MovieLens,
    Movies, Ratings, Users, bucketize_age,
)
from train.vectorised import release_years

__all__ = [
    "AGE_BUCKETS", "CHECKSUMS_FILE", "GENRES", "MOVIES_FILE", "NUM_GENRES", "RATINGS_FILE", "REQUIRED_FILES",
    "USERS_FILE", "DataError", "MovieLens", "Movies", "Ratings", "Users", "bucketize_age", "load", "load_100k",
    "read_blocks", "read_movies", "read_pairs", "read_ratings", "read_ratings_file", "read_users", "release_years",
    "sha256_of", "verify_checksums",
]
