"""EVALUATION.md from measured results (no training here: ``measure`` is replaced by a recorder).

The default preset's rows keep their shape; another preset, such as a study's
preset file, gets rows beside it, and a tuned preset's rows say which one is
clean (only the split its study tuned on).
"""

from __future__ import annotations

import json

from export import evaluation_report
from train.config import DEFAULT_PRESET


def _result(split: str, preset: str, recall: float, tuned_on: str | None = None) -> dict:
    figures = {"recall_at_10": recall, "ndcg_at_10": recall + 0.01, "coverage_at_10": 300, "test_rmse": 0.91}
    baselines = {"ease": {"recall_at_10": 0.43, "ndcg_at_10": 0.44, "coverage_at_10": 307},
                 "popularity": {"recall_at_10": 0.24, "ndcg_at_10": 0.25, "coverage_at_10": 50},
                 "global_mean": {"test_rmse": 1.13}}
    new_users = {"recommend_from_ratings": {"recall_at_10": 0.28, "ndcg_at_10": 0.29, "coverage_at_10": 170, "users_evaluated": 455},
                 "popularity (training part)": {"recall_at_10": 0.24, "ndcg_at_10": 0.24, "coverage_at_10": 52, "users_evaluated": 455}}
    return {"split": split, "preset": preset, "tuned_on": tuned_on, "model": figures, "baselines": baselines,
            "blend_weight": 0.1, "new_users": new_users, "train_and_evaluate_seconds": 40.0}


def test_the_default_preset_alone_keeps_its_rows(tmp_path):
    results = [_result("u1", DEFAULT_PRESET, 0.4168), _result("u2", DEFAULT_PRESET, 0.39)]
    text = evaluation_report.report(results, tmp_path / "ml-100k", "evaluation.png", 60)
    assert f"| u1…u5 (mean ± sd, 2 folds) | **{DEFAULT_PRESET} (served)** | **0.403 ± 0.019** |" in text
    assert "| u1…u5 (mean ± sd, 2 folds) | EASE (λ=300) | 0.430 ± 0.000 | 0.440 ± 0.000 | 307 ± 0 | |" in text
    assert f"| u1 | {DEFAULT_PRESET} | 0.4168 |" in text
    assert "| u1 | popularity (training part) | 0.2400 |" in text and "tuned on" not in text


def test_a_tuned_preset_is_clean_only_on_the_split_its_study_tuned_on(tmp_path):
    results = [_result(s, DEFAULT_PRESET, 0.40) for s in ("u1", "u2", "seed-temporal")]
    results += [_result(s, "two-stage-u1", 0.45, tuned_on="u1") for s in ("u1", "u2", "seed-temporal")]
    text = evaluation_report.report(results, tmp_path / "ml-100k", "evaluation.png", 60)
    assert "| u1…u5 (mean ± sd, 2 folds) | two-stage-u1 (tuned on u1: not clean except u1) | 0.450 ± 0.000 |" in text
    assert "| seed-temporal | two-stage-u1 (tuned on u1: not clean) | 0.450 |" in text
    assert "its u1 row is clean" in text
    assert text.count("| seed-temporal | EASE (λ=300) |") == 1  # baselines once per split, not once per preset
    assert "| u1 | two-stage-u1: recommend_from_ratings | 0.2800 |" in text
    assert text.count("| u1 | popularity (training part) |") == 1
    only_u1 = evaluation_report.report([r for r in results if r["split"] == "u1"], tmp_path, "e.png", 60)
    assert "| u1 | two-stage-u1 (tuned on u1: clean) |" in only_u1


def test_the_default_preset_says_whether_a_study_chose_it_and_which_rows_are_clean(tmp_path, monkeypatch):
    results = [_result(s, DEFAULT_PRESET, 0.40) for s in ("u1", "u2", "seed-temporal")]
    monkeypatch.delitem(evaluation_report.PRESET_TUNED_BY, DEFAULT_PRESET, raising=False)
    hand_set = evaluation_report.report(results, tmp_path, "e.png", 60)
    assert f"`{DEFAULT_PRESET}`'s values were set by hand" in hand_set and "none of its rows is clean" in hand_set
    # A study that kept its start (trial 0, the hand-set values) chose nothing: still no clean row.
    monkeypatch.setitem(evaluation_report.PRESET_TUNED_BY, DEFAULT_PRESET, {"study": "two-stage-u1", "split": "u1",
                                                                             "trial": 0})
    assert evaluation_report.tuned_on(DEFAULT_PRESET) is None
    kept = evaluation_report.report(results, tmp_path, "e.png", 60)
    assert f"`{DEFAULT_PRESET}` holds the values of study `two-stage-u1`'s best trial, trial 0" in kept
    assert "none of its rows is clean" in kept and ": clean" not in kept
    monkeypatch.setitem(evaluation_report.PRESET_TUNED_BY, DEFAULT_PRESET, {"study": "two-stage-u1", "split": "u1",
                                                                             "trial": 7})
    assert evaluation_report.tuned_on(DEFAULT_PRESET) == "u1"
    results = [_result(s, DEFAULT_PRESET, 0.40, tuned_on="u1") for s in ("u1", "u2", "seed-temporal")]
    text = evaluation_report.report(results, tmp_path, "e.png", 60)
    assert f"`{DEFAULT_PRESET}` holds the values of study `two-stage-u1`'s trial 7" in text and "its u1 row is clean" in text
    assert f"| u1…u5 (mean ± sd, 2 folds) | **{DEFAULT_PRESET} (served; tuned on u1: not clean except u1)** |" in text
    assert f"| seed-temporal | **{DEFAULT_PRESET} (served; tuned on u1: not clean)** |" in text
    only_u1 = evaluation_report.report(results[:1], tmp_path, "e.png", 60)
    assert f"| u1 | **{DEFAULT_PRESET} (served; tuned on u1: clean)** |" in only_u1


def test_every_preset_is_measured_on_every_split(tmp_path, fixture_dir, monkeypatch):
    preset_file = tmp_path / "tuning" / "two-stage-u1.json"
    preset_file.parent.mkdir()
    preset_file.write_text(json.dumps({"values": {"retrieval_epochs": 3}, "tuned_by": {"split": "u1"}}))
    calls = []

    def measure(split, data_dir, work, config):
        calls.append((config.preset, split, config.retrieval_epochs))
        label = evaluation_report.preset_label(config.preset)
        return _result(split, label, 0.4, evaluation_report.tuned_on(config.preset))

    monkeypatch.setattr(evaluation_report, "measure", measure)
    monkeypatch.setattr(evaluation_report, "_plot", lambda results, path: path.write_text("plot"))
    out = tmp_path / "EVALUATION.md"
    argv = ["--data-dir", str(fixture_dir), "--splits", "u1", "seed-temporal", "--work-dir", str(tmp_path / "work"),
            "--out", str(out), "--preset", DEFAULT_PRESET, str(preset_file)]
    assert evaluation_report.main(argv) == 0
    default_epochs = evaluation_report._config(DEFAULT_PRESET, "u1").retrieval_epochs
    assert calls == [(DEFAULT_PRESET, "u1", default_epochs), (DEFAULT_PRESET, "seed-temporal", default_epochs),
                     (str(preset_file), "u1", 3), (str(preset_file), "seed-temporal", 3)]
    assert "| u1 | two-stage-u1 (tuned on u1: clean) |" in out.read_text()
