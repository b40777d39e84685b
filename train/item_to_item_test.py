import collections

import numpy as np
import pytest

import common.tf_setup  # noqa: F401
import tensorflow as tf

from train import item_to_item
from train.baselines import EASE
from train.interactions import Interactions
from train.item_to_item import ItemToItem, co_rated_pairs, co_rating_counts, fit, nearest, with_item_scores

# Three users' histories (CSR over movie rows 1..5): {1, 2, 3}, {1, 2}, {2, 4}; movie 5 unrated.
INDPTR = np.array([0, 3, 5, 7])
MOVIES = np.array([1, 2, 3, 1, 2, 2, 4])
COUNT = np.bincount(MOVIES, minlength=6)
CATALOGUE = np.array([1, 2, 3, 4])


def test_small_users_give_every_ordered_pair_once_with_weight_one():
    left, right, weight = co_rated_pairs(INDPTR, MOVIES, partners=10, seed=0)
    assert collections.Counter(zip(left.tolist(), right.tolist())) == collections.Counter(
        [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (1, 2), (2, 1), (2, 4), (4, 2)])
    assert np.all(weight == 1.0)


def test_a_large_users_ratings_get_partners_from_their_own_history_never_themselves_reweighted():
    indptr = np.array([0, 2, 52])
    movies = np.concatenate([[7, 8], np.arange(100, 150)])
    left, right, weight = co_rated_pairs(indptr, movies, partners=5, seed=1)
    big = left >= 100
    assert big.sum() == 50 * 5 and np.all(right[big] >= 100) and np.all(left != right)
    assert np.allclose(weight[big], 49 / 5)  # the sampled pairs' weights sum to the true count in expectation
    assert sorted(zip(left[~big].tolist(), right[~big].tolist())) == [(7, 8), (8, 7)]


def test_sampled_counts_when_all_pairs_would_not_fit(monkeypatch):
    monkeypatch.setattr(item_to_item, "MAX_PAIRS", 7)  # 10 pairs in all: one partner per rating
    keys, counts = co_rating_counts(INDPTR, MOVIES, 6, seed=0)
    # User 0's three ratings meet one partner each, weighted 2; users 1 and 2 (two ratings) stay exact.
    assert counts.sum() == pytest.approx(3 * 2 + 2 + 2)
    assert counts[keys == 2 * 6 + 4] == pytest.approx([1.0]) and np.all(np.diff(keys) > 0)


def test_neighbours_by_cosine_zero_padded():
    keys, counts = co_rating_counts(INDPTR, MOVIES, 6, seed=0)
    table = nearest(keys, counts, COUNT, neighbours=3)
    # Movie 2 (rated 3 times): with 1 twice (2/√6), with 3 once (1/√3), with 4 once (1/√3); ties to the lower row.
    assert table[2].tolist() == [1, 3, 4]
    assert table[4].tolist() == [2, 0, 0] and table[5].tolist() == [0, 0, 0]


def test_with_every_movie_as_neighbour_the_weights_are_eases():
    rng = np.random.default_rng(0)
    table = Interactions.from_pairs(rng.integers(0, 40, 400), rng.integers(1, 12, 400), 40, 12)
    catalogue = np.flatnonzero(np.bincount(table.indices, minlength=12))
    count = np.bincount(table.indices, minlength=12)
    support, weights = fit(table.indptr, table.indices, count, catalogue, neighbours=11, l2=5.0)
    ease = EASE.fit(table, l2=5.0).weights  # column j: the weights of the other movies on j
    dense = np.zeros((12, 12))
    for c, movie in enumerate(catalogue):
        dense[support[c][support[c] > 0], movie] = weights[c][support[c] > 0]
    assert dense == pytest.approx(ease, abs=1e-5)


def test_a_users_score_is_the_sum_of_their_rated_movies_weights_a_repeat_counting_once():
    support = np.array([[2, 3], [1, 0], [1, 2], [0, 0]])  # catalogue movies 1..4
    weights = np.array([[1.0, 2.0], [4.0, 0.0], [8.0, 16.0], [0.0, 0.0]], np.float32)
    layer = ItemToItem(support, weights, n_movie_rows=6)
    movies = tf.constant([[2, 3, 2, 0], [5, 0, 0, 0]], tf.int64)
    scores = layer(movies, movies > 0).numpy()
    # Rated 2 and 3: movie 1 gets 1 + 2, movie 2 gets 0 (its support holds 1), movie 3 gets 16.
    assert scores[0].tolist() == [3.0, 0.0, 16.0, 0.0]
    assert scores[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # movie 5 is nobody's support


def test_scores_are_standardised_and_added_with_the_weight():
    layer = ItemToItem(np.array([[2], [1]]), np.array([[1.0], [3.0]], np.float32), n_movie_rows=3)
    towers = tf.constant([[1.0, 3.0]])
    movies = tf.constant([[1]], tf.int64)
    assert with_item_scores(towers, None, 0.5, movies, movies > 0).numpy().tolist() == [[1.0, 3.0]]
    # Towers standardised: [-1, 1]; item scores [0, 3] standardised: [-1, 1].
    assert with_item_scores(towers, layer, 0.5, movies, movies > 0).numpy()[0] == pytest.approx([-1.5, 1.5])
