"""The served graph: the trained model wrapped in the public signatures.

Everything a request needs lives inside the SavedModel: the id lookups, the
embeddings, the catalogue with titles, and each user's training history for
excluding already-rated movies. Clients send raw string ids and nothing else,
and the graph uses only core TensorFlow ops so the stock TF Serving binary can
host it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from common import contract
from train.model import RatingModel

class ServingModule(tf.Module):
    def __init__(self, model: RatingModel, vocabulary: dict, model_card_json: str):
        super().__init__()
        self.model = model
        user_ids: list[str] = vocabulary["user_ids"]
        movie_ids: list[str] = vocabulary["movie_ids"]
        self.catalogue_size = len(movie_ids)
        longest_history = max((len(v) for v in vocabulary["rated"].values()), default=0)
        # Every returned row holds only unrated movies, so k is capped at what
        # the most prolific user has left to see.
        self.max_k = self.catalogue_size - longest_history

        # Row 0 is the out-of-vocabulary user (nothing rated), matching the
        # StringLookup's OOV index.
        user_index = {u: i + 1 for i, u in enumerate(user_ids)}
        movie_index = {m: i for i, m in enumerate(movie_ids)}
        if model.user_lookup.vocabulary_size() != len(user_ids) + 1:
            raise ValueError("the user lookup's OOV index must be row 0 of the history table")
        rated = np.zeros((len(user_ids) + 1, len(movie_ids)), dtype=bool)
        for user, movies in vocabulary["rated"].items():
            rated[user_index[user], [movie_index[m] for m in movies]] = True

        self.catalogue_ids = tf.Variable(movie_ids, trainable=False, name="catalogue_ids")
        self.catalogue_titles = tf.Variable(
            [vocabulary["titles"][m] for m in movie_ids], trainable=False, name="catalogue_titles"
        )
        self.rated = tf.Variable(rated, trainable=False, name="rated_in_training")
        self.card = tf.Variable(model_card_json, trainable=False, name="model_card")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.USER_ID),
                                  tf.TensorSpec([None], tf.string, name=contract.MOVIE_ID)])
    def predict(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> dict[str, tf.Tensor]:
        check = tf.debugging.assert_equal(
            tf.shape(user_id)[0],
            tf.shape(movie_id)[0],
            message=f"{contract.USER_ID} and {contract.MOVIE_ID} must have the same length",
        )
        with tf.control_dependencies([check]):
            user_embedding, movie_embedding, rating = self.model(
                {"user_id": tf.identity(user_id), "movie_id": tf.identity(movie_id)}
            )
        return {
            contract.PREDICTED_RATING: tf.reshape(rating, [-1]),
            contract.USER_EMBEDDING: user_embedding,
            contract.MOVIE_EMBEDDING: movie_embedding,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.USER_ID),
                                  tf.TensorSpec([], tf.int32, name=contract.K)])
    def recommend(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        checks = [
            tf.debugging.assert_positive(k, message=f"{contract.K} must be positive"),
            # Scoring builds users × catalogue rows; bound the memory one request can take.
            tf.debugging.assert_less_equal(
                tf.shape(user_id)[0],
                contract.MAX_RECOMMEND_USERS,
                message=f"at most {contract.MAX_RECOMMEND_USERS} {contract.USER_ID}s per recommend request",
            ),
        ]
        with tf.control_dependencies(checks):
            k = tf.minimum(k, self.max_k)
        users = self.model.user_model(user_id)  # [B, D]
        movies = self.model.movie_model(self.catalogue_ids)  # [M, D]
        batch, size = tf.shape(users)[0], tf.shape(movies)[0]
        # Score every (user, movie) pair with the same tower used in training.
        pairs = tf.concat(
            [tf.repeat(users, size, axis=0), tf.tile(movies, tf.stack([batch, 1]))], axis=1
        )
        scores = tf.reshape(self.model.rating_model(pairs), tf.stack([batch, size]))
        seen = tf.gather(self.rated, self.model.user_lookup(user_id))
        scores = tf.where(seen, tf.constant(-np.inf, tf.float32), scores)
        best = tf.math.top_k(scores, k=k)
        return {
            contract.MOVIE_IDS: tf.gather(self.catalogue_ids, best.indices),
            contract.MOVIE_TITLES: tf.gather(self.catalogue_titles, best.indices),
            contract.SCORES: best.values,
        }

    @tf.function(input_signature=[])
    def model_card(self) -> dict[str, tf.Tensor]:
        return {contract.MODEL_CARD: tf.identity(self.card)}

    def signatures(self) -> dict:
        return {
            contract.PREDICT_SIGNATURE: self.predict.get_concrete_function(),
            contract.RECOMMEND_SIGNATURE: self.recommend.get_concrete_function(),
            contract.MODEL_CARD_SIGNATURE: self.model_card.get_concrete_function(),
        }
