"""The in-graph recommenders over row indices: what ``recommend`` serves and evaluation measures.

Both the served signatures (``export/serving_module.py`` adds the string id
lookups around them) and the trainer's evaluation call these same
``tf.function``-able methods, so a quality figure in ``metrics.json`` is a
figure of the served code path.

``TwoStageRecommender``: retrieval scores the catalogue with one matrix
product against candidate embeddings computed once here (not per request),
plus the item-to-item model's scores from the user's history (``train/item_to_item.py``),
the movies a user already rated are masked out sparsely (a scatter of their
history, never a users × movies table), the best ``candidates`` go to the
ranking model, and the final order is ``retrieval score + blend_weight ×
predicted rating − popularity_penalty × log(1 + the movie's training ratings)``
with both chosen on the validation part.

``ReferenceRecommender``: the reference model (``train/reference_model.py``,
the blog's rating model) ranking the whole catalogue by predicted rating;
kept so the ``reference-basic`` and ``reference-tuned`` presets still export.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from train.features import FeatureTables
from train.item_to_item import with_item_scores
from train.ranking import RankingModel
from train.retrieval import RetrievalModel, histories

NEGATIVE_INFINITY = float("-inf")


def mask_movies(scores: tf.Tensor, movie_rows: tf.Tensor, catalogue_position: tf.Tensor) -> tf.Tensor:
    """Sets ``scores[b, position of movie_rows[b, j]]`` to -inf; rows 0 and non-catalogue movies are skipped."""
    positions = tf.gather(catalogue_position, movie_rows)  # [B, L], -1 outside the catalogue
    where = tf.where(positions >= 0)  # [n, 2]: (batch row, column of movie_rows)
    indices = tf.stack([where[:, 0], tf.cast(tf.gather_nd(positions, where), tf.int64)], axis=1)
    return tf.tensor_scatter_nd_update(scores, indices, tf.fill(tf.shape(indices)[:1], NEGATIVE_INFINITY))


def first_occurrences(values: tf.Tensor) -> tf.Tensor:
    """[B, L] bool: True where ``values[b, j]`` does not appear earlier in row ``b``.

    A stable sort puts equal values next to each other in their original
    order, so a repeat is an entry equal to its sorted predecessor: O(L log L)
    per row, never an L × L comparison.
    """
    order = tf.argsort(values, axis=1, stable=True)
    ordered = tf.gather(values, order, batch_dims=1)
    repeat = tf.concat([tf.zeros_like(ordered[:, :1], tf.bool), tf.equal(ordered[:, 1:], ordered[:, :-1])], axis=1)
    return tf.logical_not(tf.gather(repeat, tf.argsort(order, axis=1, stable=True), batch_dims=1))


def per_row(k: tf.Tensor, user_rows: tf.Tensor) -> tf.Tensor:
    """``k`` as one int32 value per user: a [B] vector as is, a scalar (the trainer's evaluation) repeated."""
    return tf.broadcast_to(tf.cast(k, tf.int32), tf.shape(user_rows)[:1])


def pad_rows(movies: tf.Tensor, scores: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """[B, K] results with each row's entries past its own ``k[b]`` set to movie row 0 and score -inf."""
    keep = tf.range(tf.shape(movies)[1])[None, :] < k[:, None]
    return (tf.where(keep, movies, tf.zeros_like(movies)),
            tf.where(keep, scores, tf.fill(tf.shape(scores), NEGATIVE_INFINITY)))


class _Catalogue(tf.Module):
    """The recommendable movies (those with training ratings) and the user histories to exclude."""

    def __init__(self, features: FeatureTables):
        super().__init__()
        catalogue = features.catalogue
        position = np.full(features.n_movie_rows, -1, np.int32)
        position[catalogue] = np.arange(len(catalogue), dtype=np.int32)
        self.catalogue = tf.Variable(catalogue, trainable=False, name="catalogue_rows")
        self.catalogue_position = tf.Variable(position, trainable=False, name="catalogue_position")
        self.history_indptr = tf.Variable(features.history_indptr, trainable=False, name="history_indptr")
        self.history_movies = tf.Variable(features.history_movies, trainable=False, name="history_movies")
        self.history_ratings = tf.Variable(features.history_ratings, trainable=False, name="history_ratings")
        self.catalogue_size = len(catalogue)
        # Every returned row holds only unrated movies, so k is capped at what
        # the most prolific user has left to see.
        self.max_k = self.catalogue_size - features.longest_history

    def rated(self, user_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return histories(self.history_indptr, self.history_movies, self.history_ratings, user_rows)


class TwoStageRecommender(_Catalogue):
    def __init__(self, retrieval: RetrievalModel, ranking: RankingModel, features: FeatureTables,
                 candidates: int, blend_weight: float, popularity_penalty: float = 0.0):
        super().__init__(features)
        self.query_tower = retrieval.query_tower
        self.candidate_tower = retrieval.candidate_tower
        self.ranking = ranking
        embeddings, bias = retrieval.candidate_tower(tf.constant(features.catalogue))
        self.candidate_embeddings = tf.Variable(embeddings, trainable=False, name="candidate_embeddings")
        self.candidate_bias = tf.Variable(bias, trainable=False, name="candidate_bias")
        self.item_to_item, self.item_weight = retrieval.item_to_item, retrieval.item_weight
        self.candidates = candidates
        self.blend_weight = tf.Variable(blend_weight, trainable=False, dtype=tf.float32, name="blend_weight")
        # Both stages learn popularity from the same counts and lean on it twice; a penalty on the log count,
        # chosen on validation, raised Recall@10 and widened the lists (docs/model.md, "Why these values").
        self.popularity_penalty = tf.Variable(popularity_penalty, trainable=False, dtype=tf.float32,
                                              name="popularity_penalty")
        self.log_popularity = tf.Variable(np.log1p(features.movie_count).astype(np.float32), trainable=False,
                                          name="log_popularity")  # by movie row

    def query(self, user_rows: tf.Tensor) -> tf.Tensor:
        movies, ratings = self.rated(user_rows)
        return self.query_tower(user_rows, movies, ratings, movies > 0)

    def shortlist(self, user_rows: tf.Tensor, query: tf.Tensor, exclude: tf.Tensor, n: tf.Tensor):
        """Retrieval's best ``n`` unexcluded movies per user with both stages' scores: rows, retrieval, rating."""
        scores = tf.matmul(query, self.candidate_embeddings, transpose_b=True) + self.candidate_bias
        # The excluded movies are the user's history, trained on or given in the request.
        scores = with_item_scores(scores, self.item_to_item, self.item_weight, exclude, exclude > 0)
        scores = mask_movies(scores, exclude, self.catalogue_position)
        best = tf.math.top_k(scores, k=n)
        movies = tf.gather(self.catalogue, best.indices)  # [B, n]
        users = tf.repeat(user_rows, n)
        rating = self.list_rating({"user": users, "movie": tf.reshape(movies, [-1])})
        return movies, best.values, tf.reshape(rating, tf.shape(movies))

    def list_rating(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """The rating lists are blended with: the ranking network's, not the neighbourhood model's blend.

        ``serving_default`` answers with the blend, the better estimate of a rating, but lists are ordered by
        retrieval score + w × this, one w for every user; with the blend, w fitted to known users' (blended)
        ratings cost new users, who get the network alone (docs/model.md, "Why these values").
        """
        return self.ranking.network_rating(features)

    def list_score(self, movies: tf.Tensor, retrieval_scores: tf.Tensor, rating: tf.Tensor) -> tf.Tensor:
        """The order of a list: retrieval score + w × rating − popularity penalty × log(1 + training ratings)."""
        return (retrieval_scores + self.blend_weight * rating
                - self.popularity_penalty * tf.gather(self.log_popularity, movies))

    def recommend_for(self, user_rows: tf.Tensor, query: tf.Tensor, exclude: tf.Tensor, k: tf.Tensor):
        """Top ``k[b]`` (movie rows, blended scores) per row, best first, from an already computed query.

        ``k`` is one value per row ([B]); the output is [B, max(k)], each row
        padded past its own ``k`` with movie row 0 and score -inf. The caller
        caps ``k`` so every row has that many unexcluded movies. A row's
        shortlist is its own retrieval top max(k[b], candidates), never widened
        by padding or by the other users in the batch, so a user's answer is
        the same alone or batched.
        """
        k = per_row(k, user_rows)
        width = tf.reduce_max(tf.concat([[0], k], axis=0))
        n_rows = tf.minimum(tf.maximum(k, self.candidates), self.catalogue_size)  # [B]
        n = tf.reduce_max(tf.concat([[0], n_rows], axis=0))
        movies, retrieval_scores, rating = self.shortlist(user_rows, query, exclude, n)
        blended = self.list_score(movies, retrieval_scores, rating)
        # top_k is sorted and stable, so the first n_rows[b] of the common top n are the row's own shortlist.
        in_shortlist = tf.range(n)[None, :] < n_rows[:, None]
        blended = tf.where(in_shortlist, blended, tf.fill(tf.shape(blended), NEGATIVE_INFINITY))
        best = tf.math.top_k(blended, k=width)
        return pad_rows(tf.gather(movies, best.indices, batch_dims=1), best.values, k)

    def recommend(self, user_rows: tf.Tensor, k: tf.Tensor):
        exclude, _ = self.rated(user_rows)
        return self.recommend_for(user_rows, self.query(user_rows), exclude, tf.minimum(per_row(k, user_rows), self.max_k))

    def recommend_from_ratings(self, user_rows: tf.Tensor, movie_rows: tf.Tensor, ratings: tf.Tensor, k: tf.Tensor):
        """Top ``k`` for users described by [B, L] rated movie rows (0 = padding or unknown id) and ratings.

        The ratings stand in for a training history (the user row contributes
        only its profile), go through the same query encoder, and are excluded
        from the answer. A movie given twice in a row counts once, first
        occurrence first.
        """
        given = first_occurrences(movie_rows) & (movie_rows > 0)
        movie_rows = tf.where(given, movie_rows, tf.zeros_like(movie_rows))
        query = self.query_tower(user_rows, movie_rows, ratings, given)
        k = tf.minimum(tf.minimum(per_row(k, user_rows), self.max_k), self.catalogue_size - tf.reduce_sum(tf.cast(given, tf.int32), axis=1))
        return self.recommend_for(user_rows, query, movie_rows, k)

    def predict(self, user_rows: tf.Tensor, movie_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(predicted rating [B], query embedding [B, D], candidate embedding [B, D])."""
        rating = self.ranking({"user": user_rows, "movie": movie_rows})
        return rating, self.query(user_rows), self.candidate_tower(movie_rows)[0]


class ReferenceRecommender(_Catalogue):
    """Ranks the whole catalogue by the reference model's predicted rating."""

    def __init__(self, model: tf.keras.Model, features: FeatureTables):
        super().__init__(features)
        self.model = model

    def recommend(self, user_rows: tf.Tensor, k: tf.Tensor):
        k = tf.minimum(per_row(k, user_rows), self.max_k)  # [B]
        width = tf.reduce_max(tf.concat([[0], k], axis=0))
        batch, size = tf.shape(user_rows)[0], self.catalogue_size
        users = tf.repeat(user_rows, size)
        movies = tf.tile(self.catalogue, [batch])
        _, _, rating = self.model({"user": users, "movie": movies})
        scores = tf.reshape(rating, tf.stack([batch, size]))
        exclude, _ = self.rated(user_rows)
        best = tf.math.top_k(mask_movies(scores, exclude, self.catalogue_position), k=width)
        return pad_rows(tf.gather(self.catalogue, best.indices), best.values, k)

    def predict(self, user_rows: tf.Tensor, movie_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        user_embedding, movie_embedding, rating = self.model({"user": user_rows, "movie": movie_rows})
        return tf.reshape(rating, [-1]), user_embedding, movie_embedding
