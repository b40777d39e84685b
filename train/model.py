"""The ranking model: the reference architecture, keyed by movie id.

User and movie embeddings are looked up from raw string ids inside the model
(StringLookup + Embedding), so the exported SavedModel takes the ids clients
already have. Movies are keyed by ``movie_id`` rather than by title as in the
reference: ML-100K has 1,682 movies but only 1,664 distinct titles, and keying
by title would merge different films.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from train.config import TrainConfig


def _embedding(vocabulary: Sequence[str], dim: int, name: str) -> tf.keras.Sequential:
    # One out-of-vocabulary index (0): users and movies not seen in training share it.
    return tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None, num_oov_indices=1),
            tf.keras.layers.Embedding(len(vocabulary) + 1, dim),
        ],
        name=name,
    )


class RatingModel(tfrs.models.Model):
    """Predicts a user's rating of a movie from the two ids."""

    def __init__(self, user_ids: Sequence[str], movie_ids: Sequence[str], config: TrainConfig):
        super().__init__()
        self.user_model = _embedding(user_ids, config.embedding_dim, "user_model")
        self.movie_model = _embedding(movie_ids, config.embedding_dim, "movie_model")
        regularizer = tf.keras.regularizers.l2(config.l2) if config.l2 else None
        self.rating_model = tf.keras.Sequential(
            [tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=regularizer) for n in config.layer_sizes]
            + [tf.keras.layers.Dense(1, kernel_regularizer=regularizer)],
            name="rating_model",
        )
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    @property
    def user_lookup(self) -> tf.keras.layers.StringLookup:
        """User id → embedding row; row 0 is the out-of-vocabulary bucket."""
        return self.user_model.layers[0]

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Returns (user embedding, movie embedding, predicted rating [batch, 1])."""
        user_embedding = self.user_model(features["user_id"])
        movie_embedding = self.movie_model(features["movie_id"])
        rating = self.rating_model(tf.concat([user_embedding, movie_embedding], axis=1))
        return user_embedding, movie_embedding, rating

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        # tfrs.models.Model.train_step adds the L2 penalties (self.losses) to this.
        _, _, rating = self(features)
        return self.task(labels=features["user_rating"], predictions=rating)
