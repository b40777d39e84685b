"""One declaration of the API: change a signature in ``contract.SIGNATURES`` and everything follows.

Each test patches ``common.contract.SIGNATURES`` in memory (no file edited) with a
changed API, then checks that the pieces that must agree with it do, without
being edited: the client's request builders and response parsers (against the
fake server, whose metadata, input checks and answers also derive from the
contract), the load test's answer checks and the exporter's signature building.
A component that spelled a dtype, an output or a rank itself would fail here.
The change: k becomes DT_INT64, predicted_rating and recommend's scores become
DT_DOUBLE, and recommend stops returning movie_titles.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

from client import MalformedResponse, RecommenderClient, protocol
from client.fakes import fake_server
from client.tensors import encode
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


def _changed(tensors: tuple[TensorDecl, ...], name: str, **changes) -> tuple[TensorDecl, ...]:
    return tuple(replace(t, **changes) if t.name == name else t for t in tensors)


@pytest.fixture
def changed_api(monkeypatch: pytest.MonkeyPatch) -> dict[str, contract.SignatureDecl]:
    signatures = dict(contract.SIGNATURES)
    predict = signatures[PREDICT_SIGNATURE]
    signatures[PREDICT_SIGNATURE] = replace(predict, outputs=_changed(predict.outputs, PREDICTED_RATING, dtype="DT_DOUBLE"))
    recommend = signatures[RECOMMEND_SIGNATURE]
    outputs = tuple(t for t in _changed(recommend.outputs, SCORES, dtype="DT_DOUBLE") if t.name != MOVIE_TITLES)
    signatures[RECOMMEND_SIGNATURE] = replace(recommend, inputs=_changed(recommend.inputs, K, dtype="DT_INT64"), outputs=outputs)
    monkeypatch.setattr(contract, "SIGNATURES", signatures)
    return signatures


def test_the_change_is_real():
    """Guards the guard: the patched declaration differs from today's in each way the tests rely on."""
    assert contract.signature(RECOMMEND_SIGNATURE).input(K).dtype != "DT_INT64"
    assert contract.signature(PREDICT_SIGNATURE).output(PREDICTED_RATING).dtype != "DT_DOUBLE"
    assert contract.signature(RECOMMEND_SIGNATURE).has_output(MOVIE_TITLES)


def test_request_builders_follow(changed_api):
    request = protocol.recommend_request(contract.MODEL_NAME, None, ["1", "2"], 5)
    assert request.inputs[K].dtype == types_pb2.DT_INT64 and list(request.inputs[K].int64_val) == [5, 5]
    # recommend_from_ratings keeps its declaration: its k is still DT_INT32.
    request = protocol.recommend_from_ratings_request(contract.MODEL_NAME, None, [""], [[("1", 5.0)]], 5)
    assert request.inputs[K].dtype == types_pb2.DataType.Value(changed_api[RECOMMEND_FROM_RATINGS_SIGNATURE].input(K).dtype)


def test_parsers_follow(changed_api):
    response = predict_pb2.PredictResponse()
    response.outputs[PREDICTED_RATING].CopyFrom(encode(TensorDecl(PREDICTED_RATING, "DT_FLOAT", (-1,)), [3.5]))
    with pytest.raises(MalformedResponse, match=f"output '{PREDICTED_RATING}': expected DT_DOUBLE"):
        protocol.parse_predict(response, 1)  # what the old API answered is now wrong
    response.outputs[PREDICTED_RATING].CopyFrom(encode(changed_api[PREDICT_SIGNATURE].output(PREDICTED_RATING), [3.5]))
    assert protocol.parse_predict(response, 1).dtype == np.float64


def test_client_and_fake_server_agree_on_the_changed_api(changed_api):
    with fake_server() as (target, behaviour), RecommenderClient(target) as client:
        meta = client.metadata().signatures[RECOMMEND_SIGNATURE]
        assert meta.inputs[K].dtype == "DT_INT64" and set(meta.outputs) == {MOVIE_IDS, SCORES}
        top = client.recommend(1, k=3)
        assert behaviour.last_request.inputs[K].dtype == types_pb2.DT_INT64
        assert [r.movie_id for r in top] == ["1", "2", "3"] and all(r.title == "" for r in top)
        check_recommendations([top], 1, 3, RECOMMEND_SIGNATURE)  # no titles declared: none expected
        ratings = client.predict(1, [2, 3])
        assert ratings.dtype == np.float64
        check_ratings(ratings, 2)
        # The signature the change left alone still has titles, and the checks still want them.
        new = client.recommend_from_ratings({10: 5}, k=3)
        assert all(r.title for r in new)
        check_recommendations([new], 1, 3, RECOMMEND_FROM_RATINGS_SIGNATURE)
        with pytest.raises(CheckFailed, match="empty movie id or title"):
            check_recommendations([top], 1, 3, RECOMMEND_FROM_RATINGS_SIGNATURE)
        with pytest.raises(CheckFailed, match=f"expected {PREDICTED_RATING} as float64"):
            check_ratings(ratings.astype(np.float32), 2)


def test_exporters_signatures_follow(changed_api):
    import tensorflow as tf

    from export.serving_module import input_signature, outputs

    assert [spec.dtype for spec in input_signature(RECOMMEND_SIGNATURE)] == [tf.string, tf.int64]
    computed = {
        MOVIE_IDS: tf.constant([["1", ""]]), MOVIE_TITLES: tf.constant([["A", ""]]), SCORES: tf.constant([[2.0, -np.inf]]),
    }
    served = outputs(RECOMMEND_SIGNATURE, computed)
    assert set(served) == {MOVIE_IDS, SCORES} and served[SCORES].dtype == tf.float64
    with pytest.raises(ValueError, match=f"declares output '{SCORES}' of {RECOMMEND_SIGNATURE}, which the serving graph"):
        outputs(RECOMMEND_SIGNATURE, {MOVIE_IDS: computed[MOVIE_IDS]})
