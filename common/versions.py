"""The versioned model layout TF Serving reads: ``<base_path>/<integer>/``.

TF Serving treats every integer-named subdirectory of a model's base path as a
version and ignores everything else, which is what lets the exporter stage a
version under a hidden name and rename it into place. The exporter, the local
server and the load-test helpers all ask this one function.
"""

from __future__ import annotations

import re
from pathlib import Path

_VERSION_DIR = re.compile(r"[0-9]+")


def list_versions(base_path: Path) -> dict[int, Path]:
    """Integer-named subdirectories of ``base_path``; anything else (".3-staging", "notes") is ignored.

    A missing ``base_path`` has no versions, which is what the exporter (first
    version is 1) wants. A server must not read it as "unload everything": it
    checks that the directory exists before acting on an empty answer, as TF
    Serving's file-system source does (serving.model_manager.ModelManager.poll).
    """
    try:
        entries = list(Path(base_path).iterdir())
    except FileNotFoundError:
        return {}
    return {int(p.name): p for p in entries if _VERSION_DIR.fullmatch(p.name) and p.is_dir()}
