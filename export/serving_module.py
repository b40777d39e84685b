"""The served graph: the trained recommender wrapped in the public signatures.

Everything a request needs lives inside the SavedModel: the id → row lookups
(hash tables over every user in ``u.user`` and movie in ``u.item``), the feature
tables, the candidate embeddings, the catalogue with titles, and each user's
training history (sparse) for excluding already-rated movies. Clients send raw
string ids and nothing else, and the graph uses only core TensorFlow ops so the
stock TF Serving binary can host it. The scoring itself is
``train/recommender.py``: the same code the trainer evaluated.

The signatures' inputs and outputs are the ones ``common/contract.py`` declares:
the input signatures are built from it when a module is made, and each serving
function returns what it computes through ``outputs()``, which keeps the declared
outputs, casts each to its declared dtype and refuses a declared output the graph
does not compute. This file holds the graph; the API's shape lives in the contract.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from common import contract
from train.features import UNKNOWN, FeatureTables
from train.recommender import ReferenceRecommender, TwoStageRecommender


def _row_table(ids: np.ndarray) -> tf.lookup.StaticHashTable:
    """Raw id → row (index + 1); unknown ids → row 0."""
    rows = np.arange(1, len(ids) + 1, dtype=np.int64)
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(ids.astype(str)), tf.constant(rows))
    return tf.lookup.StaticHashTable(initializer, default_value=UNKNOWN)


def tf_dtype(decl: contract.TensorDecl) -> tf.DType:
    return tf.dtypes.as_dtype(types_pb2.DataType.Value(decl.dtype))


def input_signature(signature: str) -> list[tf.TensorSpec]:
    """The signature's inputs as declared in ``common/contract.py`` (the one declaration of the API)."""
    return [
        tf.TensorSpec([None if d < 0 else d for d in t.shape], tf_dtype(t), name=t.name)
        for t in contract.signature(signature).inputs
    ]


def outputs(signature: str, computed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The outputs ``common/contract.py`` declares for ``signature``, each in its declared dtype.

    ``computed`` holds what the graph has, keyed by the contract's output names; a
    declared output missing from it, or one whose dtype no cast reaches (string vs
    number), is refused while tracing, naming both.
    """
    result = {}
    for decl in contract.signature(signature).outputs:
        if decl.name not in computed:
            raise ValueError(
                f"common/contract.py declares output {decl.name!r} of {signature}, which the serving graph "
                f"does not compute (it computes {sorted(computed)})"
            )
        value, dtype = computed[decl.name], tf_dtype(decl)
        if value.dtype != dtype and tf.string in (value.dtype, dtype):
            raise ValueError(f"{signature} output {decl.name!r} is {value.dtype.name}; common/contract.py declares {decl}")
        result[decl.name] = tf.cast(value, dtype) if value.dtype != dtype else value
    return result


def _one_k_per_user(user_id: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """``k`` as a vector, once it holds one value per user; else the error that says what changed.

    TF Serving hands tensors to the graph without checking them against the
    signature, so a client of the old API (a scalar ``k``) reaches this graph.
    Flattening first means no op ever sees a scalar (which would fail with an
    unrelated reduction error), and the count check, a data dependency of every
    use of ``k``, answers with the contract's message.
    """
    k = tf.reshape(k, [-1])
    check = tf.debugging.assert_equal(tf.size(k), tf.shape(user_id)[0], message=contract.K_PER_USER_MESSAGE)
    with tf.control_dependencies([check]):
        return tf.identity(k)


class ServingModule(tf.Module):
    def __init__(self, recommender: ReferenceRecommender | TwoStageRecommender, features: FeatureTables,
                 model_card_json: str):
        super().__init__()
        self.recommender = recommender
        self.catalogue_size = recommender.catalogue_size
        self.max_k = recommender.max_k
        self.user_rows = _row_table(features.user_ids)
        self.movie_rows = _row_table(features.movie_ids)
        self.movie_ids = tf.Variable(np.concatenate([[""], features.movie_ids]), trainable=False, name="movie_ids")
        self.movie_titles = tf.Variable(np.concatenate([[""], features.movie_titles]), trainable=False, name="movie_titles")
        self.card = tf.Variable(model_card_json, trainable=False, name="model_card")
        # Built here, not as decorators, so the input signatures are the contract's when the module is made.
        self.predict = tf.function(self._predict, input_signature=input_signature(contract.PREDICT_SIGNATURE))
        self.recommend = tf.function(self._recommend, input_signature=input_signature(contract.RECOMMEND_SIGNATURE))
        self.model_card = tf.function(self._model_card, input_signature=input_signature(contract.MODEL_CARD_SIGNATURE))
        if isinstance(recommender, TwoStageRecommender):  # the reference model has no query encoder to feed ratings to
            self.recommend_from_ratings = tf.function(
                self._recommend_from_ratings, input_signature=input_signature(contract.RECOMMEND_FROM_RATINGS_SIGNATURE)
            )

    def _predict(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> dict[str, tf.Tensor]:
        check = tf.debugging.assert_equal(
            tf.shape(user_id)[0],
            tf.shape(movie_id)[0],
            message=contract.PAIRS_MESSAGE,
        )
        with tf.control_dependencies([check]):
            rating, user_embedding, movie_embedding = self.recommender.predict(
                self.user_rows.lookup(user_id), self.movie_rows.lookup(movie_id)
            )
        return outputs(contract.PREDICT_SIGNATURE, {
            contract.PREDICTED_RATING: rating,
            contract.USER_EMBEDDING: user_embedding,
            contract.MOVIE_EMBEDDING: movie_embedding,
        })

    def _recommend(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        k = _one_k_per_user(user_id, k)
        checks = [
            tf.debugging.assert_positive(k, message=contract.K_POSITIVE_MESSAGE),
            # Scoring builds users × catalogue scores; bound the memory one request can take.
            tf.debugging.assert_less_equal(
                tf.shape(user_id)[0], contract.MAX_RECOMMEND_USERS, message=contract.TOO_MANY_USERS_MESSAGE,
            ),
        ]
        with tf.control_dependencies(checks):
            movies, scores = self.recommender.recommend(self.user_rows.lookup(user_id), k)
        return outputs(contract.RECOMMEND_SIGNATURE, self._recommendations(movies, scores))

    def _recommend_from_ratings(self, user_id: tf.Tensor, k: tf.Tensor, rated_movie_ids: tf.Tensor,
                               ratings: tf.Tensor) -> dict[str, tf.Tensor]:
        k = _one_k_per_user(user_id, k)
        given = tf.not_equal(rated_movie_ids, "")
        in_range = (ratings >= contract.RATING_MIN) & (ratings <= contract.RATING_MAX)
        # The rules of client/protocol.py's request_problem, with the contract's limits and words.
        checks = [
            tf.debugging.assert_positive(k, message=contract.K_POSITIVE_MESSAGE),
            tf.debugging.assert_less_equal(
                tf.shape(user_id)[0], contract.MAX_RECOMMEND_USERS, message=contract.TOO_MANY_USERS_MESSAGE,
            ),
            tf.debugging.assert_equal(
                tf.shape(rated_movie_ids), tf.shape(ratings), message=contract.RATED_SHAPE_MESSAGE,
            ),
            tf.debugging.assert_equal(
                tf.shape(user_id)[0], tf.shape(rated_movie_ids)[0], message=contract.RATED_ROWS_MESSAGE,
            ),
            tf.debugging.assert_less_equal(
                tf.shape(rated_movie_ids)[1], contract.MAX_RATED_WIDTH, message=contract.TOO_MANY_RATED_MESSAGE,
            ),
            tf.debugging.assert_less_equal(
                tf.reduce_max(tf.concat([[0], tf.reduce_sum(tf.cast(given, tf.int32), axis=1)], axis=0)),
                contract.MAX_RATED_MOVIES,
                message=contract.TOO_MANY_RATED_MESSAGE,
            ),
            tf.debugging.Assert(tf.reduce_all(in_range | tf.logical_not(given)), [contract.RATING_RANGE_MESSAGE]),
        ]
        with tf.control_dependencies(checks):
            movies, scores = self.recommender.recommend_from_ratings(
                self.user_rows.lookup(user_id), self.movie_rows.lookup(rated_movie_ids), ratings, k
            )
        return outputs(contract.RECOMMEND_FROM_RATINGS_SIGNATURE, self._recommendations(movies, scores))

    def _recommendations(self, movies: tf.Tensor, scores: tf.Tensor) -> dict[str, tf.Tensor]:
        return {
            contract.MOVIE_IDS: tf.gather(self.movie_ids, movies),
            contract.MOVIE_TITLES: tf.gather(self.movie_titles, movies),
            contract.SCORES: scores,
        }

    def _model_card(self, request: tf.Tensor) -> dict[str, tf.Tensor]:
        """One copy of the card per element of ``request`` (values ignored), so the batcher can merge calls."""
        return outputs(contract.MODEL_CARD_SIGNATURE, {contract.MODEL_CARD: tf.fill(tf.shape(request), self.card.read_value())})

    def signatures(self) -> dict:
        signatures = {
            contract.PREDICT_SIGNATURE: self.predict.get_concrete_function(),
            contract.RECOMMEND_SIGNATURE: self.recommend.get_concrete_function(),
            contract.MODEL_CARD_SIGNATURE: self.model_card.get_concrete_function(),
        }
        if hasattr(self, "recommend_from_ratings"):
            signatures[contract.RECOMMEND_FROM_RATINGS_SIGNATURE] = self.recommend_from_ratings.get_concrete_function()
        return signatures
