"""Numpy helpers of the readers: first bad row, first repeated key, strict decimal columns, release years.

Each is a few whole-array passes, with no Python work per row.
"""

from __future__ import annotations

import numpy as np

from train.line_rules import MAX_DIGITS


def first_true(bad: np.ndarray) -> int | None:
    """Index of the first True, or None."""
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else None


def first_repeat(keys: np.ndarray) -> tuple[int, int] | None:
    """(row, earlier row) of the first row whose key already occurred, in row order; O(n log n)."""
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return None  # the common case costs one sort
    del ordered
    order = np.argsort(keys, kind="stable")  # equal keys keep row order
    ordered = keys[order]
    repeats = order[1:][ordered[1:] == ordered[:-1]]
    row = int(repeats.min())
    return row, int(order[np.searchsorted(ordered, keys[row])])


def parse_decimals(strings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parses a str array as strict decimal integers: (int64 values, ok mask).

    ``ok`` is the line rule of ``parse_int``: ASCII digits only, no sign, space or
    leading zero, at most MAX_DIGITS digits. Strings are looked at as their
    UTF-32 code units, so this is a few array passes whatever the row count.
    """
    strings = np.asarray(strings, dtype=str)
    n = len(strings)
    width = strings.dtype.itemsize // 4
    if n == 0 or width == 0:
        return np.zeros(n, np.int64), np.zeros(n, bool)
    codes = strings.view(np.uint32).reshape(n, width)
    length = np.count_nonzero(codes, axis=1)  # NUL never reaches here: lines holding one are refused
    digit = (codes >= 48) & (codes <= 57)
    ok = (length >= 1) & (length <= MAX_DIGITS) & (digit | (codes == 0)).all(axis=1)
    ok &= ~((codes[:, 0] == 48) & (length > 1))
    values = np.zeros(n, np.int64)
    for k in range(min(width, MAX_DIGITS)):
        values = np.where(ok & (k < length), values * 10 + (codes[:, k].astype(np.int64) - 48), values)
    return values, ok


def _tail(strings: np.ndarray, k: int) -> np.ndarray:
    """The last ``k`` characters of each string as code points, [n, k] (0 where shorter)."""
    n = len(strings)
    width = max(strings.dtype.itemsize // 4, 1)
    codes = np.ascontiguousarray(strings, dtype=f"<U{width}").view(np.uint32).reshape(n, width)
    at = np.strings.str_len(strings)[:, None] - k + np.arange(k)
    picked = codes[np.arange(n)[:, None], np.clip(at, 0, width - 1)]
    return np.where(at >= 0, picked, 0)


def _year_at_end(strings: np.ndarray, before: str, after: str) -> np.ndarray:
    """The 4-digit year that ends each string, framed by ``before`` (and ``after``); 0 if none."""
    tail = _tail(strings, len(before) + 4 + len(after))
    digits = tail[:, len(before) : len(before) + 4].astype(np.int64) - ord("0")
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    frame = [(i, c) for i, c in enumerate(before)] + [(len(before) + 4 + i, c) for i, c in enumerate(after)]
    for i, c in frame:
        ok &= tail[:, i] == ord(c)
    year = digits @ np.array([1000, 100, 10, 1])
    return np.where(ok, year, 0).astype(np.int32)


def release_years(dates: np.ndarray, titles: np.ndarray) -> np.ndarray:
    """The year of a release date like ``01-Jan-1995``, else of a title ending ``(1995)``, else 0."""
    dates = np.asarray(dates, dtype=str)
    titles = np.strings.rstrip(np.asarray(titles, dtype=str))
    from_date = _year_at_end(dates, "-", "")
    return np.where(from_date > 0, from_date, _year_at_end(titles, "(", ")")).astype(np.int32)
