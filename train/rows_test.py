"""Rows as training batches: every row once per pass, a new seeded order each pass."""

import numpy as np

from train.rows import Rows


def test_rows_dataset_batches_every_row_once_and_reshuffles_each_epoch():
    n = 1000
    rows = Rows(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) % 7,
                np.ones(n, np.float32), np.zeros(n, np.int64))
    in_order = [b["user"].numpy() for b in rows.dataset(300)]
    assert [len(b) for b in in_order] == [300, 300, 300, 100]
    assert np.concatenate(in_order).tolist() == list(range(n))
    shuffled = rows.dataset(300, shuffle_seed=5, extra_column=np.arange(n) * 2)
    assert shuffled.cardinality().numpy() == 4
    epochs = [[b for b in shuffled] for _ in range(2)]
    users = [np.concatenate([b["user"].numpy() for b in epoch]) for epoch in epochs]
    for epoch, order in zip(epochs, users):
        assert sorted(order.tolist()) == list(range(n))  # each row exactly once per epoch
        assert np.concatenate([b["extra_column"].numpy() for b in epoch]).tolist() == (order * 2).tolist()
    assert users[0].tolist() != users[1].tolist()  # a new order every epoch
    again = np.concatenate([b["user"].numpy() for b in rows.dataset(300, shuffle_seed=5, extra_column=np.arange(n) * 2)])
    assert again.tolist() == users[0].tolist()  # the same seed, the same order


def test_of_keys_a_part_by_feature_table_rows_and_table_keeps_the_ratings_asked_for(fixture_dir):
    from train import data

    movielens = data.load(fixture_dir)
    ratings, part = movielens.ratings, np.arange(0, len(movielens.ratings.user), 3)
    rows = Rows.of(movielens, part)
    assert rows.user.tolist() == (ratings.user[part] + 1).tolist()  # row 0 is the unknown id
    assert rows.movie.tolist() == (ratings.movie[part] + 1).tolist()
    shape = (len(movielens.users) + 1, len(movielens.movies) + 1)
    liked = rows.table(*shape, min_rating=4.0)
    assert liked.contains(rows.user, rows.movie).tolist() == (rows.rating >= 4.0).tolist()
    other = Rows.of(movielens, np.arange(1, len(ratings.user), 3))
    both = rows + other
    assert len(both.user) == len(part) + len(other.user) and both.timestamp[: len(part)].tolist() == rows.timestamp.tolist()
