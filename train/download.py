"""Finds the MovieLens files, downloading them from GroupLens when no copy is at hand.

The dataset's licence forbids redistribution, so the repository never contains
it: a user's first run fetches the official zip, checks its MD5 against the one
GroupLens publishes, and extracts it atomically into a cache directory.

Any of GroupLens' sets can be asked for by name (``--dataset``: ml-100k, ml-1m,
ml-20m, ml-25m, ml-32m, ml-latest-small), each read in its own file layout
(``train/layouts.py``). Its zip is ``<name>.zip`` and its published checksum
``<name>.zip.md5`` beside it; ml-100k's MD5 is also pinned here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from train import layouts

BASE_URL = "https://files.grouplens.org/datasets/movielens"
DATASETS = ("ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small")
DEFAULT_DATASET = "ml-100k"
URL = f"{BASE_URL}/ml-100k.zip"
MD5 = "0e33842e24a9c977be4e0107933c0723"
PINNED_MD5 = {"ml-100k": MD5}  # the others: the <name>.zip.md5 GroupLens publishes beside the zip
ENV_VAR = "MOVIELENS_DIR"
ZIP_MEMBER_DIR = "ml-100k"  # each zip holds one folder named after its set


class DataUnavailable(RuntimeError):
    """No local copy of the data and the download failed."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "movielens"


def dataset_url(dataset: str) -> str:
    return f"{BASE_URL}/{dataset}.zip"


def layout_of(dataset: str) -> layouts.Layout:
    """The file layout a GroupLens set comes in."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return layouts.BY_NAME[{"ml-100k": layouts.LAYOUT_100K, "ml-1m": layouts.LAYOUT_1M}.get(dataset, layouts.LAYOUT_CSV)]


def has_files(directory: Path, dataset: str | None = None) -> bool:
    return not missing_files(directory, dataset)


def missing_files(directory: Path, dataset: str | None = None) -> list[str]:
    """The files of ``dataset``'s layout that ``directory`` lacks. Without a dataset, any complete
    layout will do ([]), and otherwise MovieLens 100K's missing files are named."""
    directory = Path(directory)
    if dataset is None and layouts.find(directory) is not None:
        return []
    return [name for name in layout_of(dataset or DEFAULT_DATASET).files if not (directory / name).is_file()]


def _needs(dataset: str | None) -> str:
    if dataset is not None:
        return f"{dataset} needs {', '.join(layout_of(dataset).files)}"
    return "; ".join(f"{layout.what} needs {', '.join(layout.files)}" for layout in layouts.LAYOUTS)


def locate(data_dir: str | Path | None = None, cache_dir: Path | None = None, url: str | None = None,
           md5: str | None = None, dataset: str | None = None) -> Path:
    """Returns a directory holding a MovieLens set (``dataset``'s layout, or any layout if None).

    An explicit ``data_dir`` (``--data-dir``) must hold it: otherwise DataUnavailable
    names the directory and the missing files, and nothing else is tried. Without it,
    looks at ``$MOVIELENS_DIR`` and the cache (``<cache>/<dataset>``), and downloads
    ``dataset`` (default ml-100k) into the cache when neither has the files.
    """
    if data_dir:
        data_dir = Path(data_dir)
        missing = missing_files(data_dir, dataset)
        if missing:
            state = "has no" if data_dir.is_dir() else "is not a directory: no" if data_dir.exists() else "does not exist: no"
            raise DataUnavailable(
                f"--data-dir {data_dir} {state} {', '.join(missing)} ({_needs(dataset)}; "
                f"leave --data-dir out to try ${ENV_VAR}, the cache, then a download)"
            )
        return data_dir
    name = dataset or DEFAULT_DATASET
    layout_of(name)  # a known set
    url = url or dataset_url(name)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    candidates = [
        (f"${ENV_VAR}", os.environ.get(ENV_VAR)),
        ("cache", cache_dir / name),
    ]
    for label, candidate in candidates:
        if candidate and has_files(Path(candidate), dataset):
            return Path(candidate)
        if candidate and label != "cache":
            # Set but unusable: say so rather than silently downloading.
            missing = ", ".join(missing_files(Path(candidate), dataset))
            print(f"{label} {candidate} lacks {missing}; looking further", file=sys.stderr)
    try:
        return download(cache_dir, url=url, md5=md5, dataset=name)
    except (OSError, ValueError) as e:
        looked = "\n".join(f"  {label}: {path or '(not set)'}" for label, path in candidates)
        raise DataUnavailable(
            f"MovieLens {name} not found and the download failed ({e}).\n"
            f"Looked for {', '.join(layout_of(name).files)} in:\n{looked}\n"
            "Provide the data one of three ways:\n"
            f"  1. python -m train --data-dir /path/to/{name}\n"
            f"  2. export {ENV_VAR}=/path/to/{name}\n"
            f"  3. unzip {url} into {cache_dir} (or rerun with network access)"
        ) from e


def published_md5(url: str) -> str:
    """The MD5 published beside a zip, in ``<url>.md5`` (``<md5>  <name>`` or ``MD5 (<name>) = <md5>``)."""
    with urllib.request.urlopen(url + ".md5", timeout=60) as response:
        text = response.read(1 << 12).decode("latin-1")
    found = {digest.lower() for digest in re.findall(r"\b[0-9a-fA-F]{32}\b", text)}
    if len(found) != 1:
        raise ValueError(f"{url}.md5 does not hold one MD5 checksum")
    return found.pop()


def download(cache_dir: Path, url: str | None = None, md5: str | None = None, dataset: str | None = None) -> Path:
    """Downloads and verifies ``dataset``'s zip, then renames its extracted folder into ``cache_dir/<dataset>``.

    The MD5 is ``md5``, else the pinned one (ml-100k), else the one published beside the zip.
    """
    name = dataset or DEFAULT_DATASET
    url = url or dataset_url(name)
    md5 = md5 or PINNED_MD5.get(name) or published_md5(url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / name
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB, {done * 100 // total}%" if total else f"{done / 1e6:.1f} MB"
                print(f"\rdownloading {url}: {size}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}")
        with zipfile.ZipFile(archive) as z:
            z.extractall(Path(tmp) / "extracted")
        extracted = Path(tmp) / "extracted" / name
        if not has_files(extracted, name):
            raise ValueError(f"{url} does not contain {name}/ with {', '.join(layout_of(name).files)}")
        if target.exists():  # a partial copy from an older layout; the rename below must not merge into it
            shutil.rmtree(target)
        os.replace(extracted, target)
    return target
