"""Retrieval (candidate generation): a query tower and a candidate tower scored by a dot product.

Ranking the whole catalogue by predicted *rating* recommends the same few
well-rated films to everyone; what a top-10 list needs is "which movies will
this user pick next", a softmax over the catalogue. This stage learns exactly
that, from implicit interactions, and is cheap to serve: candidate embeddings
are computed once at export, so retrieval is one matrix product and a top-k.

The query side is built from what a user *did* (the mean embedding of the
movies they rated, each with its rating) plus their profile (age, gender,
occupation), not from a per-user id embedding. That generalises better (an id
embedding overfits: docs/model.md, "Why these values"), it scores users who
are in ``u.user`` but have no training ratings, and the same encoder turns a
new user's handful of ratings into a query without retraining.

Training holds the target movie out of its own history (otherwise the query
learns to copy its input) and samples a fixed number of history entries per
example, so a step costs batch × ``history_sample`` lookups whatever the
users' history lengths. The loss is a full softmax over the catalogue when
that fits (``full_softmax_max_movies``), else an in-batch sampled softmax
(TFRS's, with the log-popularity correction and accidental hits removed)
taken over groups of ``negatives_group`` rows, so large steps (``config.step_batch``)
keep the per-row cost of a ``retrieval_batch_size`` batch.

Beside the towers, retrieval holds an item-to-item model fitted in closed
form (``train/item_to_item.py``, a sparse EASE); the served score adds its
standardised scores to the towers'. The towers train as if it were not there.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from train import distribute, item_to_item
from train.features import FeatureTables

RATING_LEVELS = 11  # half-star units 0..10: MovieLens ratings are 0.5-5.0 in steps of 0.5


def rating_level(ratings: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(ratings * 2.0), 0.0, RATING_LEVELS - 1), tf.int32)


def histories(indptr: tf.Tensor, movies: tf.Tensor, ratings: tf.Tensor, user_rows: tf.Tensor):
    """Each user's whole training history as padded [B, L] movie rows and ratings (L = longest in the batch).

    Padding is movie row 0 (unknown), which the encoder ignores. Cost is the
    batch's total history length; nothing is sized by the catalogue.
    """
    starts = tf.gather(indptr, user_rows)
    positions = tf.ragged.range(starts, tf.gather(indptr, user_rows + 1))
    return (
        tf.cast(tf.gather(movies, positions), tf.int64).to_tensor(default_value=0),
        tf.gather(ratings, positions).to_tensor(default_value=0.0),
    )


def lookup_table(values, name: str) -> tf.Variable:
    """A feature table the served graph reads: a non-trainable variable, stored once in the
    SavedModel's variables rather than as a constant copied into every function that uses it."""
    return tf.Variable(values, trainable=False, name=name)


class QueryTower(tf.keras.layers.Layer):
    """User profile + rated movies → query embedding."""

    def __init__(self, features: FeatureTables, dim: int, history_shrinkage: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.history_shrinkage = history_shrinkage
        self.user_age = lookup_table(features.user_age, "user_age")
        self.user_gender = lookup_table(features.user_gender, "user_gender")
        self.user_occupation = lookup_table(features.user_occupation, "user_occupation")
        self.age_embedding = tf.keras.layers.Embedding(int(features.user_age.max()) + 1, dim)
        self.gender_embedding = tf.keras.layers.Embedding(3, dim)
        self.occupation_embedding = tf.keras.layers.Embedding(features.n_occupations, dim)
        self.history_movie_embedding = tf.keras.layers.Embedding(features.n_movie_rows, dim)
        self.history_rating_embedding = tf.keras.layers.Embedding(RATING_LEVELS, dim)
        self.history_movie_embedding.build(None)  # encode_history reads its table directly
        self.mlp = tf.keras.Sequential(
            [tf.keras.layers.Dense(2 * dim, activation="relu"), tf.keras.layers.Dense(dim)], name="query_mlp"
        )

    def encode_history(self, movies: tf.Tensor, ratings: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Shrunk mean over the unmasked entries of [B, L] (movie, rating) pairs; zeros for an empty row.

        Dividing by count + ``history_shrinkage`` instead of the count pulls a
        short history toward "no history" (the profile alone): five ratings are
        weak evidence, five hundred are not. The value is ``TrainConfig.history_shrinkage``
        (20); what it buys new users is measured in EVALUATION.md ("New users").
        """
        mask = tf.cast(mask, tf.float32)
        # The movie half as a [B, movies] sparse count matrix times the table: its gradient is one
        # dense [movies, D] sum, where gathering rows would carry B × L separate rows to the optimizer.
        entries = tf.where(mask > 0)
        counts = tf.sparse.SparseTensor(
            tf.stack([entries[:, 0], tf.gather_nd(tf.cast(movies, tf.int64), entries)], axis=1),
            tf.ones(tf.shape(entries)[:1]),
            tf.stack([tf.shape(movies, out_type=tf.int64)[0], tf.cast(self.history_movie_embedding.input_dim, tf.int64)]),
        )
        movie_sum = tf.sparse.sparse_dense_matmul(counts, self.history_movie_embedding.embeddings)
        # The rating half of the sum is (how many entries at each level) × (that level's embedding):
        # [B, 11] counts times an [11, D] table instead of gathering a D-wide row per entry.
        levels = tf.one_hot(rating_level(ratings), RATING_LEVELS) * mask[..., None]
        rating_sum = tf.matmul(tf.reduce_sum(levels, axis=1), self.history_rating_embedding(tf.range(RATING_LEVELS)))
        count = tf.reduce_sum(mask, axis=1, keepdims=True)
        return (movie_sum + rating_sum) / tf.maximum(count + self.history_shrinkage, 1.0)

    def call(self, user_rows: tf.Tensor, movies: tf.Tensor, ratings: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        profile = (
            self.age_embedding(tf.gather(self.user_age, user_rows))
            + self.gender_embedding(tf.gather(self.user_gender, user_rows))
            + self.occupation_embedding(tf.gather(self.user_occupation, user_rows))
        )
        return self.mlp(profile + self.encode_history(movies, ratings, mask))


class CandidateTower(tf.keras.layers.Layer):
    """Movie id + genres + release year → candidate embedding, plus a per-movie popularity bias."""

    def __init__(self, features: FeatureTables, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.movie_genres = lookup_table(features.movie_genres, "movie_genres")
        self.movie_year = lookup_table(features.movie_year, "movie_year")
        self.id_embedding = tf.keras.layers.Embedding(features.n_movie_rows, dim)
        self.year_embedding = tf.keras.layers.Embedding(int(features.movie_year.max()) + 1, dim)
        self.genre_projection = tf.keras.layers.Dense(dim, use_bias=False)
        self.bias = tf.keras.layers.Embedding(features.n_movie_rows, 1, embeddings_initializer="zeros")

    def call(self, movie_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        embedding = (
            self.id_embedding(movie_rows)
            + self.year_embedding(tf.gather(self.movie_year, movie_rows))
            + self.genre_projection(tf.gather(self.movie_genres, movie_rows))
        )
        return embedding, tf.squeeze(self.bias(movie_rows), axis=-1)


class RetrievalModel(distribute.Model):
    """Two towers trained for top-k: which catalogue movie does this user rate next?"""

    def __init__(
        self,
        features: FeatureTables,
        dim: int,
        history_sample: int,
        low_rating_weight: float,
        full_softmax_max_movies: int,
        seed: int,
        causal_history_share: float = 0.0,
        history_shrinkage: float = 0.0,
        negatives_group: int = 0,
        item_neighbours: int = 0,
        item_l2: float = 100.0,
        item_weight: float = 0.0,
    ):
        super().__init__()
        self.negatives_group = negatives_group
        self.query_tower = QueryTower(features, dim, history_shrinkage, name="query_tower")
        self.candidate_tower = CandidateTower(features, dim, name="candidate_tower")
        self.history_sample = history_sample
        self.causal_history_share = causal_history_share
        self.low_rating_weight = low_rating_weight
        self.seed = seed
        self.indptr = tf.constant(features.history_indptr)
        self.history_movies = tf.constant(features.history_movies)
        self.history_ratings = tf.constant(features.history_ratings)
        # Training samples from each user's history in time order, so a prefix is "what they had rated before".
        in_time_order = np.lexsort((features.history_times, features.history.row_ids()))
        self.timeline_movies = tf.constant(features.history_movies[in_time_order])
        self.timeline_ratings = tf.constant(features.history_ratings[in_time_order])
        self._timeline_keys = features.history.row_ids()[in_time_order].astype(np.int64) * 2**32 + features.history_times[in_time_order]
        self._timeline_starts = features.history_indptr
        catalogue = features.catalogue
        self.catalogue = tf.constant(catalogue)
        position = np.full(features.n_movie_rows, -1, np.int32)
        position[catalogue] = np.arange(len(catalogue), dtype=np.int32)
        self.catalogue_position = tf.constant(position)
        self.full_softmax = len(catalogue) <= full_softmax_max_movies
        frequency = features.movie_count / max(features.movie_count.sum(), 1)
        self.log_sampling_probability = tf.constant(np.log(np.clip(frequency, 1e-6, 1.0)).astype(np.float32))
        # Fitted here, in closed form, before the towers train: they do not depend on each other.
        self.item_to_item, self.item_weight = None, item_weight
        if item_neighbours and item_weight and len(catalogue) <= item_to_item.MAX_MOVIES:
            support, weights = item_to_item.fit(features.history_indptr, features.history_movies, features.movie_count,
                                                catalogue, item_neighbours, item_l2, seed)
            self.item_to_item = item_to_item.ItemToItem(support, weights, features.n_movie_rows, name="item_to_item")

    def ratings_before(self, user_rows: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """How many of each user's training ratings came strictly before ``timestamps`` (numpy, vectorised)."""
        keys = np.asarray(user_rows, np.int64) * 2**32 + np.asarray(timestamps, np.int64)
        return (np.searchsorted(self._timeline_keys, keys, side="left") - self._timeline_starts[user_rows]).astype(np.int64)

    def sampled_history(self, user_rows: tf.Tensor, target: tf.Tensor, before: tf.Tensor):
        """``history_sample`` entries per user, uniformly with replacement, the target movie masked out.

        A ``causal_history_share`` of the examples draw only from what the user
        had rated before the target (nothing, for their first rating): next-item
        prediction, which is what a new user with a handful of ratings asks for.
        The rest draw from the whole history.
        """
        starts = tf.gather(self.indptr, user_rows)
        lengths = tf.gather(self.indptr, user_rows + 1) - starts
        batch = tf.shape(user_rows)[0]
        if self.causal_history_share:
            causal = tf.random.uniform([batch], seed=self.seed) < self.causal_history_share
            lengths = tf.where(causal, tf.cast(before, lengths.dtype), lengths)
        draws = tf.random.uniform(tf.stack([batch, self.history_sample]), seed=self.seed)
        offsets = tf.cast(draws * tf.cast(lengths[:, None], tf.float32), tf.int64)
        positions = starts[:, None] + tf.minimum(offsets, tf.maximum(lengths[:, None] - 1, 0))
        movies = tf.cast(tf.gather(self.timeline_movies, positions), tf.int64)
        ratings = tf.gather(self.timeline_ratings, positions)
        mask = (lengths[:, None] > 0) & tf.not_equal(movies, tf.cast(target, tf.int64)[:, None])
        return movies, ratings, mask

    def query(self, user_rows: tf.Tensor) -> tf.Tensor:
        """The serving-time query: the user's whole training history."""
        movies, ratings = histories(self.indptr, self.history_movies, self.history_ratings, user_rows)
        return self.query_tower(user_rows, movies, ratings, movies > 0)

    def candidates(self) -> tuple[tf.Tensor, tf.Tensor]:
        return self.candidate_tower(self.catalogue)

    def user_scores(self, user_rows: tf.Tensor) -> tf.Tensor:
        """[B, catalogue] serving-time retrieval scores from each user's whole training history: query ·
        candidate + the candidate's bias, with the item-to-item model's scores when there is one."""
        movies, ratings = histories(self.indptr, self.history_movies, self.history_ratings, user_rows)
        embeddings, bias = self.candidates()
        scores = tf.matmul(self.query_tower(user_rows, movies, ratings, movies > 0), embeddings, transpose_b=True) + bias
        return item_to_item.with_item_scores(scores, self.item_to_item, self.item_weight, movies, movies > 0)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_rows, movie_rows = features["user"], features["movie"]
        weights = tf.where(features["rating"] >= 4.0, 1.0, self.low_rating_weight)
        query = self.query_tower(user_rows, *self.sampled_history(user_rows, movie_rows, features["before"]))
        if self.full_softmax:
            embeddings, bias = self.candidates()
            logits = tf.matmul(query, embeddings, transpose_b=True) + bias
            labels = tf.gather(self.catalogue_position, movie_rows)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            return tf.reduce_sum(losses * weights) / tf.reduce_sum(weights)
        # In-batch negatives; the bias rides along as an extra dimension of the dot product.
        embeddings, bias = self.candidate_tower(movie_rows)
        ones = tf.ones_like(bias)[:, None]
        # The loss is a sum over the batch, so the global batch's loss is the workers' sum:
        # undo the step's division by the number of workers (distribute.Model).
        return distribute.replicas_in_sync() * in_batch_softmax_loss(
            tf.concat([query, ones], axis=1),
            tf.concat([embeddings, bias[:, None]], axis=1),
            movie_rows,
            tf.gather(self.log_sampling_probability, movie_rows),
            weights,
            self.negatives_group,
        )


def in_batch_softmax_loss(query: tf.Tensor, candidates: tf.Tensor, ids: tf.Tensor, log_probability: tf.Tensor,
                          weights: tf.Tensor, group: int = 0) -> tf.Tensor:
    """Weighted sum over the batch of a softmax over in-batch candidates, each group of rows on its own.

    Row i's positive is candidate i; the negatives are the other candidates of
    its group of ``group`` consecutive rows (0: the whole batch, TFRS's
    ``tasks.Retrieval``). Logits are corrected by the candidates' log sampling
    probability (popular movies are negatives more often than their share of
    the catalogue), and a negative that is the row's own movie (an accidental
    hit) is removed. Per row this costs ``group`` dot products whatever the
    batch size, so a step can take many groups at once: large batches spread
    the step's fixed costs (the optimizer's pass over the embedding tables)
    without a batch × batch logit matrix. With ``group`` ≥ the batch this is
    TFRS's loss (``remove_accidental_hits=True``, SUM reduction).
    """
    batch = tf.shape(query)[0]
    size = batch if not group else tf.minimum(batch, group)
    groups = (batch + size - 1) // size
    pad = groups * size - batch
    q = tf.reshape(tf.pad(query, [[0, pad], [0, 0]]), [groups, size, -1])
    c = tf.reshape(tf.pad(candidates, [[0, pad], [0, 0]]), [groups, size, -1])
    ids = tf.reshape(tf.pad(tf.cast(ids, tf.int64), [[0, pad]], constant_values=-1), [groups, size])
    real = tf.reshape(tf.range(groups * size) < batch, [groups, size])
    logits = tf.matmul(q, c, transpose_b=True) - tf.reshape(tf.pad(log_probability, [[0, pad]]), [groups, 1, size])
    own = tf.eye(size, dtype=tf.bool)[None]
    dropped = (tf.equal(ids[:, :, None], ids[:, None, :]) & ~own) | ~real[:, None, :]
    logits = tf.where(dropped, tf.fill(tf.shape(logits), tf.float32.min / 2), logits)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.broadcast_to(tf.range(size), [groups, size]), logits)
    return tf.reduce_sum(tf.reshape(losses, [-1])[:batch] * weights)
