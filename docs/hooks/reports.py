"""MkDocs hook: the images and files the generated reports link, served from where the reports put them.

EVALUATION.md, BENCHMARKS.md, TUNING.md and TUNING-CV.md are written at the repository root by `make evaluate`,
`make bench` / `make bench-scale` / `make bench-edge` and `make tune` / `make tune-cv` (export/tuning_report.py), and included into docs pages (evaluation.md, ...)
with pymdownx.snippets. Their image and file links are relative to the root (`evaluation.png`,
`tuning/....png`, the preset file `tuning/two-stage-u1.json`); the including pages sit at the top of docs/, so adding each referenced root file
to the site under the same relative path makes those links resolve, without copying anything into
docs/. A referenced image that does not exist is left out, and --strict then fails on the link.

EVALUATION.md and BENCHMARKS.md are in the repository, so their pages include them with
`--8<--` (a missing one fails the build). A report that a checkout may not have yet (TUNING.md:
a search takes an hour) is included by a marker line, `<!-- report-if-present: TUNING.md -->`,
which this hook replaces with the file's text, or with a line saying which command writes it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ("EVALUATION.md", "BENCHMARKS.md", "TUNING.md", "TUNING-CV.md")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # images and plain links
IF_PRESENT = re.compile(r"^<!-- report-if-present: (\S+) -->$", re.MULTILINE)
WRITERS = {"TUNING.md": "make tune", "TUNING-CV.md": "make tune-cv"}


def report_files(root: Path = ROOT) -> list[str]:
    """The relative paths of the files (images, preset files) that the reports present at ``root`` link, not pages."""
    found: list[str] = []
    for name in REPORTS:
        report = root / name
        if report.is_file():
            for path in LINK.findall(report.read_text(encoding="utf-8")):
                if "://" not in path and not path.startswith("#") and not path.endswith(".md") and path not in found:
                    found.append(path)
    return found


def on_files(files: Files, config, **kwargs) -> Files:
    for path in report_files():
        if (ROOT / path).is_file() and files.get_file_from_path(path) is None:
            files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def include_if_present(markdown: str, root: Path = ROOT) -> str:
    """Each ``<!-- report-if-present: NAME -->`` line replaced by the report's text, or a note."""

    def report(match: re.Match) -> str:
        name = match.group(1)
        path = root / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
        writer = WRITERS.get(name, "its command")
        return f"*`{name}` is not in this checkout yet: `{writer}` writes it at the repository root.*"

    return IF_PRESENT.sub(report, markdown)


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    return include_if_present(markdown)
