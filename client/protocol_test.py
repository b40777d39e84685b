"""Input validation and response parsing, without a server."""

import grpc
import numpy as np
import pytest

from client import protocol
from client.errors import MalformedResponse, RecommenderError
from client.tensors import encode, to_numpy
from client.messages import DataType, PredictResponse, TensorProto
from common import contract
from common.contract import (
    K,
    MAX_RATED_MOVIES,
    MAX_RECOMMEND_USERS,
    MODEL_CARD,
    MODEL_CARD_REQUEST,
    MODEL_CARD_SIGNATURE,
    MOVIE_IDS,
    MOVIE_TITLES,
    PREDICT_SIGNATURE,
    PREDICTED_RATING,
    RATED_MOVIE_IDS,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    RECOMMEND_SIGNATURE,
    SCORES,
    USER_ID,
)


def test_ids_accept_int_str_and_numpy_ints():
    assert protocol.normalize_ids(42, "user_ids") == ["42"]
    assert protocol.normalize_ids(["1", 2, np.int64(3)], "user_ids") == ["1", "2", "3"]


@pytest.mark.parametrize(
    "values, error, message",
    [
        ([], ValueError, "user_ids: at least one id is required"),
        ("", ValueError, "user_ids: ids must be non-empty"),
        (["1", " "], ValueError, r"user_ids\[1\]: ids must be non-empty"),
        ([True], TypeError, r"user_ids\[0\]: ids must be str or int, got bool"),
        ([1.5], TypeError, "got float"),
        (None, TypeError, "expected an id or a sequence of ids"),
    ],
)
def test_bad_ids(values, error, message):
    with pytest.raises(error, match=message):
        protocol.normalize_ids(values, "user_ids")


@pytest.mark.parametrize("k, error", [(0, ValueError), (-3, ValueError), (2**31, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_k(k, error):
    with pytest.raises(error, match="k must"):
        protocol.validate_k(k)


def test_pair_ids_broadcasts_a_single_id_only():
    assert protocol.pair_ids(42, [50, 51]) == (["42", "42"], ["50", "51"])
    assert protocol.pair_ids([1, 2], 7) == (["1", "2"], ["7", "7"])
    assert protocol.pair_ids([1], [7]) == (["1"], ["7"])
    with pytest.raises(ValueError, match="got 2 user ids and 3 movie ids"):
        protocol.pair_ids([1, 2], [3, 4, 5])


def test_requests_name_the_contract_signatures_and_inputs():
    rec = protocol.recommend_request("movielens", 3, ["1", "2"], 10)
    assert rec.model_spec.signature_name == RECOMMEND_SIGNATURE and rec.model_spec.version.value == 3
    assert set(rec.inputs) == {USER_ID, K}
    assert to_numpy(rec.inputs[K]).tolist() == [10, 10]  # one k per user: a batch dimension
    card = protocol.model_card_request("movielens", None)
    assert card.model_spec.signature_name == MODEL_CARD_SIGNATURE and to_numpy(card.inputs[MODEL_CARD_REQUEST]).tolist() == [0]
    pred = protocol.predict_request("movielens", None, ["1"], ["2"])
    assert pred.model_spec.signature_name == PREDICT_SIGNATURE and not pred.model_spec.HasField("version")
    assert list(pred.output_filter) == [PREDICTED_RATING]


def _out(signature: str, key: str, values) -> TensorProto:
    """Output ``key`` of ``signature`` as common/contract.py declares it (dtype, rank)."""
    return encode(contract.signature(signature).output(key), values)


def _recommend_response(ids, titles, scores) -> PredictResponse:
    response = PredictResponse()
    response.outputs[MOVIE_IDS].CopyFrom(_out(RECOMMEND_SIGNATURE, MOVIE_IDS, ids))
    response.outputs[MOVIE_TITLES].CopyFrom(_out(RECOMMEND_SIGNATURE, MOVIE_TITLES, titles))
    response.outputs[SCORES].CopyFrom(_out(RECOMMEND_SIGNATURE, SCORES, scores))
    return response


def test_parse_recommend_rows_in_order():
    response = _recommend_response([["5", "9"], ["7", "1"]], [["A", "B"], ["C", "D"]], [[2.0, 1.0], [4.0, 3.0]])
    rows = protocol.parse_recommend(response, 2)
    assert rows == [
        [protocol.Recommendation("5", "A", 2.0), protocol.Recommendation("9", "B", 1.0)],
        [protocol.Recommendation("7", "C", 4.0), protocol.Recommendation("1", "D", 3.0)],
    ]


def test_parse_recommend_drops_the_padding_past_each_rows_k():
    """[users, K] with K the largest k of the (possibly server-merged) batch; padding is id "", score -inf."""
    inf = float("-inf")
    response = _recommend_response([["5", "9", ""], ["7", "1", "3"]], [["A", "B", ""], ["C", "D", "E"]], [[2.0, 1.0, inf], [4.0, 3.0, 2.0]])
    rows = protocol.parse_recommend(response, 2)
    assert [[r.movie_id for r in row] for row in rows] == [["5", "9"], ["7", "1", "3"]]


def test_parse_recommend_rejects_mismatched_shapes_and_missing_outputs():
    response = _recommend_response([["5", "9"]], [["A", "B"]], [[2.0]])
    with pytest.raises(MalformedResponse, match=r"\[1, 2\], \[1, 2\], \[1, 1\]"):
        protocol.parse_recommend(response, 1)
    with pytest.raises(MalformedResponse, match="one shape"):
        protocol.parse_recommend(_recommend_response([["5"]], [["A"]], [[1.0]]), 2)
    del response.outputs[SCORES]
    with pytest.raises(MalformedResponse, match=f"no output '{SCORES}'"):
        protocol.parse_recommend(response, 1)


def test_parse_predict_checks_length():
    response = PredictResponse()
    response.outputs[PREDICTED_RATING].CopyFrom(_out(PREDICT_SIGNATURE, PREDICTED_RATING, [3.5, 4.0]))
    ratings = protocol.parse_predict(response, 2)
    declared = contract.signature(PREDICT_SIGNATURE).output(PREDICTED_RATING)
    assert ratings.dtype == np.dtype(declared.numpy_dtype) and ratings.tolist() == [3.5, 4.0]
    with pytest.raises(MalformedResponse, match=r"expected 3 rows"):
        protocol.parse_predict(response, 3)


def _predict_response(proto) -> PredictResponse:
    response = PredictResponse()
    response.outputs[PREDICTED_RATING].CopyFrom(proto)
    return response


def _unknown_rank():
    proto = _out(PREDICT_SIGNATURE, PREDICTED_RATING, [1.0])
    proto.tensor_shape.unknown_rank = True
    return proto


def _too_few_values():
    proto = _out(PREDICT_SIGNATURE, PREDICTED_RATING, [1.0, 2.0])
    proto.tensor_shape.dim[0].size = 3
    return proto


@pytest.mark.parametrize(
    "proto, message",
    [
        (_out(MODEL_CARD_SIGNATURE, MODEL_CARD, ["3.5"]), f"output '{PREDICTED_RATING}': expected {contract.signature(PREDICT_SIGNATURE).output(PREDICTED_RATING).dtype} .* got DT_STRING"),
        (_unknown_rank(), "output 'predicted_rating': tensor has unknown rank"),
        (_too_few_values(), r"output 'predicted_rating': tensor of shape \[3\] needs 3 values"),
    ],
)
def test_undecodable_outputs_are_malformed_responses(proto, message):
    with pytest.raises(MalformedResponse, match=message) as raised:
        protocol.parse_predict(_predict_response(proto), 1)
    assert isinstance(raised.value, RecommenderError) and raised.value.code == grpc.StatusCode.INTERNAL


def test_recommend_outputs_must_have_their_declared_dtypes_and_ranks():
    declared = contract.signature(RECOMMEND_SIGNATURE)
    response = _recommend_response([["5"]], [["A"]], [[2.0]])
    response.outputs[SCORES].CopyFrom(_out(RECOMMEND_SIGNATURE, MOVIE_IDS, [["2.0"]]))
    with pytest.raises(MalformedResponse, match=f"output '{SCORES}': expected {declared.output(SCORES).dtype} .* got DT_STRING"):
        protocol.parse_recommend(response, 1)
    response = _recommend_response([["5"]], [["A"]], [[2.0]])
    response.outputs[MOVIE_TITLES].CopyFrom(_out(RECOMMEND_SIGNATURE, SCORES, [[1.0]]))
    with pytest.raises(MalformedResponse, match=f"output '{MOVIE_TITLES}': expected DT_STRING"):
        protocol.parse_recommend(response, 1)
    response = _recommend_response([["5"]], [["A"]], [[2.0]])
    response.outputs[MOVIE_IDS].CopyFrom(_out(MODEL_CARD_SIGNATURE, MODEL_CARD, ["5"]))  # rank 1, not [users, k]
    with pytest.raises(MalformedResponse, match=rf"output '{MOVIE_IDS}': expected shape \[-1, -1\]"):
        protocol.parse_recommend(response, 1)


def test_model_card_must_be_one_json_object():
    response = PredictResponse()
    response.outputs[MODEL_CARD].CopyFrom(_out(MODEL_CARD_SIGNATURE, MODEL_CARD, ['{"max_k": 100}']))
    assert protocol.parse_model_card(response) == {"max_k": 100}
    for text, message in (("[1]", "expected a JSON object"), ("{", "not valid JSON")):
        response.outputs[MODEL_CARD].CopyFrom(_out(MODEL_CARD_SIGNATURE, MODEL_CARD, [text]))
        with pytest.raises(MalformedResponse, match=message):
            protocol.parse_model_card(response)


def test_recommend_request_caps_users():
    from common.contract import MAX_RECOMMEND_USERS

    from client.protocol import recommend_request

    recommend_request("movielens", None, ["1"] * MAX_RECOMMEND_USERS, 10)
    with pytest.raises(ValueError, match=f"at most {MAX_RECOMMEND_USERS} users"):
        recommend_request("movielens", None, ["1"] * (MAX_RECOMMEND_USERS + 1), 10)


def test_ratings_batch_normalizes_ids_ratings_and_profiles():
    assert protocol.ratings_batch({50: 5, "172 ": np.float32(4.5)}, None) == ([""], [[("50", 5.0), ("172", 4.5)]])
    assert protocol.ratings_batch({50: 5}, np.int64(42)) == (["42"], [[("50", 5.0)]])
    users, rows = protocol.ratings_batch([{1: 1}, {2: 2, 3: 3}], [None, "7"])
    assert users == ["", "7"] and rows == [[("1", 1.0)], [("2", 2.0), ("3", 3.0)]]
    assert protocol.ratings_batch(({1: 1},), None) == ([""], [[("1", 1.0)]])  # a tuple is a batch too


def test_recommend_from_ratings_request_pads_to_the_longest_row():
    rows = [[("50", 5.0)], [("1", 1.0), ("2", 2.5), ("3", 0.5)], []]
    request = protocol.recommend_from_ratings_request("movielens", 4, ["", "42", ""], rows, 10)
    assert request.model_spec.signature_name == RECOMMEND_FROM_RATINGS_SIGNATURE
    assert request.model_spec.version.value == 4
    assert set(request.inputs) == {USER_ID, K, RATED_MOVIE_IDS, RATINGS}
    for decl in contract.signature(RECOMMEND_FROM_RATINGS_SIGNATURE).inputs:
        assert DataType.Name(request.inputs[decl.name].dtype) == decl.dtype, decl.name
    assert to_numpy(request.inputs[K]).tolist() == [10, 10, 10]  # one k per user
    # "" first: TF Serving's batcher pads a merged tensor with its first element, which the model ignores.
    assert to_numpy(request.inputs[RATED_MOVIE_IDS]).tolist() == [["", "50", ""], ["1", "2", "3"], ["", "", ""]]
    assert to_numpy(request.inputs[RATINGS]).tolist() == [[0.0, 5.0, 0.0], [1.0, 2.5, 0.5], [0.0, 0.0, 0.0]]


def test_recommend_from_ratings_request_caps_users_and_width():
    most = MAX_RECOMMEND_USERS
    protocol.recommend_from_ratings_request("movielens", None, [""] * most, [[("1", 5.0)]] * most, 1)
    with pytest.raises(ValueError, match=f"at most {MAX_RECOMMEND_USERS} users"):
        protocol.recommend_from_ratings_request("movielens", None, [""] * 101, [[("1", 5.0)]] * 101, 1)
    with pytest.raises(ValueError, match=f"at most {MAX_RATED_MOVIES} rated movies"):
        protocol.recommend_from_ratings_request("movielens", None, [""], [[("1", 5.0)] * (MAX_RATED_MOVIES + 1)], 1)
    with pytest.raises(ValueError, match="one row per user"):
        protocol.recommend_from_ratings_request("movielens", None, ["", ""], [[("1", 5.0)]], 1)


def test_only_a_missing_recommend_from_ratings_gets_the_preset_hint():
    from client.errors import SignatureNotFound

    other = SignatureNotFound(grpc.StatusCode.FAILED_PRECONDITION, "x", RECOMMEND_SIGNATURE)
    assert protocol.explain_missing_signature(other, "movielens", "h:1") is other
    ours = SignatureNotFound(grpc.StatusCode.FAILED_PRECONDITION, "server words", RECOMMEND_FROM_RATINGS_SIGNATURE)
    explained = protocol.explain_missing_signature(ours, "movielens", "h:1")
    assert explained.signature == RECOMMEND_FROM_RATINGS_SIGNATURE and explained.code == ours.code
    assert "served at h:1 has no 'recommend_from_ratings'" in explained.message
    assert explained.message.endswith("(server: server words)")


# --- the model's request rules, stated once (the fake answers with them) ---------------------


def _from_ratings_inputs(users=("",), k=(5,), movies=(("1",),), ratings=((4.0,),)) -> dict:
    return {USER_ID: np.array(users, dtype=object), K: np.array(k, np.int32),
            RATED_MOVIE_IDS: np.array(movies, dtype=object), RATINGS: np.array(ratings, np.float32)}


@pytest.mark.parametrize("change, message", [
    ({"k": (0,)}, contract.K_POSITIVE_MESSAGE),
    ({"k": (5, 5)}, contract.K_PER_USER_MESSAGE),
    ({"users": ("",) * (MAX_RECOMMEND_USERS + 1), "k": (5,) * (MAX_RECOMMEND_USERS + 1),
      "movies": (("1",),) * (MAX_RECOMMEND_USERS + 1), "ratings": ((4.0,),) * (MAX_RECOMMEND_USERS + 1)},
     contract.TOO_MANY_USERS_MESSAGE),
    ({"movies": (("1", "2"),)}, contract.RATED_SHAPE_MESSAGE),
    ({"users": ("", ""), "k": (5, 5)}, contract.RATED_ROWS_MESSAGE),
    ({"movies": ((*map(str, range(MAX_RATED_MOVIES + 1)),),), "ratings": ((4.0,) * (MAX_RATED_MOVIES + 1),)},
     contract.TOO_MANY_RATED_MESSAGE),
    ({"ratings": ((5.5,),)}, contract.RATING_RANGE_MESSAGE),
    ({"movies": (("",),), "ratings": ((9.0,),)}, None),  # padding: its rating is not looked at
])
def test_request_problem_states_the_models_rules(change, message):
    assert protocol.request_problem(RECOMMEND_FROM_RATINGS_SIGNATURE, _from_ratings_inputs(**change)) == message


def test_requests_the_client_builds_have_no_problem():
    request = protocol.recommend_from_ratings_request(
        "movielens", None, ["", "42"], [[(str(m), 3.0) for m in range(1, MAX_RATED_MOVIES + 1)], [("1", 0.5)]], 10)
    inputs = {name: to_numpy(proto) for name, proto in request.inputs.items()}
    assert inputs[RATED_MOVIE_IDS].shape[1] == MAX_RATED_MOVIES + 1  # the leading "" makes the widest row one wider
    assert protocol.request_problem(RECOMMEND_FROM_RATINGS_SIGNATURE, inputs) is None
    recommend = protocol.recommend_request("movielens", None, ["1", "2"], 3)
    assert protocol.request_problem(RECOMMEND_SIGNATURE, {n: to_numpy(p) for n, p in recommend.inputs.items()}) is None
