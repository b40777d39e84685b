"""``recommend_from_ratings`` end to end: the client over gRPC against the local server on the exported model.

The signature exists only in models of the default (two-stage) preset. These tests
read the served model card's ``signatures`` and skip, saying so, when the session's
model lacks it; the last test checks the other side: a model without it answers
FAILED_PRECONDITION, which the client raises as ``SignatureNotFound``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from client import InvalidArgument, Recommendation, RecommenderClient, SignatureNotFound, protocol
from client.cli import main
from client.messages import PredictRequest
from client.tensors import encode
from common import contract
from common.contract import (
    MAX_RATED_MOVIES,
    MODEL_NAME,
    RATED_MOVIE_IDS,
    RATINGS,
    RECOMMEND_FROM_RATINGS_SIGNATURE,
    USER_ID,
)
from common.contract import K

REQUEST_K = 10  # recommendations asked per call


@pytest.fixture(scope="module")
def served(local_server):
    with RecommenderClient(local_server.grpc_target, timeout_s=30) as client:
        client.wait_until_ready(timeout_s=60)
        yield client, client.model_card()


@pytest.fixture(scope="module")
def model(served):
    client, card = served
    if RECOMMEND_FROM_RATINGS_SIGNATURE not in card.get("signatures", []):
        pytest.skip(
            f"the session's model (preset {card.get('config', {}).get('preset', '?')!r}) has no "
            f"{RECOMMEND_FROM_RATINGS_SIGNATURE!r} signature; only default-preset exports serve it"
        )
    return client, card


def _expected_k(card: dict) -> int:
    return min(REQUEST_K, card["max_k"])


def _check_row(row: list[Recommendation], k: int, given: set[str] = frozenset()) -> None:
    assert len(row) == k
    scores = [r.score for r in row]
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
    assert len({r.movie_id for r in row}) == k and all(r.movie_id and r.title for r in row)
    assert not given & {r.movie_id for r in row}, "a given movie was recommended back"


def _same(a: list[Recommendation], b: list[Recommendation]) -> None:
    assert [r.movie_id for r in a] == [r.movie_id for r in b]
    np.testing.assert_allclose([r.score for r in a], [r.score for r in b], rtol=1e-4, atol=1e-4)


def _unchecked_request(users: list[str], rows: list[list[tuple[str, float]]], k: int = REQUEST_K) -> PredictRequest:
    """Rows as given, padded, with none of the client's checks: what the client would refuse, on the wire."""
    width = max(len(r) for r in rows)
    request = PredictRequest(
        model_spec=protocol.model_spec(MODEL_NAME, None, RECOMMEND_FROM_RATINGS_SIGNATURE)
    )
    padding = [width - len(r) for r in rows]
    values = {
        USER_ID: users,
        K: [k] * len(users),
        RATED_MOVIE_IDS: [[m for m, _ in r] + [""] * n for r, n in zip(rows, padding)],
        RATINGS: np.array([[v for _, v in r] + [0.0] * n for r, n in zip(rows, padding)]),
    }
    for decl in contract.signature(RECOMMEND_FROM_RATINGS_SIGNATURE).inputs:  # in the declared dtypes
        request.inputs[decl.name].CopyFrom(encode(decl, values[decl.name]))
    return request


def _raw(client: RecommenderClient, users: list[str], rows: list[list[tuple[str, float]]], k: int = REQUEST_K):
    """Send rows as they are (duplicates, empty rows) and parse the answer."""
    response = client._call(client._predict, _unchecked_request(users, rows, k), None)
    return protocol.parse_recommend(response, len(users), RECOMMEND_FROM_RATINGS_SIGNATURE)


def test_one_new_user(model):
    client, card = model
    movies = card["vocabulary"]["movie_ids"]
    ratings = {movies[0]: 5, movies[1]: 4, movies[2]: 5}
    top = client.recommend_from_ratings(ratings, k=REQUEST_K)
    _check_row(top, _expected_k(card), set(ratings))


def test_a_batch_mixing_long_and_short_rows_answers_as_one_user_at_a_time(model):
    client, card = model
    movies, users = card["vocabulary"]["movie_ids"], card["vocabulary"]["user_ids"]
    long = {m: float(1 + i % 5) for i, m in enumerate(movies[:20])}
    short = {movies[30]: 4.5}
    batch = client.recommend_from_ratings([short, long, short], k=REQUEST_K, user_id=[None, None, users[0]])
    alone = [
        client.recommend_from_ratings(short, k=REQUEST_K),
        client.recommend_from_ratings(long, k=REQUEST_K),
        client.recommend_from_ratings(short, k=REQUEST_K, user_id=users[0]),
    ]
    for row, single, given in zip(batch, alone, (short, long, short)):
        _check_row(row, _expected_k(card), set(given))
        _same(row, single)  # padding changes nothing


def test_duplicates_count_once_and_unknown_ids_are_ignored(model):
    client, card = model
    movies = card["vocabulary"]["movie_ids"]
    first = client.recommend_from_ratings({movies[5]: 5, movies[6]: 2}, k=REQUEST_K)
    repeated = _raw(client, [""], [[(movies[5], 5.0), (movies[6], 2.0), (movies[5], 1.0)]])[0]
    _same(repeated, first)
    with_unknown = client.recommend_from_ratings({movies[5]: 5, "no-such-movie": 1, movies[6]: 2, "99999": 3}, k=REQUEST_K)
    _same(with_unknown, first)
    _check_row(client.recommend_from_ratings({"no-such-movie": 5}, k=REQUEST_K), _expected_k(card))  # nothing usable: still k


def test_an_empty_row_and_unknown_users_still_get_k_movies(model):
    client, card = model
    movies = card["vocabulary"]["movie_ids"]
    rows = _raw(client, ["", "no-such-user"], [[], [(movies[0], 4.0)]])
    _check_row(rows[0], _expected_k(card))
    _check_row(rows[1], _expected_k(card), {movies[0]})
    _same(rows[1], client.recommend_from_ratings({movies[0]: 4}, k=REQUEST_K))  # unknown user = no profile


def test_k_is_capped_at_max_k(model):
    client, card = model
    top = client.recommend_from_ratings({card["vocabulary"]["movie_ids"][0]: 5}, k=card["max_k"] + 50)
    assert len(top) == card["max_k"]


@pytest.mark.parametrize(
    "users, rows, k, message",
    [
        ([""], [[("1", 5.5)]], REQUEST_K, "ratings"),
        ([""], [[("1", 0.0)]], REQUEST_K, "ratings"),
        ([""], [[("1", 5.0)]], 0, "k"),
        ([""], [[("1", 5.0)] * (MAX_RATED_MOVIES + 1)], REQUEST_K, "rated_movie_ids"),
        (["", ""], [[("1", 5.0)]], REQUEST_K, "rated_movie_ids"),
    ],
)
def test_the_model_refuses_what_the_client_would(model, users, rows, k, message):
    client, _ = model
    with pytest.raises(InvalidArgument, match=message):
        client._call(client._predict, _unchecked_request(users, rows, k), None)


def test_padding_values_are_ignored_but_given_ratings_are_checked(model):
    client, card = model
    movie = card["vocabulary"]["movie_ids"][0]
    request = _unchecked_request([""], [[(movie, 4.0), ("", 0.0)]])
    ratings = contract.signature(RECOMMEND_FROM_RATINGS_SIGNATURE).input(RATINGS)
    request.inputs[RATINGS].CopyFrom(encode(ratings, np.array([[4.0, -7.0]])))  # any value under padding
    response = client._call(client._predict, request, None)
    _same(protocol.parse_recommend(response, 1, RECOMMEND_FROM_RATINGS_SIGNATURE)[0],
          client.recommend_from_ratings({movie: 4}, k=REQUEST_K))  # fmt: skip


def test_cli_rated(model, local_server, capsys):
    _, card = model
    movies = card["vocabulary"]["movie_ids"][:3]
    argv = ["--target", local_server.grpc_target, "recommend", "-k", "5", "--json"]
    assert main([*argv, *(f"--rated={m}=5" for m in movies)]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == min(5, card["max_k"]) and not set(movies) & {r["movie_id"] for r in recs}


def test_a_model_without_the_signature_raises_signature_not_found(served):
    client, card = served
    if RECOMMEND_FROM_RATINGS_SIGNATURE in card.get("signatures", []):
        pytest.skip("the session's model serves recommend_from_ratings (the fake covers a model without it)")
    with pytest.raises(SignatureNotFound, match="only models of the default \\(two-stage\\) preset"):
        client.recommend_from_ratings({card["vocabulary"]["movie_ids"][0]: 5})
