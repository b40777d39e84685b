"""Finds the MovieLens 100K files, downloading them from GroupLens when no copy is at hand.

The dataset's licence forbids redistribution, so the repository never contains
it: a user's first run fetches the official zip, checks its MD5 against the one
GroupLens publishes, and extracts it atomically into a cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from train.data import REQUIRED_FILES

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
MD5 = "0e33842e24a9c977be4e0107933c0723"
ENV_VAR = "MOVIELENS_DIR"
ZIP_MEMBER_DIR = "ml-100k"


class DataUnavailable(RuntimeError):
    """No local copy of the data and the download failed."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "movielens"


def has_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def missing_files(directory: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (directory / name).is_file()]


def locate(data_dir: str | Path | None = None, cache_dir: Path | None = None, url: str = URL, md5: str = MD5) -> Path:
    """Returns a directory holding u.data, u.item and u.user.

    An explicit ``data_dir`` (``--data-dir``) must hold them: otherwise DataUnavailable
    names the directory and the missing files, and nothing else is tried. Without it,
    looks at ``$MOVIELENS_DIR`` and the cache, and downloads into the cache when
    neither has the files.
    """
    if data_dir:
        data_dir = Path(data_dir)
        missing = missing_files(data_dir)
        if missing:
            state = "has no" if data_dir.is_dir() else "is not a directory: no" if data_dir.exists() else "does not exist: no"
            raise DataUnavailable(
                f"--data-dir {data_dir} {state} {', '.join(missing)} (MovieLens 100K needs {', '.join(REQUIRED_FILES)}; "
                f"leave --data-dir out to try ${ENV_VAR}, the cache, then a download)"
            )
        return data_dir
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    candidates = [
        (f"${ENV_VAR}", os.environ.get(ENV_VAR)),
        ("cache", cache_dir / ZIP_MEMBER_DIR),
    ]
    for label, candidate in candidates:
        if candidate and has_files(Path(candidate)):
            return Path(candidate)
        if candidate and label != "cache":
            # Set but unusable: say so rather than silently downloading.
            missing = ", ".join(missing_files(Path(candidate)))
            print(f"{label} {candidate} lacks {missing}; looking further", file=sys.stderr)
    try:
        return download(cache_dir, url=url, md5=md5)
    except (OSError, ValueError) as e:
        looked = "\n".join(f"  {label}: {path or '(not set)'}" for label, path in candidates)
        raise DataUnavailable(
            f"MovieLens 100K not found and the download failed ({e}).\n"
            f"Looked for {', '.join(REQUIRED_FILES)} in:\n{looked}\n"
            "Provide the data one of three ways:\n"
            "  1. python -m train --data-dir /path/to/ml-100k\n"
            f"  2. export {ENV_VAR}=/path/to/ml-100k\n"
            f"  3. unzip {URL} into {cache_dir} (or rerun with network access)"
        ) from e


def download(cache_dir: Path, url: str = URL, md5: str = MD5) -> Path:
    """Downloads and verifies the zip, then renames the extracted folder into place."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / ZIP_MEMBER_DIR
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        archive = Path(tmp) / "ml-100k.zip"
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if total:
                    print(f"\rdownloading {url}: {done * 100 // total}%", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}")
        with zipfile.ZipFile(archive) as z:
            z.extractall(Path(tmp) / "extracted")
        extracted = Path(tmp) / "extracted" / ZIP_MEMBER_DIR
        if not has_files(extracted):
            raise ValueError(f"{url} does not contain {ZIP_MEMBER_DIR}/ with {', '.join(REQUIRED_FILES)}")
        if target.exists():  # a partial copy from an older layout; the rename below must not merge into it
            shutil.rmtree(target)
        os.replace(extracted, target)
    return target
