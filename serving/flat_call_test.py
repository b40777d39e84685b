"""The flat call answers exactly what the structured signature call answers, on every signature of the export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from common import contract as c
from serving.flat_call import FlatCall


@pytest.fixture(scope="module")
def signatures(exported_model):
    path = next(p for p in exported_model.iterdir() if p.name.isdigit())
    loaded = tf.saved_model.load(str(path))
    yield loaded.signatures


def _vocabulary(signatures) -> tuple[list[str], list[str]]:
    card = json.loads(signatures[c.MODEL_CARD_SIGNATURE](**{c.MODEL_CARD_REQUEST: tf.constant([0])})[c.MODEL_CARD].numpy()[0])
    return card["vocabulary"]["user_ids"][:5], card["vocabulary"]["movie_ids"][:5]


def _cases(signatures) -> list[tuple[str, dict[str, np.ndarray]]]:
    users, movies = _vocabulary(signatures)
    strings = lambda values: np.array([v.encode() for v in values], dtype=object)  # noqa: E731
    cases = [
        (c.PREDICT_SIGNATURE, {c.USER_ID: strings(users[:3]), c.MOVIE_ID: strings(movies[:3])}),
        (c.PREDICT_SIGNATURE, {c.USER_ID: strings([]), c.MOVIE_ID: strings([])}),
        (c.RECOMMEND_SIGNATURE, {c.USER_ID: strings([users[0], "unknown-user"]), c.K: np.array([3, 5], np.int32)}),
        (c.MODEL_CARD_SIGNATURE, {c.MODEL_CARD_REQUEST: np.array([0, 0], np.int32)}),
    ]
    if c.RECOMMEND_FROM_RATINGS_SIGNATURE in signatures:
        rated = np.array([[b"", movies[0].encode(), movies[1].encode()], [movies[2].encode(), b"", b""]], dtype=object)
        cases.append((c.RECOMMEND_FROM_RATINGS_SIGNATURE, {
            c.USER_ID: strings(["", ""]), c.K: np.array([4, 2], np.int32), c.RATED_MOVIE_IDS: rated,
            c.RATINGS: np.array([[0.0, 5.0, 1.0], [4.0, 0.0, 0.0]], np.float32),
        }))
    return cases


def test_every_signature_has_a_flat_call(signatures):
    for name, function in signatures.items():
        assert FlatCall.for_function(function) is not None, name


def test_flat_call_answers_like_the_structured_call(signatures):
    for name, arrays in _cases(signatures):
        function = signatures[name]
        want = {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in arrays.items()}).items()}
        got = FlatCall.for_function(function)(arrays)
        assert sorted(got) == sorted(want), name
        for alias in want:
            assert got[alias].dtype == want[alias].dtype, (name, alias)
            assert got[alias].shape == want[alias].shape, (name, alias)
            assert got[alias].tolist() == want[alias].tolist(), (name, alias)


def test_inputs_are_converted_to_the_declared_dtype(signatures):
    """As tf.constant(value, dtype) did: an int64 k array becomes the signature's int32."""
    users, _ = _vocabulary(signatures)
    function = signatures[c.RECOMMEND_SIGNATURE]
    arrays = {c.USER_ID: np.array([users[0].encode()], dtype=object), c.K: np.array([3], np.int64)}
    got = FlatCall.for_function(function)(arrays)
    assert got[c.MOVIE_IDS].shape == (1, 3)


def test_graph_errors_are_op_errors(signatures):
    """An in-graph check fails with TensorFlow's OpError, as through the structured call."""
    users, _ = _vocabulary(signatures)
    function = signatures[c.RECOMMEND_SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError):
        FlatCall.for_function(function)({c.USER_ID: np.array([users[0].encode()], dtype=object), c.K: np.array([0], np.int32)})


def test_a_function_with_a_non_tensor_parameter_keeps_the_structured_call():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.RaggedTensorSpec([None, None], tf.float32)])
    def ragged(x, r):
        return {"out": x + tf.reduce_sum(r)}

    assert FlatCall.for_function(ragged.get_concrete_function()) is None


def test_a_graph_the_single_threaded_executor_refuses_runs_on_the_default_one():
    """Old-style control flow: refused by that executor before any kernel runs; the call switches executors."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def loop(x):
        doubled = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2), (tf.constant(0), x))[1]
        return {"out": doubled}

    call = FlatCall.for_function(loop.get_concrete_function())
    assert call.executor_type == "SINGLE_THREADED_EXECUTOR"
    assert call({"x": np.array([1.0, 2.0], np.float32)})["out"].tolist() == [8.0, 16.0]
    assert call.executor_type == ""
    assert call({"x": np.array([3.0], np.float32)})["out"].tolist() == [24.0]


def test_the_calling_thread_keeps_its_executor_setting(signatures):
    from tensorflow.python.eager import context

    users, movies = _vocabulary(signatures)
    before = context.context().function_call_options.executor_type
    FlatCall.for_function(signatures[c.PREDICT_SIGNATURE])(
        {c.USER_ID: np.array([users[0].encode()], dtype=object), c.MOVIE_ID: np.array([movies[0].encode()], dtype=object)}
    )
    assert context.context().function_call_options.executor_type == before


def test_a_graph_error_names_the_node_as_the_default_executor_does(signatures):
    users, _ = _vocabulary(signatures)
    function = signatures[c.RECOMMEND_SIGNATURE]
    arrays = {c.USER_ID: np.array([users[0].encode()], dtype=object), c.K: np.array([0], np.int32)}
    with pytest.raises(tf.errors.InvalidArgumentError) as want:
        function(**{k: tf.constant(v) for k, v in arrays.items()})
    with pytest.raises(tf.errors.InvalidArgumentError) as got:
        FlatCall.for_function(function)(arrays)
    assert "[[{{node " in got.value.message
    assert got.value.message == want.value.message
