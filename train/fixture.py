"""Writes a small MovieLens-format dataset for tests.

The real files may not be redistributed and are not always at hand, so tests
that exercise parsing, splitting and a smoke train use this synthetic copy:
same formats (tab-separated u.data, latin-1 pipe-separated u.item and u.user),
a few hundred ratings, and a learnable pattern (users prefer movies whose id
parity matches theirs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_USERS = 40
N_MOVIES = 60
N_RATINGS = 900
T0 = 874_724_710


def write_movielens_fixture(directory: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    occupations = ["student", "engineer", "writer", "doctor", "other"]
    with (directory / "u.user").open("w", encoding="latin-1") as f:
        for u in range(1, N_USERS + 1):
            f.write(f"{u}|{18 + u % 50}|{'MF'[u % 2]}|{occupations[u % 5]}|{10000 + u}\n")
    with (directory / "u.item").open("w", encoding="latin-1") as f:
        for m in range(1, N_MOVIES + 1):
            genres = ["1" if g == m % 19 else "0" for g in range(19)]
            title = f"Film {m} (19{50 + m % 50})" if m != 7 else "Amélie (2001)"  # a latin-1 title
            f.write(f"{m}|{title}|01-Jan-1995||http://example.invalid/{m}|{'|'.join(genres)}\n")
    pairs = set()
    lines = []
    while len(lines) < N_RATINGS:
        u, m = int(rng.integers(1, N_USERS + 1)), int(rng.integers(1, N_MOVIES + 1))
        if (u, m) in pairs:
            continue
        pairs.add((u, m))
        rating = int(np.clip(round(3 + (1.5 if u % 2 == m % 2 else -1.5) + rng.normal(0, 0.5)), 1, 5))
        lines.append((u, m, rating, T0 + int(rng.integers(0, 10_000_000))))
    with (directory / "u.data").open("w") as f:
        for u, m, r, t in lines:
            f.write(f"{u}\t{m}\t{r}\t{t}\n")
    for fold in range(1, 6):  # u1…u5: every fifth rating is the test part of one fold
        with (directory / f"u{fold}.base").open("w") as base, (directory / f"u{fold}.test").open("w") as test:
            for i, (u, m, r, t) in enumerate(lines):
                (test if i % 5 == fold - 1 else base).write(f"{u}\t{m}\t{r}\t{t}\n")
    return directory
