"""The load's view of the served model (from its card) and the ratings a simulated new user sends."""

import random

import pytest

from common.contract import RATING_MAX, RATING_MIN, RECOMMEND_FROM_RATINGS_SIGNATURE
from loadtest.traffic import RATED_MOVIES, fallback, sample_ratings, served_from_card
from testing.fake_serving import FAKE_CARD


def test_sample_ratings_are_3_to_20_distinct_served_movies_rated_in_whole_stars():
    movies = [str(m) for m in range(100, 400)]
    rng = random.Random(7)
    sizes = set()
    for _ in range(500):
        ratings = sample_ratings(movies, rng)
        sizes.add(len(ratings))
        assert set(ratings) <= set(movies)  # keys of a dict: distinct
        assert set(ratings.values()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        assert all(RATING_MIN <= r <= RATING_MAX for r in ratings.values())
    assert sizes == set(range(RATED_MOVIES[0], RATED_MOVIES[1] + 1))
    assert len(sample_ratings(["1", "2"], rng)) == 2  # a tiny catalogue caps the count
    assert sample_ratings(movies)  # the module's own generator


def test_served_from_card_reads_the_signature_list():
    served = served_from_card(FAKE_CARD, 10, "h:1")
    assert served.from_ratings and served.k == 10 and served.movie_ids == FAKE_CARD["vocabulary"]["movie_ids"]
    assert served_from_card(FAKE_CARD, 500, "h:1").k == FAKE_CARD["max_k"]
    without = {**FAKE_CARD, "signatures": [s for s in FAKE_CARD["signatures"] if s != RECOMMEND_FROM_RATINGS_SIGNATURE]}
    assert not served_from_card(without, 10, "h:1").from_ratings
    older = {key: value for key, value in FAKE_CARD.items() if key != "signatures"}  # a card from before the list
    assert not served_from_card(older, 10, "h:1").from_ratings
    assert fallback(10).from_ratings  # card unreadable: keep every task, so failures show


def test_a_card_without_vocabulary_is_refused_with_the_fix():
    with pytest.raises(RuntimeError, match="at h:1 has no max_k, vocabulary in its model card: re-export it"):
        served_from_card({"model_name": "movielens"}, 10, "h:1")
