"""The client bench's canned answers stand in for a server's: same outputs, shapes and size as the fake's."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from client import protocol
from client.contract import MODEL_NAME, PREDICTED_RATING, RECOMMEND_FROM_RATINGS_SIGNATURE
from client.messages import PredictRequest, PredictResponse
from client.tensors import to_numpy
from loadtest.client_bench import _canned, _recommendations, measure
from testing.fake_serving import FakeBehaviour, FakeServing


class _Context:
    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AssertionError(f"the fake refused the bench's request: {code}: {details}")


def _from_ratings_request() -> PredictRequest:
    users, rows = protocol.ratings_batch({str(m): float(m % 5 + 1) for m in range(1, 21)}, None)
    return protocol.recommend_from_ratings_request(MODEL_NAME, None, users, rows, 10)


CASES = {
    "recommend 1 user": (protocol.recommend_request(MODEL_NAME, None, ["1"], 10), _recommendations(1, 10)),
    "recommend 8 users": (protocol.recommend_request(MODEL_NAME, None, [str(u) for u in range(1, 9)], 10),
                          _recommendations(8, 10)),
    "recommend_from_ratings": (_from_ratings_request(), _recommendations(1, 10, first_movie=111)),
    "predict batch 50": (protocol.predict_request(MODEL_NAME, None, ["1"] * 50, ["2"] * 50),
                         {PREDICTED_RATING: np.full(50, 3.5, np.float32)}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_canned_answer_is_shaped_and_sized_like_the_fake_servers(case):
    request, values = CASES[case]
    canned = _canned(request, values)
    fake = FakeServing(FakeBehaviour()).Predict(request, _Context()).SerializeToString()
    ours, theirs = PredictResponse.FromString(canned), PredictResponse.FromString(fake)
    assert set(ours.outputs) == set(theirs.outputs)
    for name in ours.outputs:
        assert ours.outputs[name].dtype == theirs.outputs[name].dtype, name
        assert to_numpy(ours.outputs[name]).shape == to_numpy(theirs.outputs[name]).shape, name
    assert len(canned) == len(fake)


def test_a_canned_answer_decodes():
    request, values = CASES["recommend_from_ratings"]
    (row,) = protocol.parse_recommend(PredictResponse.FromString(_canned(request, values)), 1,
                                      RECOMMEND_FROM_RATINGS_SIGNATURE)
    assert [r.movie_id for r in row] == [str(m) for m in range(111, 121)]


def test_measure_times_every_case():
    results = measure(calls=4)
    assert len(results) == 5 and all(us > 0 for us in results.values())
