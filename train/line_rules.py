"""The line rules: one malformed line of a MovieLens file named as ``DataError(file, line, problem)``.

The vectorised readers find that something is wrong; these name what, for the first bad line.
Integers are stricter than ``int()`` and at most ``MAX_DIGITS`` long, so every value fits an int64.
"""

from __future__ import annotations

import re
from pathlib import Path

from train.tables import DataError

# Integers longer than this are refused: every value then fits in an int64.
MAX_DIGITS = 18

_INTEGER = re.compile(r"0|[1-9][0-9]*")


def check_line(path: Path, number: int, line: str, crlf: bool = False) -> None:
    """``line`` without its line end; with ``crlf`` (the CSV layout, RFC 4180) that end may have been CRLF."""
    if not line.strip():
        raise DataError(path, number, "empty line")
    if "\r" in line:
        if crlf:
            raise DataError(path, number, "carriage return inside a line (lines end with LF or CRLF)")
        raise DataError(path, number, "carriage return: the files use Unix line endings")


def split_fields(path: Path, number: int, line: str, sep: str, expected: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != expected:
        raise DataError(path, number, f"expected {expected} {sep!r}-separated fields, found {len(fields)}")
    return fields


def parse_int(path: Path, number: int, name: str, value: str) -> int:
    # Stricter than int(), which also takes " 7", "+7", "07" and "1_0": none of
    # those appear in MovieLens, and accepting them would rewrite ids silently.
    if not _INTEGER.fullmatch(value):
        raise DataError(path, number, f"{name} {value!r} is not an integer")
    if len(value) > MAX_DIGITS:
        raise DataError(path, number, f"{name} {value!r} is too large (more than {MAX_DIGITS} digits)")
    return int(value)


def check_no_nul(path: Path, number: int, line: str) -> None:
    # numpy strings cannot hold a trailing NUL: refuse it rather than lose it.
    if "\x00" in line:
        raise DataError(path, number, "NUL character")


def unexplained(path: Path, number: int) -> DataError:
    # The vectorised checks and the line rules disagree: a bug here, not in the data.
    return DataError(path, number, "malformed line (rejected by the vectorised check, but no line rule names why)")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None


def truncated(path: Path, newlines: int) -> DataError:
    return DataError(path, newlines + 1, "truncated line: the file does not end with a newline")
