"""``Rows``: one part of a split (train, validation or test) as the arrays the models and the evaluation read.

A split (``train/splits.py``) is row indices into the ratings table; everything
downstream wants the part itself, keyed the way the feature tables are (user and
movie row 0 is the unknown id, so the dataset's indices move up by one). ``Rows.of``
does that conversion once, for the trainer, the tuning trials, the export gate and
the SavedModel evaluation alike, so none of them can get the offset wrong; from there
a part becomes training batches (``dataset``) or the interaction table the top-k
protocol reads (``table``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from train import data as movielens_data
from train import distribute
from train.interactions import Interactions


@dataclasses.dataclass(frozen=True)
class Rows:
    """One part of the split as model inputs: user and movie rows (row 0 = unknown), ratings, times."""

    user: np.ndarray
    movie: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    @classmethod
    def of(cls, movielens: movielens_data.MovieLens, rows: np.ndarray) -> "Rows":
        r = movielens.ratings
        return cls(r.user[rows].astype(np.int64) + 1, r.movie[rows].astype(np.int64) + 1,
                   r.rating[rows].astype(np.float32), r.timestamp[rows])

    def __add__(self, other: "Rows") -> "Rows":
        return Rows(*(np.concatenate([a, b]) for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def dataset(self, batch_size: int, shuffle_seed: int | None = None, **extra: np.ndarray) -> tf.data.Dataset:
        """Batches of ``batch_size`` rows: in order, or shuffled anew on every pass (epoch) from ``shuffle_seed``.

        Whole batches are sliced out of the columns, never one row at a time:
        a pass draws one permutation of the row indices (a stateless shuffle
        seeded by ``shuffle_seed`` and a per-pass draw, so runs repeat) and
        gathers each batch with it. Element-wise ``from_tensor_slices`` +
        ``shuffle`` cost ~8 µs a row and a buffer of every row (35 s and GBs
        per epoch at 2.5M rows); this costs a gather per batch.
        """
        columns = {name: tf.constant(values) for name, values in
                   {"user": self.user, "movie": self.movie, "rating": self.rating, **extra}.items()}
        n = len(self.user)
        n_batches = -(-n // batch_size)

        def batches(order: tf.Tensor | None) -> tf.data.Dataset:
            def batch(i: tf.Tensor) -> dict[str, tf.Tensor]:
                rows = tf.range(i * batch_size, tf.minimum((i + 1) * batch_size, n))
                if order is not None:
                    rows = tf.gather(order, rows)
                return {name: tf.gather(column, rows) for name, column in columns.items()}

            return tf.data.Dataset.range(n_batches).map(batch)

        if shuffle_seed is None:
            ds = batches(None)
        else:
            # One int64 per pass, a new one each time the dataset is iterated (each epoch), from the seed.
            draws = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1)
            ds = draws.flat_map(lambda draw: batches(tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(shuffle_seed, tf.int64), draw]))))
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(tf.data.AUTOTUNE)
        return distribute.shard_by_data(ds)  # several workers: each its share of every batch

    def table(self, n_user_rows: int, n_movie_rows: int, min_rating: float = 0.0) -> Interactions:
        keep = self.rating >= min_rating
        return Interactions.from_pairs(self.user[keep], self.movie[keep], n_user_rows, n_movie_rows)
