"""The exported SavedModel: its public signatures, their behaviour, warmup and atomicity.

The two runs of whole exports (versions and --force; an export killed mid-write) take half a minute:
RUN_EXPORT_SCENARIOS=1, make test-export, which CI runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from client import protocol
from common import contract
from export import exporter
from train import run_dir as run_files
from train import trainer

SCENARIOS = pytest.mark.skipif(os.environ.get("RUN_EXPORT_SCENARIOS") != "1",
                               reason="half a minute of whole exports: make test-export (RUN_EXPORT_SCENARIOS=1)")
from train.features import FeatureTables


@pytest.fixture(scope="module")
def loaded(exported_model):
    return tf.saved_model.load(str(exported_model / "1"))


@pytest.fixture(scope="module")
def features(trained_run):
    return FeatureTables.load(trained_run / run_files.FEATURES_FILE)


@pytest.fixture(scope="module")
def rated(features):
    """Raw user id → set of raw movie ids rated in training."""
    history = features.history
    return {
        features.user_ids[row - 1]: set(features.movie_ids[history.row(row) - 1])
        for row in range(1, features.n_user_rows) if history.lengths()[row]
    }


def _spec(fn):
    _, kwargs = fn.structured_input_signature
    ins = {k: (v.dtype, v.shape.as_list()) for k, v in kwargs.items()}
    outs = {k: (v.dtype, v.shape.as_list()) for k, v in fn.structured_outputs.items()}
    return ins, outs


def _declared(tensors, fixed=None):
    """common/contract.py's declaration as a SavedModel shows it: (tf dtype, shape with None for -1)."""
    fixed = fixed or {}
    return {
        t.name: (tf.as_dtype(t.numpy_dtype if not t.is_string else tf.string),
                 fixed.get(t.name, [None if d < 0 else d for d in t.shape]))
        for t in tensors
    }


def _call(loaded, signature, **values):
    """Call a reloaded signature with ``values`` in the dtypes common/contract.py declares for its inputs."""
    declared = contract.signature(signature)
    out = loaded.signatures[signature](
        **{key: tf.constant(np.asarray(value, dtype=declared.input(key).numpy_dtype)) for key, value in values.items()}
    )
    return {key: value.numpy() for key, value in out.items()}


def test_signature_contract(loaded):
    """Every signature has the inputs and outputs common/contract.py declares (the default model: EMBEDDING_DIM wide)."""
    assert set(loaded.signatures) == set(contract.SIGNATURES)  # the session's model is of the default preset
    embedding = [None, contract.EMBEDDING_DIM]
    for name, fn in loaded.signatures.items():
        declared = contract.signature(name)
        ins, outs = _spec(fn)
        assert ins == _declared(declared.inputs), name
        assert outs == _declared(declared.outputs, {contract.USER_EMBEDDING: embedding, contract.MOVIE_EMBEDDING: embedding}), name


def test_saved_model_cli_lists_signatures(exported_model):
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run([str(cli), "show", "--dir", str(exported_model / "1"), "--all"],
                         capture_output=True, text=True, check=True).stdout
    for name in (contract.PREDICT_SIGNATURE, contract.RECOMMEND_SIGNATURE):
        assert f"signature_def['{name}']" in out
    assert "Method name is: tensorflow/serving/predict" in out


def _recommend(loaded, users, k):
    return _call(loaded, contract.RECOMMEND_SIGNATURE, user_id=np.asarray(users, dtype=object), k=[k] * len(users))


def test_recommend_excludes_rated_and_sorts(loaded, rated, features):
    user = max(rated, key=lambda u: len(rated[u]))
    out = _recommend(loaded, [user, "unknown-user"], 20)
    assert out[contract.MOVIE_IDS].shape == (2, 20)
    ids = {m.decode() for m in out[contract.MOVIE_IDS][0]}
    assert not ids & rated[user]
    scores = out[contract.SCORES]
    assert np.all(np.isfinite(scores)) and np.all(np.diff(scores, axis=1) <= 0)
    first = out[contract.MOVIE_IDS][0][0].decode()
    titles = dict(zip(features.movie_ids, features.movie_titles))
    assert out[contract.MOVIE_TITLES][0][0].decode() == titles[first]


def test_recommend_equals_the_trainers_code_path(loaded, trained_run, features):
    """The signature is the in-memory recommender plus id lookups: same movies, same scores."""
    recommender, _, _ = trainer.load_recommender(trained_run)
    users = features.user_ids[:7].tolist() + ["unknown-user"]
    out = _recommend(loaded, users, 10)
    rows = tf.constant(list(range(1, 8)) + [0], tf.int64)
    movies, scores = recommender.recommend(rows, tf.constant(10))
    assert [[m.decode() for m in row] for row in out[contract.MOVIE_IDS]] == features.movie_ids[movies.numpy() - 1].tolist()
    np.testing.assert_allclose(out[contract.SCORES], scores.numpy(), atol=1e-5)


def test_k_is_clamped(loaded, exported_model):
    card = json.loads((exported_model / "1" / contract.MODEL_CARD_FILE).read_text())
    out = _recommend(loaded, ["1", "unknown-user"], 1_000_000)
    assert out[contract.MOVIE_IDS].shape == (2, card["max_k"])
    assert card["max_k"] <= card["catalogue_size"]


@pytest.mark.parametrize("k", [0, -3])
def test_k_not_positive_fails(loaded, k):
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be positive"):
        _recommend(loaded, ["1"], k)


def test_length_mismatch_fails(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have the same length"):
        loaded.signatures[contract.PREDICT_SIGNATURE](user_id=tf.constant(["1", "2"]), movie_id=tf.constant(["1"]))


def test_oov_and_empty_batch(loaded):
    predict = loaded.signatures[contract.PREDICT_SIGNATURE]
    out = predict(user_id=tf.constant(["no-such-user", "1"]), movie_id=tf.constant(["1", "no-such-movie"]))
    assert np.all(np.isfinite(out[contract.PREDICTED_RATING].numpy()))
    empty = predict(user_id=tf.constant([], tf.string), movie_id=tf.constant([], tf.string))
    assert empty[contract.PREDICTED_RATING].shape == (0,)
    assert empty[contract.USER_EMBEDDING].shape == (0, contract.EMBEDDING_DIM)
    assert empty[contract.MOVIE_EMBEDDING].shape == (0, contract.EMBEDDING_DIM)
    # K = the largest k of the batch: none, so [0, 0].
    assert _recommend(loaded, np.array([], dtype=object), 5)[contract.SCORES].shape == (0, 0)


def test_model_card(loaded, exported_model, rated, features):
    cards = _call(loaded, contract.MODEL_CARD_SIGNATURE, **{contract.MODEL_CARD_REQUEST: [0, 0]})[contract.MODEL_CARD]
    assert cards.shape == (2,) and cards[0] == cards[1]  # one copy per row: batchable
    card = json.loads(cards[0])
    assert set(card["vocabulary"]["user_ids"]) == set(rated)
    assert card["vocabulary"]["movie_ids"] == features.movie_ids[features.catalogue - 1].tolist()
    assert {"recall_at_10", "ndcg_at_10", "coverage_at_10", "baselines"} <= set(card["metrics"])
    assert card == json.loads((exported_model / "1" / contract.MODEL_CARD_FILE).read_text())
    assert card["tensorflow_version"] == tf.__version__
    assert {"test_rmse", "rows"} <= set(card["metrics"]) and set(card["dataset"]["sha256"]) == {"u.data", "u.item", "u.user"}


def test_warmup_records_replay(loaded, exported_model):
    path = exported_model / "1" / contract.WARMUP_FILE
    signatures = set()
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == contract.MODEL_NAME
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        loaded.signatures[request.model_spec.signature_name](**inputs)
        signatures.add(request.model_spec.signature_name)
    assert signatures == set(loaded.signatures) == {
        contract.PREDICT_SIGNATURE, contract.RECOMMEND_SIGNATURE, contract.MODEL_CARD_SIGNATURE,
        contract.RECOMMEND_FROM_RATINGS_SIGNATURE,
    }


def test_only_stock_ops(exported_model):
    assert "LookupTableFindV2" in exporter.graph_ops(exported_model / "1")
    assert exporter.non_stock_ops(exported_model / "1") == set()


def test_recommend_at_max_k_returns_exactly_the_unrated_catalogue(loaded, exported_model, rated):
    card = json.loads((exported_model / "1" / contract.MODEL_CARD_FILE).read_text())
    heaviest = max(rated, key=lambda u: len(rated[u]))
    out = _recommend(loaded, [heaviest], card["max_k"])
    assert np.all(np.isfinite(out[contract.SCORES]))
    unrated = set(card["vocabulary"]["movie_ids"]) - rated[heaviest]
    assert len(unrated) == card["max_k"]
    assert {m.decode() for m in out[contract.MOVIE_IDS][0]} == unrated


def test_too_many_recommend_users_fails(loaded):
    users = np.array([str(i) for i in range(contract.MAX_RECOMMEND_USERS + 1)], dtype=object)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"at most {contract.MAX_RECOMMEND_USERS}"):
        _recommend(loaded, users, 1)


@SCENARIOS
def test_versions_and_force(trained_run, tmp_path):
    base = tmp_path / "movielens"
    (base / ".2-staging-leftover").mkdir(parents=True)  # no export holds its lock: abandoned
    assert exporter.export_run(trained_run, base).name == "1"
    assert not (base / ".2-staging-leftover").exists()
    assert exporter.export_run(trained_run, base).name == "2"
    with pytest.raises(exporter.ExportError, match="exists; pass --force"):
        exporter.export_run(trained_run, base, version=2)
    assert exporter.export_run(trained_run, base, version=2, force=True).name == "2"
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]


def test_cleanup_removes_only_staging_dirs_no_export_holds(tmp_path):
    import fcntl

    abandoned, live, version, other = (tmp_path / n for n in (".3-abandoned", ".4-live", "3", ".cache"))
    for path in (abandoned, live, version, other):
        (path / "variables").mkdir(parents=True)
    held = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running export holds its staging directory
        assert exporter.remove_abandoned_staging(tmp_path) == [abandoned]
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".4-live", ".cache", "3"]
    assert exporter.remove_abandoned_staging(tmp_path) == [live]  # its exporter is gone now


@SCENARIOS
def test_killed_export_leaves_no_version_and_the_next_export_cleans_up(trained_run, tmp_path):
    base = tmp_path / "movielens"
    base.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "export", "--run", str(trained_run), "--model-base-path", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120

    def writing() -> list[Path]:
        # A staging directory with something in it: tf.saved_model.save has started writing.
        return [p for p in base.iterdir() if p.name.startswith(".") and p.is_dir() and any(p.iterdir())]

    while not writing():
        assert proc.poll() is None, "export finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-write, not finished
    left = [p.name for p in base.iterdir()]
    assert left and not [name for name in left if name.isdigit()], left
    assert exporter.export_run(trained_run, base).name == "1"
    assert [p.name for p in base.iterdir()] == ["1"]


def _from_ratings(loaded, users, movies, ratings, k=10):
    return _call(
        loaded, contract.RECOMMEND_FROM_RATINGS_SIGNATURE, user_id=np.array(users, dtype=object), k=[k] * len(users),
        rated_movie_ids=np.array(movies, dtype=object).reshape(len(users), -1),
        ratings=np.array(ratings, np.float64).reshape(len(users), -1),
    )


def test_from_ratings_padding_duplicates_and_unknown_ids(loaded, features):
    m = features.movie_ids[features.catalogue - 1][:4].tolist()
    plain = _from_ratings(loaded, [""], [[m[0], m[1]]], [[5, 4]])
    # Padding, an unknown id and a repeated movie change nothing.
    noisy = _from_ratings(loaded, [""], [[m[0], "", "no-such-movie", m[1], m[0]]], [[5, 0, 3, 4, 5]])
    assert noisy[contract.MOVIE_IDS].tolist() == plain[contract.MOVIE_IDS].tolist()
    np.testing.assert_allclose(noisy[contract.SCORES], plain[contract.SCORES], atol=1e-5)
    assert not {x.decode() for x in plain[contract.MOVIE_IDS][0]} & {m[0], m[1]}


def test_from_ratings_batch_mixes_long_short_and_empty_rows(loaded, features):
    m = features.movie_ids[features.catalogue - 1][:6].tolist()
    rows = [[m[0], m[1], m[2], m[3], m[4]], [m[5], "", "", "", ""], ["", "", "", "", ""]]
    ratings = [[5, 4, 3, 5, 2], [4, 0, 0, 0, 0], [0] * 5]
    batch = _from_ratings(loaded, ["", "", ""], rows, ratings, k=8)
    assert batch[contract.MOVIE_IDS].shape == (3, 8) and np.isfinite(batch[contract.SCORES]).all()
    for i in range(3):  # each row answers as if it had been sent alone
        given = [x for x in rows[i] if x]
        alone = _from_ratings(loaded, [""], [given or [""]], [[r for r, x in zip(ratings[i], rows[i]) if x] or [0]], k=8)
        assert batch[contract.MOVIE_IDS][i].tolist() == alone[contract.MOVIE_IDS][0].tolist()
        assert not {x.decode() for x in batch[contract.MOVIE_IDS][i]} & set(given)


def test_from_ratings_uses_the_ratings(loaded, features):
    m = features.movie_ids[features.catalogue - 1][:3].tolist()
    loved = _from_ratings(loaded, [""], [m], [[5, 5, 5]])
    hated = _from_ratings(loaded, [""], [m], [[1, 1, 1]])
    assert not np.allclose(loved[contract.SCORES], hated[contract.SCORES])


@pytest.mark.parametrize("users, movies, ratings, message", [
    ([""], [["1"]], [[7.0]], "ratings must be within 0.5-5"),
    ([""], [["1", "2"]], [[4.0]], "must have the same shape"),
    (["", ""], [["1"]], [[4.0]], "one row per user_id"),
])
def test_from_ratings_refuses_bad_requests(loaded, users, movies, ratings, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message) as error:
        _call(loaded, contract.RECOMMEND_FROM_RATINGS_SIGNATURE, user_id=np.array(users, dtype=object), k=[5] * len(users),
              rated_movie_ids=np.array(movies, dtype=object), ratings=ratings)
    # The rules stated once (client/protocol.py, the fake's source) refuse it in the model's words.
    stated = protocol.request_problem(contract.RECOMMEND_FROM_RATINGS_SIGNATURE, {
        contract.USER_ID: np.array(users, dtype=object), contract.K: np.array([5] * len(users), np.int32),
        contract.RATED_MOVIE_IDS: np.array(movies, dtype=object), contract.RATINGS: np.array(ratings, np.float32),
    })
    assert stated is not None and stated in str(error.value)
