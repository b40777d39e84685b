"""Ranking: users and movies without training ratings are scored from their features alone."""

import numpy as np
import pytest
import tensorflow as tf

from train import data
from train.features import build
from train.ranking import RankingModel


@pytest.fixture(scope="module")
def model_and_features(fixture_dir):
    movielens = data.load(fixture_dir)
    # Train on the first half of the users only: the rest have a profile but no history.
    keep = np.flatnonzero(movielens.ratings.user < len(movielens.users) // 2)
    features = build(movielens, keep)
    model = RankingModel(features, dim=8, layer_sizes=(16,), l2=0.0, global_mean=3.5)
    return model, features


def test_untrained_users_have_no_id_signal(model_and_features):
    """Whatever an untrained user's id embedding and bias hold, their predictions come from the profile."""
    model, features = model_and_features
    untrained = np.flatnonzero(features.history.lengths() == 0)
    user = int(untrained[untrained > 0][0])
    probe = {"user": tf.constant([user, user], tf.int64), "movie": tf.constant([1, 2], tf.int64)}
    before = model(probe).numpy()
    for layer in (model.user_embedding, model.user_bias):
        table = layer.embeddings
        table.scatter_update(tf.IndexedSlices(tf.fill([1, table.shape[1]], 7.0), tf.constant([user])))
    np.testing.assert_array_equal(model(probe).numpy(), before)
    trained = int(np.flatnonzero(features.history.lengths() > 0)[0])
    model.user_bias.embeddings.scatter_update(tf.IndexedSlices(tf.constant([[7.0]]), tf.constant([trained])))
    moved = model({"user": tf.constant([trained], tf.int64), "movie": tf.constant([1], tf.int64)}).numpy()
    assert moved[0] > 6  # a trained user's bias does count


def test_global_mean_is_checkpointed(model_and_features, tmp_path):
    model, features = model_and_features
    probe = {"user": tf.constant([1], tf.int64), "movie": tf.constant([1], tf.int64)}
    want = model(probe).numpy()
    tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    again = RankingModel(features, dim=8, layer_sizes=(16,), l2=0.0, global_mean=0.0)
    status = tf.train.Checkpoint(model=again).read(str(tmp_path / "ckpt"))
    np.testing.assert_allclose(again(probe).numpy(), want)
    status.assert_existing_objects_matched()


def test_the_served_rating_blends_in_the_neighbourhood_model_where_both_are_known(fixture_dir):
    movielens = data.load(fixture_dir)
    features = build(movielens, np.flatnonzero(movielens.ratings.user < len(movielens.users) // 2))
    model = RankingModel(features, dim=8, layer_sizes=(16,), l2=0.0, global_mean=3.5, knn_neighbours=5,
                         knn_shrinkage=10.0, knn_weight=0.4)
    known_user = int(np.flatnonzero(features.history.lengths() > 0)[0])
    new_user = int(np.flatnonzero(features.history.lengths() == 0)[1])
    rated, unrated = int(np.flatnonzero(features.movie_count > 0)[0]), int(np.flatnonzero(features.movie_count == 0)[0])
    probe = {"user": tf.constant([known_user, new_user, known_user], tf.int64),
             "movie": tf.constant([rated, rated, unrated], tf.int64)}
    network = model.network_rating(probe).numpy()
    knn = model.neighbourhood(probe["user"], probe["movie"]).numpy()
    np.testing.assert_allclose(model(probe).numpy(), [0.6 * network[0] + 0.4 * knn[0], network[1], network[2]],
                               rtol=1e-6)
    # Training fits the network alone; evaluation (what is served) scores the blend.
    labels = dict(probe, rating=tf.constant([4.0, 4.0, 4.0]))
    trained = model.compute_loss(labels, training=True).numpy()
    served = model.compute_loss(labels, training=False).numpy()
    np.testing.assert_allclose(trained, np.mean((network - 4.0) ** 2), rtol=1e-5)
    np.testing.assert_allclose(served, np.mean((model(probe).numpy() - 4.0) ** 2), rtol=1e-5)
