"""The response checks accept right answers and flag each kind of wrong one."""

import numpy as np
import pytest

from client.protocol import Recommendation
from common import contract
from common.contract import PREDICT_SIGNATURE, PREDICTED_RATING
from loadtest.checks import CheckFailed, check_excluded, check_ratings, check_recommendations


def _row(scores, ids=None):
    ids = ids or [str(i) for i in range(1, len(scores) + 1)]
    return [Recommendation(m, f"Movie {m}", s) for m, s in zip(ids, scores)]


def test_good_recommendations_pass():
    check_recommendations([_row([3.0, 2.0, 2.0]), _row([5.0, 1.0, -1.0])], n_users=2, k=3)


@pytest.mark.parametrize(
    "rows, n_users, k, message",
    [
        ([_row([1.0, 2.0])], 1, 2, "not sorted"),
        ([_row([2.0, float("nan")])], 1, 2, "non-finite"),
        ([_row([float("inf"), 1.0])], 1, 2, "non-finite"),
        ([_row([2.0])], 1, 2, "k=2 .* got 1"),
        ([_row([2.0, 1.0])], 2, 2, "expected 2 rows"),
        ([_row([2.0, 1.0], ids=["7", "7"])], 1, 2, "duplicate"),
        ([[Recommendation("1", "", 1.0)]], 1, 1, "empty movie id or title"),
    ],
)
def test_wrong_recommendations_fail(rows, n_users, k, message):
    with pytest.raises(CheckFailed, match=message):
        check_recommendations(rows, n_users, k)


def test_ratings():
    dtype = contract.signature(PREDICT_SIGNATURE).output(PREDICTED_RATING).numpy_dtype  # as the client decodes it
    check_ratings(np.array([3.5, 4.0], dtype), 2)
    with pytest.raises(CheckFailed, match="one rating per pair"):
        check_ratings(np.array([3.5], dtype), 2)
    with pytest.raises(CheckFailed, match="one rating per pair"):
        check_ratings(np.array([[3.5], [4.0]], dtype), 2)
    with pytest.raises(CheckFailed, match="non-finite"):
        check_ratings(np.array([np.nan, 1.0], dtype), 2)
    with pytest.raises(CheckFailed, match=f"expected {PREDICTED_RATING} as {dtype}"):
        check_ratings(np.array([3, 4], np.int8), 2)


def test_given_movies_must_not_come_back():
    rows = [_row([3.0, 2.0], ids=["7", "8"]), _row([1.0], ids=["9"])]
    check_excluded(rows, [{"1": 5.0, "2": 4.0}, {"7": 1.0}])  # dicts of ratings work as sets of ids
    with pytest.raises(CheckFailed, match="a movie the user rated was recommended back"):
        check_excluded(rows, [{"8"}, set()])
    with pytest.raises(CheckFailed, match="expected 1 rows"):
        check_excluded(rows, [{"1"}])
