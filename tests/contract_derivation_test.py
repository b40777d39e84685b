"""One declaration of the API: change a signature in ``contract.SIGNATURES`` and everything follows.

Each test patches ``client.contract.SIGNATURES`` (and common.contract's re-export) in memory with a
changed API, then checks that the pieces that must agree with it do, without
being edited: the client's request builders and response parsers (against the
fake server, whose metadata, input checks and answers also derive from the
contract), the load test's answer checks and the exporter's signature building.
A component that spelled a dtype, an output or a rank itself would fail here.
The change, relative to whatever the contract declares today (so a real change of
the contract does not break this test): recommend's k flips between DT_INT32 and
DT_INT64, predicted_rating and recommend's scores between DT_FLOAT and DT_DOUBLE,
and recommend stops returning movie_titles.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from client import MalformedResponse, RecommenderClient, protocol
from client import contract as api_contract
from client.messages import DataType, PredictResponse
from client.tensors import encode, to_numpy
from common import contract
from common.contract import (
    K,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    TensorDecl,
)
from loadtest.checks import CheckFailed, check_ratings, check_recommendations
from testing.fake_serving import fake_server


_FLIP = {"DT_FLOAT": "DT_DOUBLE", "DT_DOUBLE": "DT_FLOAT", "DT_INT32": "DT_INT64", "DT_INT64": "DT_INT32"}


def _flipped(tensors: tuple[TensorDecl, ...], name: str) -> tuple[TensorDecl, ...]:
    return tuple(replace(t, dtype=_FLIP[t.dtype]) if t.name == name else t for t in tensors)


@pytest.fixture
def changed_api(monkeypatch: pytest.MonkeyPatch) -> dict[str, contract.SignatureDecl]:
    today = contract.SIGNATURES
    signatures = dict(today)
    predict = signatures[PREDICT_SIGNATURE]
    signatures[PREDICT_SIGNATURE] = replace(predict, outputs=_flipped(predict.outputs, PREDICTED_RATING))
    recommend = signatures[RECOMMEND_SIGNATURE]
    outputs = tuple(t for t in _flipped(recommend.outputs, SCORES) if t.name != MOVIE_TITLES)
    signatures[RECOMMEND_SIGNATURE] = replace(recommend, inputs=_flipped(recommend.inputs, K), outputs=outputs)
    # The declaration lives in client/contract.py (common.contract re-exports it): patch it there,
    # and the re-exported name too, so both spellings see the change.
    monkeypatch.setattr(api_contract, "SIGNATURES", signatures)
    monkeypatch.setattr(contract, "SIGNATURES", signatures)
    assert contract.signature(RECOMMEND_SIGNATURE).input(K).dtype != today[RECOMMEND_SIGNATURE].input(K).dtype
    return signatures


def _rating(signatures: dict[str, contract.SignatureDecl]) -> TensorDecl:
    return signatures[PREDICT_SIGNATURE].output(PREDICTED_RATING)


def test_request_builders_follow(changed_api):
    k = changed_api[RECOMMEND_SIGNATURE].input(K)
    request = protocol.recommend_request(contract.MODEL_NAME, None, ["1", "2"], 5)
    assert DataType.Name(request.inputs[K].dtype) == k.dtype and to_numpy(request.inputs[K]).tolist() == [5, 5]
    # recommend_from_ratings keeps its declaration.
    request = protocol.recommend_from_ratings_request(contract.MODEL_NAME, None, [""], [[("1", 5.0)]], 5)
    assert DataType.Name(request.inputs[K].dtype) == changed_api[RECOMMEND_FROM_RATINGS_SIGNATURE].input(K).dtype


def test_parsers_follow(changed_api):
    old, new = replace(_rating(changed_api), dtype=_FLIP[_rating(changed_api).dtype]), _rating(changed_api)
    response = PredictResponse()
    response.outputs[PREDICTED_RATING].CopyFrom(encode(old, [3.5]))
    with pytest.raises(MalformedResponse, match=f"output '{PREDICTED_RATING}': expected {new.dtype}"):
        protocol.parse_predict(response, 1)  # what the old API answered is now wrong
    response.outputs[PREDICTED_RATING].CopyFrom(encode(new, [3.5]))
    assert protocol.parse_predict(response, 1).dtype == np.dtype(new.numpy_dtype)


def test_client_and_fake_server_agree_on_the_changed_api(changed_api):
    rating = _rating(changed_api)
    with fake_server() as (target, behaviour), RecommenderClient(target) as client:
        meta = client.metadata().signatures[RECOMMEND_SIGNATURE]
        assert meta.inputs[K].dtype == changed_api[RECOMMEND_SIGNATURE].input(K).dtype
        assert set(meta.outputs) == {MOVIE_IDS, SCORES}
        assert meta.outputs[SCORES].dtype == changed_api[RECOMMEND_SIGNATURE].output(SCORES).dtype
        top = client.recommend(1, k=3)
        assert [r.movie_id for r in top] == ["1", "2", "3"] and all(r.title == "" for r in top)
        check_recommendations([top], 1, 3, RECOMMEND_SIGNATURE)  # no titles declared: none expected
        ratings = client.predict(1, [2, 3])
        assert ratings.dtype == np.dtype(rating.numpy_dtype)
        check_ratings(ratings, 2)
        with pytest.raises(CheckFailed, match=f"expected {PREDICTED_RATING} as {rating.numpy_dtype}"):
            check_ratings(ratings.astype(contract.NUMPY_DTYPES[_FLIP[rating.dtype]]), 2)
        # The signature the change left alone keeps its titles (if it declares them), and the checks want them.
        new = client.recommend_from_ratings({10: 5}, k=3)
        check_recommendations([new], 1, 3, RECOMMEND_FROM_RATINGS_SIGNATURE)
        if changed_api[RECOMMEND_FROM_RATINGS_SIGNATURE].has_output(MOVIE_TITLES):
            assert all(r.title for r in new)
            with pytest.raises(CheckFailed, match="empty movie id or title"):
                check_recommendations([top], 1, 3, RECOMMEND_FROM_RATINGS_SIGNATURE)


def test_exporters_signatures_follow(changed_api):
    import tensorflow as tf

    from export.serving_module import input_signature, outputs, tf_dtype

    recommend = changed_api[RECOMMEND_SIGNATURE]
    assert [spec.dtype for spec in input_signature(RECOMMEND_SIGNATURE)] == [tf_dtype(t) for t in recommend.inputs]
    computed = {
        MOVIE_IDS: tf.constant([["1", ""]]), MOVIE_TITLES: tf.constant([["A", ""]]), SCORES: tf.constant([[2.0, -np.inf]]),
    }
    served = outputs(RECOMMEND_SIGNATURE, computed)
    assert set(served) == {MOVIE_IDS, SCORES} and served[SCORES].dtype == tf_dtype(recommend.output(SCORES))
    with pytest.raises(ValueError, match=f"declares output '{SCORES}' of {RECOMMEND_SIGNATURE}, which the serving graph"):
        outputs(RECOMMEND_SIGNATURE, {MOVIE_IDS: computed[MOVIE_IDS]})
