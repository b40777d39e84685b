"""Top-k metrics on hand-computed cases, top_k_excluding against a brute-force reference, who is evaluated,
and the top k of a served ``recommend``."""

import math

import numpy as np
import pytest

from train import evaluation
from train.evaluation import rmse, top_k_excluding, top_k_metrics
from train.interactions import Interactions


def table(rows: dict[int, list[int]], n_rows: int, n_cols: int) -> Interactions:
    pairs = [(r, c) for r, cols in rows.items() for c in cols]
    r, c = (np.array(x, dtype=np.int64) for x in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
    return Interactions.from_pairs(r, c, n_rows, n_cols)


def test_recall_ndcg_coverage_by_hand():
    relevant = table({0: [1, 4], 1: [0, 1, 2, 3, 5]}, n_rows=3, n_cols=10)
    top = np.array([
        [4, 2, 1],  # hits at ranks 1 and 3 of 2 relevant
        [2, 7, 3],  # hits at ranks 1 and 3 of 5 relevant (more than k)
        [6, 7, 8],  # user 2 has no relevant movie: skipped, but its list counts for coverage
    ])
    got = top_k_metrics(top, relevant, np.array([0, 1, 2]), k=3)

    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg_2 = 1 / math.log2(2) + 1 / math.log2(3)
    idcg_3 = idcg_2 + 1 / math.log2(4)
    assert got["recall_at_3"] == pytest.approx((2 / 2 + 2 / 3) / 2)
    assert got["ndcg_at_3"] == pytest.approx((dcg / idcg_2 + dcg / idcg_3) / 2)
    assert got["coverage_at_3"] == len({4, 2, 1, 7, 3, 6, 8})
    assert got["users_evaluated"] == 2


def test_rank_order_matters_for_ndcg_not_recall():
    relevant = table({0: [5]}, n_rows=1, n_cols=10)
    early = top_k_metrics(np.array([[5, 1, 2]]), relevant, np.array([0]), k=3)
    late = top_k_metrics(np.array([[1, 2, 5]]), relevant, np.array([0]), k=3)
    assert early["recall_at_3"] == late["recall_at_3"] == 1.0
    assert early["ndcg_at_3"] == 1.0
    assert late["ndcg_at_3"] == pytest.approx(1 / math.log2(4))


def test_rows_are_matched_to_their_users():
    relevant = table({3: [1], 7: [2]}, n_rows=8, n_cols=4)
    got = top_k_metrics(np.array([[2, 0], [1, 0]]), relevant, np.array([7, 3]), k=2)
    assert got["recall_at_2"] == 1.0 and got["ndcg_at_2"] == 1.0


def test_padding_is_no_movie_and_never_a_hit():
    # User 0 holds the last column: a -1 of user 1 must not be read as (0, n_cols - 1).
    relevant = table({0: [4], 1: [2]}, n_rows=2, n_cols=5)
    top = np.array([[4, -1, -1], [-1, 2, -1]])
    got = top_k_metrics(top, relevant, np.array([0, 1]), k=3)
    assert got["recall_at_3"] == 1.0
    assert got["ndcg_at_3"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert got["coverage_at_3"] == 2


def test_only_the_first_k_columns_count():
    relevant = table({0: [9]}, n_rows=1, n_cols=10)
    got = top_k_metrics(np.array([[0, 1, 9]]), relevant, np.array([0]), k=2)
    assert got["recall_at_2"] == 0.0 and got["ndcg_at_2"] == 0.0 and got["coverage_at_2"] == 2


def test_default_k_names():
    relevant = table({0: [0]}, n_rows=1, n_cols=20)
    got = top_k_metrics(np.arange(10)[None, :], relevant, np.array([0]))
    assert set(got) == {"recall_at_10", "ndcg_at_10", "coverage_at_10", "users_evaluated"}
    assert evaluation.metric_names(10) == ("recall_at_10", "ndcg_at_10", "coverage_at_10")


def test_no_user_with_a_relevant_movie():
    got = top_k_metrics(np.array([[0, 1]]), table({}, 1, 3), np.array([0]), k=2)
    assert got["users_evaluated"] == 0 and math.isnan(got["recall_at_2"]) and got["coverage_at_2"] == 2


@pytest.mark.parametrize(
    "top, users, match",
    [
        (np.array([[1, 1]]), np.array([0]), "twice"),
        (np.array([[1, 2], [0, 1]]), np.array([0, 0]), "distinct"),
        (np.array([[1]]), np.array([0]), r"\[1, ≥2\]"),
        (np.array([[1, 3]]), np.array([0]), "outside"),
        (np.array([[1, -2]]), np.array([0]), "outside"),
        (np.array([[1.0, 2.0]]), np.array([0]), "integer"),
    ],
)
def test_top_k_metrics_rejects(top, users, match):
    with pytest.raises(ValueError, match=match):
        top_k_metrics(top, table({0: [1]}, 1, 3), users, k=2)


def test_rmse():
    assert rmse(np.array([1.0, 2.0, 3.0]), np.array([1, 2, 5])) == pytest.approx(math.sqrt(4 / 3))
    with pytest.raises(ValueError):
        rmse(np.array([1.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        rmse(np.array([]), np.array([]))


def brute_force_top_k(scores: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Dense reference: sort (−score, index) over the allowed, finite movies; pad with -1."""
    out = np.full((len(scores), k), -1, dtype=np.int64)
    for i, (row, banned) in enumerate(zip(scores, excluded)):
        allowed = [m for m in range(len(row)) if not banned[m] and row[m] != -np.inf]
        best = sorted(allowed, key=lambda m: (-row[m], m))[:k]
        out[i, : len(best)] = best
    return out


def test_top_k_excluding_matches_brute_force_and_never_returns_an_excluded_movie():
    rng = np.random.default_rng(0)
    for trial in range(150):
        n_users, n_movies = int(rng.integers(1, 15)), int(rng.integers(1, 25))
        density = rng.random()
        dense_excluded = rng.random((n_users, n_movies)) < density
        exclude = Interactions.from_pairs(*np.nonzero(dense_excluded), n_users, n_movies)
        # Few distinct values so ties are common; some movies the model rules out with -inf.
        all_scores = rng.integers(0, 4, size=(n_users, n_movies)).astype(np.float64)
        all_scores[rng.random((n_users, n_movies)) < 0.1] = -np.inf
        users = rng.permutation(n_users)[: int(rng.integers(1, n_users + 1))]
        k = int(rng.integers(1, n_movies + 4))
        batch = int(rng.integers(1, 5))
        calls = []

        def scores_fn(chunk):
            calls.append(len(chunk))
            view = all_scores[chunk]
            view.flags.writeable = False  # top_k_excluding must not write into the caller's array
            return view

        got = top_k_excluding(scores_fn, users, exclude, k=k, batch=batch)
        want = brute_force_top_k(all_scores[users], dense_excluded[users], k)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
        assert max(calls) <= batch and sum(calls) == len(users)
        picked = got >= 0
        assert not dense_excluded[np.repeat(users, k).reshape(got.shape)[picked], got[picked]].any()


def test_top_k_excluding_integer_scores_and_broadcast_views():
    exclude = table({0: [0], 1: []}, 2, 4)
    popular = np.array([5, 9, 9, 1])
    got = top_k_excluding(lambda c: np.broadcast_to(popular, (len(c), 4)), np.array([0, 1]), exclude, k=3)
    np.testing.assert_array_equal(got, [[1, 2, 3], [1, 2, 0]])


def test_top_k_excluding_rejects_nan_and_wrong_shapes():
    exclude = table({}, 2, 3)
    with pytest.raises(ValueError, match="NaN"):
        top_k_excluding(lambda c: np.full((len(c), 3), np.nan), np.array([0]), exclude, k=1)
    with pytest.raises(ValueError, match="shape"):
        top_k_excluding(lambda c: np.zeros((len(c), 2)), np.array([0]), exclude, k=1)
    with pytest.raises(ValueError, match="outside"):
        top_k_excluding(lambda c: np.zeros((len(c), 3)), np.array([2]), exclude, k=1)


def test_gather_and_dense_rows():
    t = table({0: [1, 3], 2: [0], 3: [2, 3]}, 4, 4)
    positions, cols = evaluation.gather_rows(t, np.array([3, 1, 0]))
    assert list(positions) == [0, 0, 2, 2] and list(cols) == [2, 3, 1, 3]
    np.testing.assert_array_equal(evaluation.dense_rows(t, np.array([2, 0])), [[1, 0, 0, 0], [0, 1, 0, 1]])


def test_evaluation_users_sample_only_above_the_limit():
    users = np.array([5, 3, 5, 9, 1, 3])
    assert evaluation.evaluation_users(users, 10, seed=1).tolist() == [1, 3, 5, 9]
    assert evaluation.evaluation_users(users, 0, seed=1).tolist() == [1, 3, 5, 9]
    sample = evaluation.evaluation_users(np.arange(1000), 50, seed=1)
    assert len(sample) == 50 == len(set(sample.tolist())) and sample.tolist() == sorted(sample.tolist())
    assert sample.tolist() == evaluation.evaluation_users(np.arange(1000), 50, seed=1).tolist()


def test_recommend_top_k_drops_the_extra_exclusions():
    also = Interactions.from_pairs(np.array([1, 1]), np.array([5, 7]), 3, 10)
    ranked = {1: [5, 3, 7, 2, 9], 2: [7, 5, 4, 1, 8]}
    top = evaluation.recommend_top_k(lambda users, k: np.array([ranked[u][:k] for u in users]), np.array([1, 2]), also, k=3)
    assert top.tolist() == [[3, 2, 9], [7, 5, 4]]


def test_earliest_ratings_are_each_users_first_by_time_in_any_row_order():
    from types import SimpleNamespace

    rows = SimpleNamespace(  # user 3's rows shuffled, user 1's in time order, user 2 not asked for
        user=np.array([3, 1, 3, 2, 1, 3, 1]), movie=np.array([30, 10, 31, 20, 11, 32, 12]),
        rating=np.array([1.0, 5.0, 2.0, 4.0, 4.0, 3.0, 3.0], np.float32),
        timestamp=np.array([300, 100, 100, 50, 200, 200, 300]))
    movies, ratings, chosen = evaluation.earliest_ratings(rows, np.array([1, 3]), 2)
    assert movies.tolist() == [[10, 11], [31, 32]] and ratings.tolist() == [[5.0, 4.0], [2.0, 3.0]]
    assert chosen.tolist() == [False, True, True, False, True, True, False]
