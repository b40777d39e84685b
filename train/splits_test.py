"""Named splits: the reference's time-range split and MovieLens' own folds."""

import numpy as np
import pytest

from train import data, splits


def test_seed_temporal_boundaries():
    t = np.array([0, 60, 61, 80, 81, 100])
    train, val, test = splits.seed_temporal(t)
    assert list(train) == [0, 1] and list(val) == [2, 3] and list(test) == [4, 5]


def test_seed_temporal_exact_rows_on_ml100k(movielens_dir):
    split = splits.make(splits.SEED_TEMPORAL, data.load(movielens_dir))
    assert split.rows() == {"train": 65_336, "val": 15_778, "test": 18_886}


def test_seed_temporal_test_is_mostly_cold_start(movielens_dir):
    ml = data.load(movielens_dir)
    split = splits.make(splits.SEED_TEMPORAL, ml)
    unseen = np.mean(~np.isin(ml.ratings.user[split.test], ml.ratings.user[split.train]))
    assert 0.85 < unseen < 0.95  # the README's 90.3%


def test_fold_rows_are_the_files_lines(movielens_dir):
    ml = data.load(movielens_dir)
    split = splits.make("u1", ml)
    assert split.rows() == {"train": 72_000, "val": 8_000, "test": 20_000}
    r = ml.ratings
    lines = (movielens_dir / "u1.test").read_text().splitlines()
    assert len(lines) == len(split.test)
    for row, line in zip(split.test, lines):  # test rows keep the file's order
        assert "\t".join([ml.users.ids[r.user[row]], ml.movies.ids[r.movie[row]], f"{r.rating[row]:g}", str(r.timestamp[row])]) == line
    # The five test files partition u.data.
    tests = np.concatenate([splits.make(fold, ml).test for fold in splits.FOLDS])
    assert np.array_equal(np.sort(tests), np.arange(len(ml)))


def test_fold_split_partitions_base_and_test(fixture_dir):
    ml = data.load(fixture_dir)
    split = splits.make("u1", ml, seed=7)
    assert len(split.test) == len(ml) // 5
    everything = np.concatenate([split.train, split.val, split.test])
    assert len(np.unique(everything)) == len(ml)
    assert len(split.val) == round(0.1 * (len(split.train) + len(split.val)))
    again = splits.make("u1", ml, seed=7)
    assert np.array_equal(split.val, again.val)


def test_fold_line_not_in_u_data(fixture_dir, tmp_path):
    import shutil

    directory = tmp_path / "ml"
    shutil.copytree(fixture_dir, directory)
    with (directory / "u2.test").open("a") as f:
        f.write("1\t2\t3\t1\n")
    ml = data.load(directory)
    n = sum(1 for _ in open(directory / "u2.test"))
    with pytest.raises(data.DataError, match=rf"u2\.test:{n}: rating .* is not in u\.data"):
        splits.make("u2", ml)


def test_unknown_split(fixture_dir):
    with pytest.raises(ValueError, match="unknown split 'u9'"):
        splits.make("u9", data.load(fixture_dir))


def test_fold_rating_disagreeing_with_u_data(fixture_dir, tmp_path):
    import shutil

    directory = tmp_path / "ml"
    shutil.copytree(fixture_dir, directory)
    lines = (directory / "u3.test").read_text().splitlines()
    u, m, r, t = lines[0].split("\t")
    lines[0] = "\t".join([u, m, str(int(r) % 5 + 1), t])
    (directory / "u3.test").write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=r"u3\.test:1: rating \d differs from u\.data's"):
        splits.make("u3", data.load(directory))


def test_fold_repeated_line(fixture_dir, tmp_path):
    import shutil

    directory = tmp_path / "ml"
    shutil.copytree(fixture_dir, directory)
    first = (directory / "u4.base").read_text().splitlines()[0]
    with (directory / "u4.base").open("a") as f:
        f.write(first + "\n")
    n = sum(1 for _ in open(directory / "u4.base"))
    with pytest.raises(data.DataError, match=rf"u4\.base:{n}: repeats line 1"):
        splits.make("u4", data.load(directory))


def test_fold_base_and_test_must_be_disjoint(fixture_dir, tmp_path):
    import shutil

    directory = tmp_path / "ml"
    shutil.copytree(fixture_dir, directory)
    leaked = (directory / "u5.test").read_text().splitlines()[0]
    with (directory / "u5.base").open("a") as f:
        f.write(leaked + "\n")
    u, m = leaked.split("\t")[:2]
    with pytest.raises(data.DataError, match=rf"u5\.test: 1 ratings are also in u5\.base, e\.g\. user {u} movie {m}$"):
        splits.make("u5", data.load(directory))


def _fold_copy(fixture_dir, tmp_path):
    import shutil

    directory = tmp_path / "ml"
    shutil.copytree(fixture_dir, directory)
    return directory


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda u, m, r, t: [u, m, r, str(int(t) + 1)], r"rating \['{u}', '{m}'\] at \d+ is not in u\.data"),
        (lambda u, m, r, t: ["999", m, r, t], r"rating \['999', '{m}'\] at {t} is not in u\.data"),
        (lambda u, m, r, t: [u, "999", "x", t], r"rating \['{u}', '999'\] at {t} is not in u\.data"),
        (lambda u, m, r, t: [u, m, "x", t], r"rating 'x' is not an integer"),
        (lambda u, m, r, t: ["0" + u, m, r, t], r"user id '0{u}' is not an integer"),
        (lambda u, m, r, t: [u, m, r], r"expected 4 '\\t'-separated fields, found 3"),
    ],
)
def test_fold_line_problems(fixture_dir, tmp_path, edit, message):
    directory = _fold_copy(fixture_dir, tmp_path)
    path = directory / "u1.test"
    lines = path.read_text().splitlines()
    u, m, r, t = lines[6].split("\t")
    lines[6] = "\t".join(edit(u, m, r, t))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=rf"u1\.test:7: " + message.format(u=u, m=m, t=t)):
        splits.make("u1", data.load(directory))


def test_read_pairs_returns_int64_rows_in_file_order(fixture_dir, tmp_path):
    directory = _fold_copy(fixture_dir, tmp_path)
    ml = data.load(directory)
    lines = (directory / "u.data").read_text().splitlines()
    (directory / "picked").write_text("".join(lines[i] + "\n" for i in (5, 0, 899, 17)))
    rows = data.read_pairs(directory / "picked", ml)
    assert rows.dtype == np.int64 and list(rows) == [5, 0, 899, 17]
    (directory / "empty").write_text("")
    assert data.read_pairs(directory / "empty", ml).shape == (0,)
