"""Retrieval: history gathering, the held-out target, and both losses training."""

import numpy as np
import pytest
import tensorflow as tf

from train import data
from train.features import build
from train.retrieval import RetrievalModel, histories, rating_level


@pytest.fixture(scope="module")
def features(fixture_dir):
    movielens = data.load(fixture_dir)
    return build(movielens, np.arange(len(movielens)))


def _model(features, full_softmax_max_movies=10_000):
    return RetrievalModel(features, dim=8, history_sample=16, low_rating_weight=0.3,
                          full_softmax_max_movies=full_softmax_max_movies, seed=1)


def test_histories_are_padded_rows_of_the_table(features):
    users = np.array([3, 0, 7], np.int64)  # row 0: unknown user, empty history
    movies, ratings = (t.numpy() for t in histories(
        tf.constant(features.history_indptr), tf.constant(features.history_movies),
        tf.constant(features.history_ratings), tf.constant(users)))
    for i, user in enumerate(users):
        row = features.history.row(user)
        assert movies[i, : len(row)].tolist() == row.tolist()
        assert (movies[i, len(row):] == 0).all()
        lo, hi = features.history_indptr[user], features.history_indptr[user + 1]
        np.testing.assert_array_equal(ratings[i, : len(row)], features.history_ratings[lo:hi])


def test_sampled_history_never_shows_the_target(features):
    model = _model(features)
    users = np.repeat(np.flatnonzero(features.history.lengths() > 0), 3)
    targets = np.array([features.history.row(u)[0] for u in users], np.int64)
    before = np.zeros(len(users), np.int64)  # unused: causal_history_share is 0
    movies, _, mask = (t.numpy() for t in model.sampled_history(tf.constant(users, tf.int64), tf.constant(targets), tf.constant(before)))
    assert movies.shape == (len(users), 16)
    assert not (mask & (movies == targets[:, None])).any()
    assert mask.any(axis=1).mean() > 0.9  # the rest of each history is still there
    for i, user in enumerate(users):
        assert np.isin(movies[i], features.history.row(user)).all()


def test_causal_history_holds_only_earlier_ratings(features):
    model = RetrievalModel(features, dim=8, history_sample=16, low_rating_weight=0.3,
                           full_softmax_max_movies=10_000, seed=1, causal_history_share=1.0)
    row_ids = features.history.row_ids().astype(np.int64)
    users, targets, times = row_ids, features.history_movies.astype(np.int64), features.history_times
    before = model.ratings_before(users, times)
    # Brute force: earlier ratings of the same user.
    for i in range(0, len(users), 37):
        same = row_ids == users[i]
        assert before[i] == np.sum(same & (features.history_times < times[i]))
    movies, _, mask = (t.numpy() for t in model.sampled_history(tf.constant(users), tf.constant(targets), tf.constant(before)))
    time_of = {(u, m): t for u, m, t in zip(row_ids, features.history_movies, features.history_times)}
    for i in range(len(users)):
        assert mask[i].any() == (before[i] > 0)
        assert all(time_of[users[i], m] < times[i] for m in movies[i][mask[i]])


def test_rating_levels_are_half_stars():
    assert rating_level(tf.constant([0.5, 1.0, 3.5, 5.0])).numpy().tolist() == [1, 2, 7, 10]


@pytest.mark.parametrize("full_softmax_max_movies", [10_000, 1], ids=["full-softmax", "sampled-softmax"])
def test_both_losses_train(features, fixture_dir, full_softmax_max_movies):
    tf.keras.utils.set_random_seed(0)
    movielens = data.load(fixture_dir)
    model = _model(features, full_softmax_max_movies)
    assert model.full_softmax == (full_softmax_max_movies > 1)
    users = movielens.ratings.user.astype(np.int64) + 1
    batch = {
        "user": tf.constant(users),
        "movie": tf.constant(movielens.ratings.movie.astype(np.int64) + 1),
        "rating": tf.constant(movielens.ratings.rating),
        "before": tf.constant(model.ratings_before(users, movielens.ratings.timestamp)),
    }
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(128)
    losses = model.fit(ds, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_query_of_a_user_without_history_is_the_profile(features):
    model = _model(features)
    query = model.query(tf.constant([0, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(query[0], query[1])
    assert np.isfinite(query).all()


def test_in_batch_loss_is_tfrs_retrieval_and_groups_are_separate_softmaxes():
    import tensorflow_recommenders as tfrs

    from train.retrieval import in_batch_softmax_loss

    rng = np.random.default_rng(0)
    batch, dim = 12, 5
    query = tf.constant(rng.normal(size=(batch, dim)), tf.float32)
    candidates = tf.constant(rng.normal(size=(batch, dim)), tf.float32)
    ids = tf.constant([3, 1, 3, 4, 5, 1, 6, 7, 3, 8, 9, 9], tf.int64)  # repeats: accidental hits
    probability = tf.constant(rng.uniform(0.01, 0.5, batch), tf.float32)
    weights = tf.constant(rng.uniform(0.3, 1.0, batch), tf.float32)
    expected = tfrs.tasks.Retrieval(remove_accidental_hits=True)(
        query, candidates, sample_weight=weights, candidate_sampling_probability=probability,
        candidate_ids=tf.strings.as_string(ids), compute_metrics=False)
    loss = in_batch_softmax_loss(query, candidates, ids, tf.math.log(probability), weights)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # Groups of 5 (the last one short): each group is its own in-batch softmax.
    grouped = in_batch_softmax_loss(query, candidates, ids, tf.math.log(probability), weights, group=5)
    parts = sum(float(in_batch_softmax_loss(query[s:s + 5], candidates[s:s + 5], ids[s:s + 5],
                                            tf.math.log(probability[s:s + 5]), weights[s:s + 5]))
                for s in range(0, batch, 5))
    assert float(grouped) == pytest.approx(parts, rel=1e-5)
    assert float(in_batch_softmax_loss(query, candidates, ids, tf.math.log(probability), weights, group=64)) == \
        pytest.approx(float(loss), rel=1e-6)


def test_history_encoding_is_the_mean_of_movie_plus_rating_embeddings(features):
    # encode_history's sparse product and rating counts must equal the plain masked mean of the entries.
    tower = _model(features).query_tower
    rng = np.random.default_rng(1)
    movies = tf.constant(rng.integers(0, features.n_movie_rows, (4, 6)), tf.int64)
    ratings = tf.constant(rng.integers(1, 6, (4, 6)), tf.float32)
    mask = tf.constant(rng.random((4, 6)) < 0.7) & (movies > 0)
    got = tower.encode_history(movies, ratings, mask).numpy()
    entries = (tower.history_movie_embedding(movies) + tower.history_rating_embedding(rating_level(ratings))).numpy()
    m = mask.numpy()[..., None].astype(np.float32)
    expected = (entries * m).sum(axis=1) / np.maximum(m.sum(axis=1) + tower.history_shrinkage, 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
