from pathlib import Path

from common.versions import list_versions


def test_only_integer_directories_are_versions(tmp_path: Path):
    for name in ("1", "12", ".13-staging", "notes", "2a"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert sorted(list_versions(tmp_path)) == [1, 12]
    assert list_versions(tmp_path / "missing") == {}
