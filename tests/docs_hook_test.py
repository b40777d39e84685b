"""The docs hook (docs/hooks/reports.py) serves the files the generated reports link (images, preset files), not pages or URLs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "reports_hook", Path(__file__).resolve().parent.parent / "docs" / "hooks" / "reports.py")
reports = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reports)


def test_the_files_a_report_links_are_listed_once_and_pages_anchors_and_urls_are_not(tmp_path):
    (tmp_path / "TUNING.md").write_text(
        "![history](tuning/s-history.png)\npreset [`tuning/s.json`](tuning/s.json), again [here](tuning/s.json)\n"
        "[Evaluation](evaluation.md) [above](#top) [Optuna](https://optuna.org)\n")
    (tmp_path / "EVALUATION.md").write_text("![Recall@10 per split](evaluation.png)\n")
    assert reports.report_files(tmp_path) == ["evaluation.png", "tuning/s-history.png", "tuning/s.json"]


def test_a_report_not_written_yet_is_replaced_by_the_command_that_writes_it(tmp_path):
    page = "# Tuning\n<!-- report-if-present: TUNING.md -->\n"
    assert "`make tune` writes it" in reports.include_if_present(page, tmp_path)
    (tmp_path / "TUNING.md").write_text("# Tuning (generated)\n")
    assert reports.include_if_present(page, tmp_path) == "# Tuning\n# Tuning (generated)\n\n"
