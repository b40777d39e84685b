"""The reference model: the blog's rating model (its part 3), keyed by movie id.

User and movie embeddings are looked up by row (``train/features.py``; the
served graph maps raw string ids to rows). Movies are keyed by ``movie_id``
rather than by title as in the reference: ML-100K has 1,682 movies but only
1,664 distinct titles, and keying by title would merge different films.

As in the reference, every user or movie without training ratings shares one
out-of-vocabulary embedding (row 0). The ``reference-basic`` and
``reference-tuned`` presets train this model; the default preset is the
two-stage recommender (``train/retrieval.py``, ``train/ranking.py``).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from train.config import TrainConfig
from train import distribute
from train.features import UNKNOWN, FeatureTables
from train.retrieval import lookup_table


class ReferenceModel(distribute.Model):
    """Predicts a user's rating of a movie from the two ids."""

    def __init__(self, features: FeatureTables, config: TrainConfig):
        super().__init__()
        self.user_trained = lookup_table(features.history.lengths() > 0, "user_trained")
        self.movie_trained = lookup_table(features.movie_count > 0, "movie_trained")
        self.user_model = tf.keras.layers.Embedding(features.n_user_rows, config.embedding_dim, name="user_model")
        self.movie_model = tf.keras.layers.Embedding(features.n_movie_rows, config.embedding_dim, name="movie_model")
        regularizer = tf.keras.regularizers.l2(config.l2) if config.l2 else None
        self.rating_model = tf.keras.Sequential(
            [tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=regularizer) for n in config.layer_sizes]
            + [tf.keras.layers.Dense(1, kernel_regularizer=regularizer)],
            name="rating_model",
        )
        self.task = tfrs.tasks.Ranking(
            # Keras refuses its implicit averaging under a distribution strategy. The task hands the
            # loss the whole batch as one example ([B] labels), so the "sum" is the batch's mean
            # squared error, as before (distribute_test.py checks it).
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Returns (user embedding, movie embedding, predicted rating [batch, 1])."""
        users, movies = features["user"], features["movie"]
        users = tf.where(tf.gather(self.user_trained, users), users, tf.cast(UNKNOWN, users.dtype))
        movies = tf.where(tf.gather(self.movie_trained, movies), movies, tf.cast(UNKNOWN, movies.dtype))
        user_embedding = self.user_model(users)
        movie_embedding = self.movie_model(movies)
        rating = self.rating_model(tf.concat([user_embedding, movie_embedding], axis=1))
        return user_embedding, movie_embedding, rating

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        # tfrs.models.Model.train_step adds the L2 penalties (self.losses) to this.
        _, _, rating = self(features)
        return self.task(labels=features["rating"], predictions=rating)
