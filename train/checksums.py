"""SHA-256 of the files read, checked against the folder's SHA256SUMS when it has one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from train.tables import REQUIRED_FILES, DataError

CHECKSUMS_FILE = "SHA256SUMS"
HASH_BLOCK_BYTES = 1 << 23


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(HASH_BLOCK_BYTES):
                digest.update(block)
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    return digest.hexdigest()


def verify_checksums(data_dir: Path, names=REQUIRED_FILES) -> dict[str, str]:
    """Hashes the files we read; checks them against SHA256SUMS when the directory has one."""
    data_dir = Path(data_dir)
    digests = {name: sha256_of(data_dir / name) for name in names}
    sums = data_dir / CHECKSUMS_FILE
    if sums.exists():
        expected = {}
        for number, line in enumerate(sums.read_text().splitlines(), start=1):
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DataError(sums, number, "expected '<sha256>  <file name>'")
            expected[parts[1].lstrip("*")] = parts[0]
        for name, digest in digests.items():
            if name in expected and expected[name] != digest:
                raise DataError(data_dir / name, None, f"SHA-256 {digest} does not match {CHECKSUMS_FILE}")
    return digests
