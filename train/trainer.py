"""Trains a recommender on one split and writes a self-contained run directory.

Reads top to bottom: data → split → feature tables → fit (retrieval, then
ranking; or the reference model) → blend weight on validation →
evaluation on test next to the baselines → artefacts. The run directory holds
everything export needs (config, weights, feature tables with ids, titles and
training histories), so exporting never touches the raw data again; its files
are named and read in ``train/run_dir.py``.

What the story reads from elsewhere: each part of the split as model inputs
(``Rows``, ``train/rows.py``), and the evaluation protocol: who is evaluated and
the top k of a ``recommend`` (``train/evaluation.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from train import baselines, distribute, evaluation, splits
from train import data as movielens_data
from train import run_dir as run_files
from train.config import REFERENCE, TWO_STAGE, TrainConfig, step_batch
from train.evaluation import EVAL_BATCH, EVAL_TOP_K, evaluation_users, recommend_top_k
from train.features import FeatureTables, build
from train.interactions import Interactions
from train.reference_model import ReferenceModel
from train.ranking import RankingModel
from train.recommender import ReferenceRecommender, TwoStageRecommender
from train.retrieval import RetrievalModel
from train.rows import Rows

BLEND_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)  # retrieval score + w × predicted rating
POPULARITY_PENALTIES = (0.0, 0.05, 0.1, 0.2, 0.3)  # − p × log(1 + the movie's training ratings)


@dataclasses.dataclass(frozen=True)
class Parts:
    """The data of one run: the dataset, its split, the feature tables and each part as model inputs."""

    movielens: movielens_data.MovieLens
    split: splits.Split
    features: FeatureTables
    train: Rows
    val: Rows
    test: Rows

    @property
    def shape(self) -> tuple[int, int]:
        """(user rows, movie rows): the shape of every interaction table of this run."""
        return self.features.n_user_rows, self.features.n_movie_rows

    @property
    def global_mean(self) -> float:
        return float(self.train.rating.mean())


def load_parts(config: TrainConfig, data_dir: Path) -> Parts:
    """Data, split and feature tables. Histories come from the training rows only:
    anything first rated later is, to the model, a user it knows by profile alone."""
    movielens = movielens_data.load(data_dir)
    split = splits.make(config.split, movielens, seed=config.seed)
    if config.split in splits.FOLDS:  # the fold files are part of what the model saw
        movielens.sha256.update(movielens_data.verify_checksums(data_dir, splits.fold_files(config.split)))
    features = build(movielens, split.train)
    train, val, test = (Rows.of(movielens, rows) for rows in (split.train, split.val, split.test))
    return Parts(movielens, split, features, train, val, test)


def build_models(config: TrainConfig, features: FeatureTables, global_mean: float, restoring: bool = False):
    """The untrained Keras models of a config: {"rating": …} or {"retrieval": …, "ranking": …}.

    ``restoring``: a checkpoint fills every variable next, so fixed tables fitted in closed form are left unfitted.
    """
    if config.model == REFERENCE:
        return {"rating": ReferenceModel(features, config)}
    return {
        "retrieval": RetrievalModel(
            features, config.retrieval_dim, config.history_sample, config.low_rating_weight,
            config.full_softmax_max_movies, config.seed, config.causal_history_share, config.history_shrinkage,
            negatives_group=config.retrieval_batch_size, item_neighbours=config.item_neighbours,
            item_l2=config.item_l2, item_weight=config.item_weight,
        ),
        "ranking": RankingModel(features, config.embedding_dim, config.layer_sizes, config.l2, global_mean,
                                config.knn_neighbours, config.knn_shrinkage, config.knn_weight, config.seed,
                                fit_neighbourhood=not restoring),
    }


def recommender_of(config: TrainConfig, models: dict, features: FeatureTables, blend: tuple[float, float] = (0.0, 0.0)):
    """The served recommender of a run's models; ``blend``: (blend weight, popularity penalty), two-stage only."""
    if config.model == REFERENCE:
        return ReferenceRecommender(models["rating"], features)
    return TwoStageRecommender(models["retrieval"], models["ranking"], features, config.candidates, *blend)


@dataclasses.dataclass
class Fitted:
    """The trained Keras models of one config and how their fit went."""

    models: dict
    history: tf.keras.callbacks.History  # of the rating (reference) or ranking (two-stage) fit
    fit_seconds: dict[str, float]
    batch_sizes: dict[str, int]

    @property
    def rating_model(self) -> tf.keras.Model:
        return self.models.get("ranking", self.models.get("rating"))


def fit(config: TrainConfig, features: FeatureTables, train: Rows, val: Rows | None, strategy: tf.distribute.Strategy,
        verbose: int = 0, progress=None, logs_dir: Path | None = None) -> Fitted:
    """Builds and fits a config's models on ``train``: retrieval (two-stage), then the rating or ranking model.

    ``val`` is the ranking stage's early-stopping signal (the epoch with the best
    validation RMSE is kept); without it (a refit) the ranking stage trains
    ``config.epochs`` epochs. ``progress(stage)`` returns extra Keras callbacks
    for the fit of each stage; a tuning trial's pruning callback rides there
    (``train/tuning.py``). ``logs_dir``: TensorBoard logs of the rating or ranking fit.
    """
    extra = progress or (lambda stage: [])
    global_mean = float(train.rating.mean())
    batch_sizes = {stage: step_batch(size, len(train.user), config.batch_growth_rows)
                   for stage, size in (("retrieval", config.retrieval_batch_size), ("rating", config.batch_size))}

    # Two-stage: retrieval learns which movies a user picks, ranking how
    # much they like them; the reference model only the latter.
    # Under the strategy's scope every variable (and optimizer slot) is mirrored on each
    # worker; with one process this is the default strategy and changes nothing.
    with strategy.scope():
        models = build_models(config, features, global_mean)
    fit_seconds = {}
    if "retrieval" in models:
        started = time.perf_counter()
        with strategy.scope():
            models["retrieval"].compile(optimizer=tf.keras.optimizers.Adam(config.retrieval_learning_rate))
        before = models["retrieval"].ratings_before(train.user, train.timestamp)
        models["retrieval"].fit(
            train.dataset(batch_sizes["retrieval"], shuffle_seed=config.seed, before=before),
            epochs=config.retrieval_epochs, verbose=verbose, callbacks=extra("retrieval"),
        )
        fit_seconds["retrieval"] = round(time.perf_counter() - started, 2)
    rating_model = models.get("ranking", models.get("rating"))
    with strategy.scope():
        optimizer = (tf.keras.optimizers.Adagrad if config.model == REFERENCE else tf.keras.optimizers.Adam)(config.learning_rate)
        rating_model.compile(optimizer=optimizer)
    callbacks = [] if logs_dir is None else [tf.keras.callbacks.TensorBoard(log_dir=str(logs_dir))]
    if config.model != REFERENCE and val is not None:
        # Ranking overfits within tens of epochs on 100K ratings: keep the best validation epoch.
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor="val_root_mean_squared_error", patience=8, restore_best_weights=True))
    stage = "rating" if config.model == REFERENCE else "ranking"
    started = time.perf_counter()
    history = rating_model.fit(
        train.dataset(batch_sizes["rating"], shuffle_seed=config.seed),
        epochs=config.epochs, validation_data=None if val is None else val.dataset(batch_sizes["rating"]),
        callbacks=callbacks + extra(stage), verbose=verbose,
    )
    fit_seconds[stage] = round(time.perf_counter() - started, 2)
    return Fitted(models, history, fit_seconds, batch_sizes)


def best_epochs(fitted: Fitted) -> int:
    """The ranking epochs early stopping kept: the epoch with the best validation RMSE."""
    curve = fitted.history.history["val_root_mean_squared_error"]
    return int(np.argmin(curve)) + 1


def refit(config: TrainConfig, parts: Parts, fitted: Fitted, strategy: tf.distribute.Strategy, verbose: int = 0,
          progress=None) -> tuple[Parts, Fitted]:
    """The two-stage models trained again on train + most of validation, as the fit on train chose them.

    Validation has done its jobs by now (the ranking epochs and the blend
    weight); its ratings are a tenth of a fold's base file, which EASE and the
    other baselines learn from too. So the served models learn from them as
    well, all but the rollout gate's share (``splits.refit_and_gate``):
    retrieval for ``retrieval_epochs``, ranking for the epochs early stopping
    kept, with the feature tables (histories, the neighbourhood and
    item-to-item models) rebuilt. Returns the parts with the refit rows moved
    from validation into train (the test part is untouched) and the new fit.
    """
    refit_rows, gate_rows = splits.refit_and_gate(parts.split.val, config.seed)
    split = dataclasses.replace(parts.split, train=np.sort(np.concatenate([parts.split.train, refit_rows])),
                                val=gate_rows)
    refit_parts = dataclasses.replace(parts, split=split, features=build(parts.movielens, split.train),
                                      train=Rows.of(parts.movielens, split.train), val=Rows.of(parts.movielens, gate_rows))
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(config.seed)
    again = dataclasses.replace(config, epochs=best_epochs(fitted))
    return refit_parts, fit(again, refit_parts.features, refit_parts.train, None, strategy, verbose, progress)


def rmse_by_part(fitted: Fitted, parts: Parts) -> dict[str, float]:
    """The rating model's RMSE on train, val and test.

    Final numbers come from a clean pass over each part, not the running
    average Keras reports while the weights are still moving.
    """
    return {
        part: float(fitted.rating_model.evaluate(rows.dataset(fitted.batch_sizes["rating"]), return_dict=True,
                                                 verbose=0)["root_mean_squared_error"])
        for part, rows in (("train", parts.train), ("val", parts.val), ("test", parts.test))
    }


def blend_key(weight: float, popularity_penalty: float) -> str:
    """How metrics.json names one (blend weight, popularity penalty) pair tried on validation."""
    return f"{weight:g},{popularity_penalty:g}"


def choose_blend(recommender: TwoStageRecommender, users: np.ndarray, relevant: Interactions) -> tuple[tuple[float, float], dict]:
    """The (blend weight, popularity penalty) with the best validation Recall@10 (then NDCG@10), set on ``recommender``.

    Test is never looked at. Returns the pair and, for every pair tried (``blend_key``), its figures
    (``top_k_metrics``) on the validation part: a tuning trial's score is the chosen pair's.
    Every pair reorders the same shortlists with the served ``list_score``.
    """
    n = min(recommender.candidates, recommender.max_k)
    shortlist = tf.function(lambda u: recommender.shortlist(u, recommender.query(u), recommender.rated(u)[0], n))
    parts = [[t.numpy() for t in shortlist(tf.constant(users[i : i + EVAL_BATCH]))] for i in range(0, len(users), EVAL_BATCH)]
    movies, retrieval_scores, rating = (np.concatenate(p) for p in zip(*parts))
    by_pair = {}
    for pair in itertools.product(BLEND_WEIGHTS, POPULARITY_PENALTIES):
        recommender.blend_weight.assign(pair[0])
        recommender.popularity_penalty.assign(pair[1])
        score = recommender.list_score(movies, retrieval_scores, rating).numpy()
        order = np.argsort(-score, axis=1, kind="stable")[:, :EVAL_TOP_K]
        by_pair[pair] = evaluation.top_k_metrics(np.take_along_axis(movies, order, axis=1), relevant, users, EVAL_TOP_K)
    best = max(by_pair, key=lambda p: (by_pair[p][f"recall_at_{EVAL_TOP_K}"], by_pair[p][f"ndcg_at_{EVAL_TOP_K}"], -p[0], -p[1]))
    recommender.blend_weight.assign(best[0])
    recommender.popularity_penalty.assign(best[1])
    return best, {blend_key(*pair): figures for pair, figures in by_pair.items()}


def blend_on_validation(config: TrainConfig, recommender, parts: Parts) -> tuple[tuple[float, float] | None, dict[str, float]]:
    """A two-stage recommender's (blend weight, popularity penalty), chosen on validation and set on it.

    Returns the pair (None for the reference model) and the validation Recall@10 of every pair tried.
    """
    if not isinstance(recommender, TwoStageRecommender):
        return None, {}
    val_users = evaluation_users(parts.val.user, config.max_eval_users, config.seed)
    best, by_pair = choose_blend(recommender, val_users, parts.val.table(*parts.shape, min_rating=4.0))
    return best, {key: m[f"recall_at_{EVAL_TOP_K}"] for key, m in by_pair.items()}


@dataclasses.dataclass(frozen=True)
class EvaluatedOnTest:
    """The served code path's top-k figures on test, and the baselines' on the same users."""

    users: np.ndarray
    quality: dict
    baselines: dict


def evaluate_on_test(config: TrainConfig, recommender, parts: Parts) -> EvaluatedOnTest:
    """Measures the served code path (``recommend``) on test, next to the baselines."""
    shape, test = parts.shape, parts.test
    recommend = tf.function(lambda u, k: recommender.recommend(u, k)[0])
    test_users = evaluation_users(test.user, config.max_eval_users, config.seed)
    top = recommend_top_k(lambda u, k: recommend(tf.constant(u), tf.constant(k, tf.int32)).numpy(),
                          test_users, parts.val.table(*shape))
    quality = evaluation.top_k_metrics(top, test.table(*shape, min_rating=4.0), test_users, EVAL_TOP_K)
    seen = (parts.train + parts.val).table(*shape)
    baseline = baselines.evaluate_baselines(
        seen, seen, test.table(*shape, min_rating=4.0), test_users, parts.global_mean, test.rating, EVAL_TOP_K,
    )
    return EvaluatedOnTest(test_users, quality, baseline)


def run_metrics(config: TrainConfig, parts: Parts, fitted: Fitted, rmse: dict[str, float], blend: tuple,
                figures: EvaluatedOnTest, catalogue_size: int, evaluate_seconds: float, started_run: float,
                rows: dict[str, int], fit_seconds: dict[str, float], curve: dict[str, list]) -> dict:
    """The run's metrics.json: quality on test, the baselines, the blend choice, the data and the timings.

    ``rows`` are the split's parts as chosen (before a refit moves validation into train), ``fit_seconds``
    every fit's seconds by stage, ``curve`` the Keras history of the fit that validation watched.
    """
    pair, by_pair = blend
    quality, test, batch_sizes = figures.quality, parts.test, fitted.batch_sizes
    return {
        "train_rmse": rmse["train"],
        "val_rmse": rmse["val"],
        "test_rmse": rmse["test"],
        **{key: quality[key] for key in evaluation.metric_names(EVAL_TOP_K)},
        "users_evaluated": quality["users_evaluated"],
        "test_users_sampled": f"{len(figures.users)} of {len(np.unique(test.user))}",
        "baselines": figures.baselines,
        "baseline_global_mean_test_rmse": figures.baselines["global_mean"]["test_rmse"],
        "blend_weight": None if pair is None else pair[0],
        "popularity_penalty": None if pair is None else pair[1],
        "val_recall_at_10_by_blend": by_pair,  # keys: blend_key(weight, penalty)
        "rows": rows,
        "refit_on_train_and_val": parts.split.rows()["train"] != rows["train"],
        "refit_rows": parts.split.rows()["train"] - rows["train"],
        "catalogue_size": catalogue_size,
        "test_rows_with_unseen_user": float(np.mean(parts.features.history.lengths()[test.user] == 0)),
        "fit_seconds": round(sum(fit_seconds.values()), 2),
        "fit_seconds_by_stage": fit_seconds,
        "batch_sizes": ({"rating": batch_sizes["rating"]} if config.model == REFERENCE
                        else {"retrieval": batch_sizes["retrieval"], "ranking": batch_sizes["rating"]}),
        "evaluate_seconds": evaluate_seconds,
        "total_seconds": round(time.perf_counter() - started_run, 2),
        "history": {k: [float(x) for x in v] for k, v in curve.items()},
        "dataset_sha256": parts.movielens.sha256,
    }


def _finish_run_dir(run_dir: Path, fitted: Fitted, metrics: dict, curve: dict[str, list]) -> None:
    tf.train.Checkpoint(**fitted.models).write(str(run_dir / run_files.WEIGHTS_PREFIX))
    run_files.write_training_curve(run_dir, curve)
    run_files.write_metrics(run_dir, metrics)  # last: the mark of a finished run


def run(config: TrainConfig, data_dir: Path, run_dir: Path, verbose: int = 2, progress=None,
        task: distribute.Task | None = None) -> dict:
    """Trains, evaluates and writes ``run_dir``; returns the metrics.

    ``verbose`` goes to Keras' ``fit``; ``progress(stage)`` (e.g. ``train.progress.epoch_lines``)
    returns extra callbacks for the fit of each stage (retrieval, ranking or rating). ``task``
    (default: from ``TF_CONFIG``) makes this process one worker of a multi-worker run, in which
    only the chief writes ``run_dir`` (``train/distribute.py``).
    """
    task = task or distribute.task_from_environment()
    strategy = distribute.strategy_for(task)  # first: the collective runtime starts before any op
    with distribute.writable_dir(run_dir, task) as out_dir:
        return _train(config, data_dir, out_dir, strategy, verbose, progress)


def _train(config: TrainConfig, data_dir: Path, run_dir: Path, strategy: tf.distribute.Strategy,
           verbose: int, progress) -> dict:
    started_run = time.perf_counter()
    tf.keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    run_files.start(run_dir, config)
    parts = load_parts(config, data_dir)
    fitted = fit(config, parts.features, parts.train, parts.val, strategy, verbose, progress, logs_dir=run_dir / run_files.LOGS_DIR)
    rmse = rmse_by_part(fitted, parts)

    # The blend (weight and popularity penalty) is chosen on validation; then the served code path is measured on test.
    started = time.perf_counter()
    recommender = recommender_of(config, fitted.models, parts.features)
    blend = blend_on_validation(config, recommender, parts)
    evaluate_seconds = time.perf_counter() - started
    rows, fit_seconds, curve = parts.split.rows(), dict(fitted.fit_seconds), fitted.history.history
    if config.model == TWO_STAGE and config.refit:
        parts, fitted = refit(config, parts, fitted, strategy, verbose, progress)
        rmse["test"] = rmse_by_part(fitted, parts)["test"]  # train and val: of the fit that did not learn val
        recommender = recommender_of(config, fitted.models, parts.features, blend[0])
        fit_seconds = {stage: round(fit_seconds[stage] + fitted.fit_seconds[stage], 2) for stage in fit_seconds}
    parts.features.save(run_dir / run_files.FEATURES_FILE)
    if blend[0] is not None:
        run_files.write_blend(run_dir, *blend[0])
    started = time.perf_counter()
    figures = evaluate_on_test(config, recommender, parts)
    evaluate_seconds = round(evaluate_seconds + time.perf_counter() - started, 2)

    metrics = run_metrics(config, parts, fitted, rmse, blend, figures, recommender.catalogue_size,
                          evaluate_seconds, started_run, rows, fit_seconds, curve)
    _finish_run_dir(run_dir, fitted, metrics, curve)
    return metrics


def load_recommender(run_dir: Path) -> tuple[ReferenceRecommender | TwoStageRecommender, TrainConfig, FeatureTables]:
    """Rebuilds a run's recommender with its trained weights; returns (recommender, config, features)."""
    config = run_files.read_config(run_dir)
    features = FeatureTables.load(run_dir / run_files.FEATURES_FILE)
    models = build_models(config, features, global_mean=0.0, restoring=True)
    checkpoint = tf.train.Checkpoint(**models)
    status = checkpoint.read(str(run_dir / run_files.WEIGHTS_PREFIX))
    probe = {"user": tf.constant([0], tf.int64), "movie": tf.constant([0], tf.int64)}
    for model in models.values():  # builds the variables, which the checkpoint then fills
        if isinstance(model, RetrievalModel):
            model.query(probe["user"]), model.candidates()
        else:
            model(probe)
    # Every variable of the rebuilt models must come from the checkpoint; the
    # optimizer's slots are in it too but not needed for serving.
    status.assert_existing_objects_matched().expect_partial()
    return recommender_of(config, models, features, run_files.read_blend(run_dir)), config, features
