"""Ranking: predicts a user's rating of a movie from ids and side features (DCN-v2).

Retrieval picks a few hundred movies a user is likely to watch; this stage
scores how much they would like each one, and its prediction is what
``serving_default`` returns as ``predicted_rating``. The design is TFRS's
deep & cross network: the concatenated feature embeddings go through a
``tfrs.layers.dcn.Cross`` layer (explicit feature crosses) and a small MLP,
on top of a global mean and per-user / per-movie biases.

A user without training ratings gets no id embedding or bias (they are
zeroed, not random), so they are scored from their profile (age, gender,
occupation); likewise a movie without ratings from its genres and year.

Beside the network, a k-NN model with baselines (``train/neighbourhood.py``)
predicts from the user's own ratings of similar movies; the served rating
blends the two for a user and movie that have training ratings. The network
trains on its own (the neighbourhood model is fixed), and validation RMSE is
the blend's, so the epoch kept is the one that serves best.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from train import distribute, item_to_item
from train.features import FeatureTables
from train.neighbourhood import Neighbourhood
from train.retrieval import lookup_table


class RankingModel(distribute.Model):
    def __init__(self, features: FeatureTables, dim: int, layer_sizes: Sequence[int], l2: float, global_mean: float,
                 knn_neighbours: int = 0, knn_shrinkage: float = 100.0, knn_weight: float = 0.0, seed: int = 0,
                 fit_neighbourhood: bool = True):
        super().__init__()
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None

        def embedding(rows: int, width: int) -> tf.keras.layers.Embedding:
            return tf.keras.layers.Embedding(rows, width, embeddings_regularizer=regularizer)

        self.user_age = lookup_table(features.user_age, "user_age")
        self.user_gender = lookup_table(features.user_gender, "user_gender")
        self.user_occupation = lookup_table(features.user_occupation, "user_occupation")
        self.movie_genres = lookup_table(features.movie_genres, "movie_genres")
        self.movie_year = lookup_table(features.movie_year, "movie_year")
        self.user_trained = lookup_table((features.history.lengths() > 0).astype("float32"), "user_trained")
        self.movie_trained = lookup_table((features.movie_count > 0).astype("float32"), "movie_trained")
        # A variable, not a Python float, so the checkpoint carries it to export.
        self.global_mean = tf.Variable(global_mean, trainable=False, dtype=tf.float32, name="global_mean")

        self.user_embedding = embedding(features.n_user_rows, dim)
        self.movie_embedding = embedding(features.n_movie_rows, dim)
        self.user_bias = embedding(features.n_user_rows, 1)
        self.movie_bias = embedding(features.n_movie_rows, 1)
        self.age_embedding = embedding(int(features.user_age.max()) + 1, 8)
        self.gender_embedding = embedding(3, 4)
        self.occupation_embedding = embedding(features.n_occupations, 8)
        self.year_embedding = embedding(int(features.movie_year.max()) + 1, 8)
        self.genre_projection = tf.keras.layers.Dense(8, use_bias=False)
        self.cross = tfrs.layers.dcn.Cross(kernel_initializer="glorot_uniform")
        self.mlp = tf.keras.Sequential(
            [tf.keras.layers.Dense(n, activation="relu", kernel_regularizer=regularizer) for n in layer_sizes]
            + [tf.keras.layers.Dense(1, kernel_regularizer=regularizer)],
            name="ranking_mlp",
        )
        self.neighbourhood, self.knn_weight = None, knn_weight
        if knn_neighbours and knn_weight and features.n_movie_rows - 1 <= item_to_item.MAX_MOVIES:
            self.neighbourhood = Neighbourhood(features.history_indptr, features.history_movies, features.history_ratings,
                                               features.n_movie_rows, knn_neighbours, knn_shrinkage, seed,
                                               fit=fit_neighbourhood, name="neighbourhood")
        self.task = tfrs.tasks.Ranking(
            # Keras refuses its implicit averaging under a distribution strategy. The task hands the
            # loss the whole batch as one example ([B] labels), so the "sum" is the batch's mean
            # squared error, as before (distribute_test.py checks it).
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """Predicted rating, [B]: the network's, blended with the neighbourhood model's where both know the pair."""
        rating = self.network_rating(features)
        if self.neighbourhood is None:
            return rating
        users, movies = features["user"], features["movie"]
        weight = self.knn_weight * tf.gather(self.user_trained, users) * tf.gather(self.movie_trained, movies)
        return rating + weight * (self.neighbourhood(users, movies) - rating)

    def network_rating(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """The network's predicted rating, [B]."""
        users, movies = features["user"], features["movie"]
        user_known = tf.gather(self.user_trained, users)[:, None]
        movie_known = tf.gather(self.movie_trained, movies)[:, None]
        x = tf.concat(
            [
                self.user_embedding(users) * user_known,
                self.movie_embedding(movies) * movie_known,
                self.age_embedding(tf.gather(self.user_age, users)),
                self.gender_embedding(tf.gather(self.user_gender, users)),
                self.occupation_embedding(tf.gather(self.user_occupation, users)),
                self.year_embedding(tf.gather(self.movie_year, movies)),
                self.genre_projection(tf.gather(self.movie_genres, movies)),
            ],
            axis=1,
        )
        bias = self.user_bias(users) * user_known + self.movie_bias(movies) * movie_known
        return tf.squeeze(self.mlp(self.cross(x)) + bias, axis=-1) + self.global_mean

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        # The network trains alone; evaluation scores what is served.
        predictions = self.network_rating(features) if training else self(features)
        return self.task(labels=features["rating"], predictions=predictions)
