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
    assert 0.85 < unseen < 0.95  # 90.3% on ML-100K


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


# --- leave-last-out and random: every layout -------------------------------------------------


def _partition(split, n):
    everything = np.concatenate([split.train, split.val, split.test])
    assert len(everything) == n and np.array_equal(np.sort(everything), np.arange(n))
    for part in (split.train, split.val, split.test):
        assert part.dtype == np.int64 and np.array_equal(part, np.sort(part))


def test_leave_last_out_small():
    user = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    time = np.array([5, 1, 9, 3, 4, 7, 7, 2, 8, 3])
    train, val, test = splits.leave_last_out(user, time)
    # user 0: times 5, 1, 9, 3 -> latest row 2 (9), then row 0 (5); user 1 has 2 ratings: all train;
    # user 2: latest row 8 (8), then the tie at 7 goes to the later row (6).
    assert list(test) == [2, 8] and list(val) == [0, 6] and list(train) == [1, 3, 4, 5, 7, 9]


def test_leave_last_out_latest_rating_is_test(fixture_dir):
    ml = data.load(fixture_dir)
    split = splits.make(splits.LEAVE_LAST_OUT, ml)
    _partition(split, len(ml))
    r = ml.ratings
    counts = np.bincount(r.user, minlength=len(ml.users))
    eligible = np.flatnonzero(counts >= splits.LEAVE_LAST_OUT_MIN_RATINGS)
    assert sorted(r.user[split.test]) == sorted(r.user[split.val]) == list(eligible)  # one each per user
    for row in split.test:
        mine = r.user == r.user[row]
        assert r.timestamp[row] == r.timestamp[mine].max()
    for row in split.val:
        mine = np.flatnonzero(r.user == r.user[row])
        assert r.timestamp[row] <= r.timestamp[np.intersect1d(mine, split.test)][0]
        assert r.timestamp[row] >= r.timestamp[np.intersect1d(mine, split.train)].max()
    assert np.array_equal(split.test, splits.make(splits.LEAVE_LAST_OUT, ml).test)


def test_leave_last_out_keeps_short_histories_in_train():
    train, val, test = splits.leave_last_out(np.array([0, 0, 1, 2, 2, 2]), np.array([1, 2, 3, 4, 5, 6]))
    assert list(train) == [0, 1, 2, 3] and list(val) == [4] and list(test) == [5]
    empty = splits.leave_last_out(np.zeros(0, np.int32), np.zeros(0, np.int64))
    assert all(len(part) == 0 for part in empty)


def test_random_split_is_seeded_80_10_10(fixture_dir):
    ml = data.load(fixture_dir)
    split = splits.make(splits.RANDOM, ml, seed=3)
    _partition(split, len(ml))
    assert split.rows() == {"train": 720, "val": 90, "test": 90}
    assert np.array_equal(split.test, splits.make(splits.RANDOM, ml, seed=3).test)
    assert not np.array_equal(split.test, splits.make(splits.RANDOM, ml, seed=4).test)
    train, val, test = splits.random_split(7, seed=0)
    assert (len(train), len(val), len(test)) == (6, 1, 0)


def test_leave_last_out_on_ml100k(movielens_dir):
    split = splits.make(splits.LEAVE_LAST_OUT, data.load(movielens_dir))
    assert split.rows() == {"train": 100_000 - 2 * 943, "val": 943, "test": 943}  # every user rated >= 20


def test_folds_are_100k_only(tmp_path):
    from testing.movielens_fixture import write_csv_fixture

    ml = data.load(write_csv_fixture(tmp_path / "csv"))
    with pytest.raises(data.DataError, match=r"split u2 is one of MovieLens 100K's own fold files .* csv layout, which has none: "
                                             r"use seed-temporal, leave-last-out or random"):
        splits.make("u2", ml)
    for name in (splits.SEED_TEMPORAL, splits.LEAVE_LAST_OUT, splits.RANDOM):
        _partition(splits.make(name, ml), len(ml))
