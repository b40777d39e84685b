"""The served code path over rows: sparse exclusion, blending, and both recommenders' shapes."""

import numpy as np
import pytest
import tensorflow as tf

from train import trainer
from train.recommender import first_occurrences, mask_movies


@pytest.fixture(scope="module")
def served(trained_run):
    recommender, _, features = trainer.load_recommender(trained_run)
    return recommender, features


def test_mask_movies_matches_a_dense_reference():
    rng = np.random.default_rng(0)
    catalogue = np.array([3, 5, 6, 9, 11], np.int32)
    position = np.full(12, -1, np.int32)
    position[catalogue] = np.arange(len(catalogue))
    scores = rng.normal(size=(4, len(catalogue))).astype(np.float32)
    rated = np.array([[5, 9, 0], [0, 0, 0], [4, 3, 11], [6, 6, 7]], np.int64)  # 0 pads; 4 and 7 are not in the catalogue
    got = mask_movies(tf.constant(scores), tf.constant(rated), tf.constant(position)).numpy()
    want = scores.copy()
    for b, row in enumerate(rated):
        for movie in row:
            if position[movie] >= 0:
                want[b, position[movie]] = -np.inf
    np.testing.assert_array_equal(got, want)


def test_recommend_never_returns_a_rated_movie(served):
    """Property over every user row (plus unknown row 0), at a k that forces deep lists."""
    recommender, features = served
    history = features.history
    users = np.arange(features.n_user_rows, dtype=np.int64)
    k = min(recommender.max_k, 60)
    for start in range(0, len(users), 100):
        batch = users[start : start + 100]
        movies, scores = (t.numpy() for t in recommender.recommend(tf.constant(batch), tf.constant(k)))
        assert movies.shape == (len(batch), k) and np.isfinite(scores).all()
        rows = np.repeat(batch, k)
        assert not history.contains(rows, movies.reshape(-1)).any()
        assert all(len(set(row)) == k for row in movies)
        assert np.isin(movies, features.catalogue).all()
        assert (np.diff(scores, axis=1) <= 0).all()


def test_blend_weight_and_popularity_penalty_order_the_shortlist(served):
    recommender, features = served
    users = tf.constant(np.flatnonzero(features.history.lengths() > 0)[:5], tf.int64)
    query, exclude = recommender.query(users), recommender.rated(users)[0]
    movies, retrieval_scores, rating = (t.numpy() for t in recommender.shortlist(users, query, exclude, tf.constant(20)))
    log_popularity = np.log1p(features.movie_count)[movies]
    saved = float(recommender.blend_weight.numpy()), float(recommender.popularity_penalty.numpy())
    candidates = recommender.candidates
    recommender.candidates = 20  # so recommend_for re-ranks exactly the shortlist above
    try:
        for weight, penalty, key in ((0.0, 0.0, retrieval_scores), (1e6, 0.0, rating), (0.0, 1e6, -log_popularity)):
            recommender.blend_weight.assign(weight)
            recommender.popularity_penalty.assign(penalty)
            top, scores = (t.numpy() for t in recommender.recommend_for(users, query, exclude, tf.constant(5)))
            want = np.take_along_axis(movies, np.argsort(-key, axis=1, kind="stable")[:, :5], axis=1)
            # Ties aside (movies rated equally often), the top 5 are the shortlist's best by that score.
            assert (top == want).mean() > 0.8
            served_scores = retrieval_scores + weight * rating - penalty * log_popularity
            np.testing.assert_allclose(scores, np.sort(served_scores, axis=1)[:, ::-1][:, :5], rtol=1e-5)
    finally:
        recommender.blend_weight.assign(saved[0])
        recommender.popularity_penalty.assign(saved[1])
        recommender.candidates = candidates


def test_lists_use_the_network_rating_and_serving_default_the_neighbourhood_blend(served):
    recommender, features = served
    assert recommender.ranking.neighbourhood is not None  # the default preset has one
    users = tf.constant(np.flatnonzero(features.history.lengths() > 0)[:4], tf.int64)
    movies, _, rating = recommender.shortlist(users, recommender.query(users), recommender.rated(users)[0],
                                              tf.constant(10))
    pairs = {"user": tf.repeat(users, 10), "movie": tf.reshape(movies, [-1])}
    np.testing.assert_allclose(rating.numpy().reshape(-1), recommender.ranking.network_rating(pairs).numpy(), rtol=1e-6)
    served_rating = recommender.predict(pairs["user"], pairs["movie"])[0].numpy()
    np.testing.assert_allclose(served_rating, recommender.ranking(pairs).numpy(), rtol=1e-6)
    assert np.abs(served_rating - rating.numpy().reshape(-1)).max() > 1e-3  # the blend does move the rating


def test_predict_shapes_and_unknown_rows(served):
    recommender, features = served
    rating, user_embedding, movie_embedding = recommender.predict(
        tf.constant([0, 1, 1], tf.int64), tf.constant([1, 0, features.n_movie_rows - 1], tf.int64)
    )
    assert rating.shape == (3,) and np.isfinite(rating.numpy()).all()
    assert user_embedding.shape[0] == 3 and movie_embedding.shape[0] == 3


def test_first_occurrences_marks_only_repeats():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, size=(50, 9)).astype(np.int64)
    got = first_occurrences(tf.constant(values)).numpy()
    want = np.array([[v not in row[:j] for j, v in enumerate(row)] for row in values.tolist()])
    np.testing.assert_array_equal(got, want)
    assert first_occurrences(tf.zeros([3, 0], tf.int64)).shape == (3, 0)
