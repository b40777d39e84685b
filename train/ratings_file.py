"""The ratings files of every layout (u.data, u1.base…, ratings.dat, ratings.csv), parsed a block at a time.

A block of whole lines is parsed with numpy as far as its first malformed line; that line then
goes to ``reject_ratings_line`` (or the caller's own line rule), which names the problem. The first
error in file order is the one reported, as a line-by-line reader would report it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from train.line_rules import MAX_DIGITS, check_line, parse_int, split_fields, truncated, unexplained
from train.tables import DataError, Movies, Users, pair_key
from train.vectorised import first_repeat, first_true

# Read in blocks of about this many bytes (cut at a line end): ~350k lines, ~100 MB of temporaries.
CHUNK_BYTES = 1 << 23


@dataclasses.dataclass
class Block:
    """Some whole lines of a ratings file, parsed as far as the first malformed one."""

    first_line: int  # file line number of this block's first line
    data: bytes
    ends: np.ndarray  # offset of each line's newline in data
    columns: list[np.ndarray]  # user, movie, rating, timestamp of the lines [0, n_good); the rating float64
    n_good: int

    def line(self, row: int) -> str:
        start = int(self.ends[row - 1]) + 1 if row else 0
        return self.data[start : int(self.ends[row])].decode("latin-1")


def _separator_starts(in_sep: np.ndarray, sep_length: int) -> tuple[np.ndarray, int | None]:
    """Where each separator starts, and the byte of the first malformed one (or None).

    A one-byte separator is every byte equal to it; for '::' the runs of ':' must be exactly two
    long, and a separator is where a run starts.
    """
    if sep_length == 1:
        return in_sep, None
    before = np.zeros_like(in_sep)
    before[1:] = in_sep[:-1]
    after = np.zeros_like(in_sep)
    after[:-1] = in_sep[1:]
    run_starts, run_ends = np.flatnonzero(in_sep & ~before), np.flatnonzero(in_sep & ~after)
    wrong = first_true(run_ends - run_starts != sep_length - 1)
    sep_at = np.zeros_like(in_sep)
    sep_at[run_starts] = True
    return sep_at, None if wrong is None else int(run_starts[wrong])


def parse_ratings_block(chunk: bytes, first_line: int, sep: bytes, half_stars: bool) -> Block:
    """Parses whole ``user<sep>movie<sep>rating<sep>timestamp`` lines as far as the first malformed one.

    Ids and timestamps must be canonical integers (as in u.data); the rating an integer, or with
    ``half_stars`` also ``d.0`` / ``d.5``. The columns are int64 except the rating (float64).
    Range and id checks are the caller's.
    """
    n_fields, rating_field = 4, 2
    buf = np.frombuffer(chunk, np.uint8)
    newline = buf == ord("\n")
    ends = np.flatnonzero(newline)
    n_good = len(ends)

    def cut_at(position) -> None:  # the line holding byte ``position`` and those after it are not good
        nonlocal n_good
        n_good = min(n_good, int(np.searchsorted(ends, position)))

    in_sep = buf == sep[0]
    sep_at, wrong_run = _separator_starts(in_sep, len(sep))
    if wrong_run is not None:
        cut_at(wrong_run)
    dot = (buf == ord(".")) if half_stars else np.zeros_like(newline)
    other = (buf - np.uint8(ord("0")) > 9) & ~newline & ~in_sep & ~dot  # uint8 wraps below "0"
    if other.any():
        cut_at(np.argmax(other))
    field_end = newline | sep_at
    seps = np.flatnonzero(field_end)
    fields_per_line = np.diff(np.flatnonzero(newline[seps]), prepend=-1)
    wrong = first_true(fields_per_line != n_fields)
    if wrong is not None:
        n_good = min(n_good, wrong)
    stops = seps[: n_good * n_fields]  # a field ends at its separator
    starts = np.zeros_like(stops)
    starts[1:] = stops[:-1] + np.where(newline[stops[:-1]], 1, len(sep))
    length = stops - starts
    is_rating = (np.arange(len(stops)) % n_fields) == rating_field
    first = buf[np.minimum(starts, len(buf) - 1)]
    bad = (length == 0) | (length > MAX_DIGITS) | ((first == ord("0")) & (length > 1) & ~is_rating)
    if half_stars:  # d, d.0 or d.5; a dot anywhere else is wrong
        second = buf[np.minimum(starts + 1, len(buf) - 1)]
        third = buf[np.minimum(starts + 2, len(buf) - 1)]
        half_form = (length == 3) & (second == ord(".")) & ((third == ord("0")) | (third == ord("5")))
        bad |= is_rating & (length != 1) & ~half_form
        dots = np.flatnonzero(dot)
        dots = dots[dots < (stops[-1] if len(stops) else 0)]
        field = np.searchsorted(stops, dots)
        wrong_dot = first_true(~is_rating[field] | (dots != starts[field] + 1))
        if wrong_dot is not None:
            bad[field[wrong_dot]] = True
    else:
        bad |= is_rating & (length > 1) & (first == ord("0"))
    wrong = first_true(bad.reshape(n_good, n_fields).any(axis=1))
    if wrong is not None:
        n_good = wrong
        starts, length = starts[: n_good * n_fields], length[: n_good * n_fields]
    # Every field of the good lines is now well formed: blank the separators (and each rating's
    # '.d') and numpy's C text reader converts the integers exactly.
    size = int(ends[n_good - 1]) + 1 if n_good else 0
    good = buf[:size].copy()
    good[field_end[:size] | in_sep[:size]] = ord(" ")
    half = np.zeros(n_good, bool)
    if half_stars and n_good:
        rating_starts, rating_length = starts[rating_field::n_fields], length[rating_field::n_fields]
        decimal = np.flatnonzero(rating_length == 3)
        half[decimal] = buf[rating_starts[decimal] + 2] == ord("5")
        good[rating_starts[decimal] + 1] = good[rating_starts[decimal] + 2] = ord(" ")
    values = np.fromstring(good.tobytes(), dtype=np.int64, sep=" ")
    if len(values) != n_good * n_fields:
        raise AssertionError(f"read {len(values)} integers from {n_good} checked lines")
    columns = list(values.reshape(n_good, n_fields).T)
    columns[rating_field] = columns[rating_field] + 0.5 * half
    return Block(first_line, chunk, ends, columns, n_good)


_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_HALF_STAR = re.compile(r"[0-9](\.[05])?")


def half_star_rating(path: Path, number: int, value: str) -> float:
    if not _NUMBER.fullmatch(value):
        raise DataError(path, number, f"rating {value!r} is not a number")
    rating = float(value)
    if not 0.5 <= rating <= 5:
        raise DataError(path, number, f"rating {value} is outside 0.5-5.0")
    if rating * 2 != int(rating * 2):
        raise DataError(path, number, f"rating {value} is not a multiple of 0.5")
    if not _HALF_STAR.fullmatch(value):
        raise DataError(path, number, f"rating {value!r} is not written as 4, 4.0 or 4.5")
    return rating


def reject_ratings_line(path: Path, number: int, line: str, sep: str, half_stars: bool, movies: Movies,
                        users: Users | None, movies_file: str, users_file: str | None, crlf: bool = False) -> None:
    check_line(path, number, line, crlf)
    fields = split_fields(path, number, line, sep, 4)
    user_id = str(parse_int(path, number, "user id", fields[0]))
    movie_id = str(parse_int(path, number, "movie id", fields[1]))
    if half_stars:
        half_star_rating(path, number, fields[2])
    else:
        rating = parse_int(path, number, "rating", fields[2])
        if not 1 <= rating <= 5:
            raise DataError(path, number, f"rating {rating} is outside 1-5")
    parse_int(path, number, "timestamp", fields[3])
    if users is not None and users.index(user_id) < 0:
        raise DataError(path, number, f"rating for unknown user {user_id} (not in {users_file})")
    if movies.index(movie_id) < 0:
        raise DataError(path, number, f"rating for unknown movie {movie_id} (not in {movies_file})")
    raise unexplained(path, number)


def read_ratings_file(path: Path, sep: bytes, half_stars: bool, header: bytes | None, movies: Movies,
                  users: Users | None, movies_file: str, users_file: str | None, *, crlf: bool = False):
    """(user indices, movie indices, ratings, timestamps, user ids) of every line, or the first problem.

    With ``users`` the indices are theirs (an unknown user is an error); without, the users are the
    distinct ids that rated, in id order, returned as the last item. With ``crlf`` a line may end
    with CRLF as well as LF (RFC 4180, as Python's csv module writes); a CR anywhere else is an error.
    """

    def parse(chunk: bytes, line: int) -> Block:
        if crlf and b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")  # a block ends at a LF, so no CRLF is cut in two
        return parse_ratings_block(chunk, line, sep, half_stars)

    low = 0.5 if half_stars else 1.0
    parts: list[tuple[np.ndarray, ...]] = []
    failed: tuple[int, str] | None = None
    first_line = 2 if header is not None else 1
    for block in read_blocks(path, parse, header, crlf=crlf):
        user_id, movie_id, rating, timestamp = block.columns
        user = user_id if users is None else users.index(user_id)
        movie = movies.index(movie_id)
        bad = first_true((rating < low) | (rating > 5) | (user < 0) | (movie < 0))
        n = block.n_good if bad is None else bad
        parts.append((user[:n].copy(), movie[:n], rating[:n].astype(np.float32), timestamp[:n].copy()))
        if n < len(block.ends):
            failed = block.first_line + n, block.line(n)
            break
    if not parts:
        parts.append((np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
    user, movie, rating, timestamp = (np.concatenate(column) for column in zip(*parts))
    del parts
    if users is None:
        user_ids, user = np.unique(user, return_inverse=True)
    else:
        user_ids = users.ids
    repeat = first_repeat(pair_key(user, movie, len(movies)))
    if repeat is not None:  # every row read comes before the failed line
        row, earlier = repeat
        raise DataError(
            path, row + first_line,
            f"user {user_ids[user[row]]} rated movie {movies.ids[movie[row]]} again (first at line {earlier + first_line})",
        )
    if failed is not None:
        reject_ratings_line(path, *failed, sep.decode(), half_stars, movies, users, movies_file, users_file, crlf)
    if not len(user):
        raise DataError(path, None, "no ratings")
    return user.astype(np.int32), movie, rating, timestamp, user_ids


def read_tab_ratings(path: Path) -> Iterator[Block]:
    """Yields u.data-style lines (user, movie, rating, timestamp; tab-separated integers), a block at a time."""
    return read_blocks(path, lambda chunk, first_line: parse_ratings_block(chunk, first_line, b"\t", False))


def read_blocks(path: Path, parse, header: bytes | None = None, *, crlf: bool = False) -> Iterator[Block]:
    """Yields ``parse(data, first_line)`` of the file's lines, a block of whole lines at a time.

    A file that does not end with a newline is refused before any line is read. With a
    ``header``, line 1 must be exactly it (followed by LF, or with ``crlf`` also CRLF) and the
    blocks start at line 2.
    """
    chunk_bytes = CHUNK_BYTES
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    with f:
        size = f.seek(0, 2)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # reported before any line, as the line reader did
                f.seek(0)
                raise truncated(path, sum(block.count(b"\n") for block in iter(lambda: f.read(chunk_bytes), b"")))
        f.seek(0)
        first_line = 1
        if header is not None:
            found = f.readline()
            line_end = b"\r\n" if crlf and found.endswith(b"\r\n") else b"\n"
            if found != header + line_end:
                shown = found.removesuffix(line_end).decode("latin-1")
                raise DataError(path, 1, f"expected the header {header.decode()!r}, found {shown!r}")
            first_line = 2
        carry = b""
        while block := f.read(chunk_bytes):
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this block: keep it for the next
                carry += block
                continue
            parsed = parse(carry + block[:cut], first_line)
            carry = block[cut:]
            yield parsed
            first_line += len(parsed.ends)
        if carry:  # the file grew a partial line while being read
            raise truncated(path, first_line - 1)

