"""python -m train tune: a hyperparameter search over the two-stage preset with Optuna.

Searches the two-stage preset's retrieval, ranking and candidate settings on
a split's train and validation parts only (a fold: its base file), with
several worker processes sharing one study database; the report (the best
parameters as a preset file, TUNING.md) is python -m export.tuning_report's,
run after it. The same command resumes a stopped search.

One study per split (``--split u1``, or several: one study each, tuned on that
fold's base file alone). A trial is the trainer's own story on the split's
train and validation parts only (``splits.without_test``: a fold's test file is
never opened): the fit of ``trainer.fit``, then the blend weight and popularity
penalty chosen on the validation part by ``trainer.choose_blend``, and the trial is scored on
that same validation part, the carve-out that picks the blend in every
run (``splits.carve_validation``):

    objective = validation Recall@10 + NDCG@10 (maximised),
    constraints: validation RMSE ≤ --max-val-rmse and validation coverage@10
    ≥ --min-val-coverage (Optuna's set_constraint; the best trial is the best
    feasible one).

Pruning: after every retrieval epoch the trial reports the retrieval stage's own
validation Recall@10 + NDCG@10 (its top 10 alone, before ranking re-scores),
and Optuna's MedianPruner stops a trial that trails the median of earlier
trials at the same epoch. Every trial records its figures, wall time and
worker as user attributes.

The study lives in a database (default: SQLite at runs/tuning/<study>.db; any
SQLAlchemy URL, e.g. PostgreSQL, for workers on several machines), so
``--workers N`` processes share it and a stopped search resumes: the same
command again runs only the trials still missing from ``--trials``. Workers
send a heartbeat; a trial whose worker died (killed, machine lost) is marked
failed after the grace period and re-run with the same parameters.

This command runs the search only and ends by printing the report's command,
``python -m export.tuning_report`` with the same splits, study name and
storage (``export/tuning_report.py``): it reads the finished studies and writes
a preset file per study (tuning/<study>.json: ``python -m train --preset
tuning/<study>.json`` trains it) and TUNING.md with the plots; its
``--evaluate`` then trains each study's preset on its split, exports it and
measures it on the split's test file through the served signatures, the only
step that reads a test file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import cli, contract
from train import config as train_config
from train import splits
from train.config import TWO_STAGE, TrainConfig
from train.evaluation import EVAL_TOP_K, NEW_USER_RATINGS

DEFAULT_STUDY = TWO_STAGE
TUNING_DIR = Path(contract.RUNS_DIR) / "tuning"  # the study databases (git-ignored)
REPORT_DIR = Path("tuning")  # preset files and plots, next to TUNING.md (kept in git)
TUNABLE_SPLITS = (*splits.FOLDS, splits.SEED_TEMPORAL)
DEFAULT_MAX_VAL_RMSE = 0.95
HEARTBEAT_SECONDS = 20
QUEUE_WAIT_SECONDS = 300  # at most, for the first worker to take the enqueued trials (TensorFlow and the data load first)
SEARCH_COMMAND = "search_command"  # study attribute: the command line that last ran the search on it
RANKING_LAYERS, RANKING_WIDTH = "ranking_layers", "ranking_width"  # searched; layer_sizes = width, width/2, ...

# The search space: Optuna parameter name -> (kind, arguments). Every name is a TrainConfig field except the
# ranking MLP's shape, two parameters that make layer_sizes. The blend is not here: each trial picks its weight
# and popularity penalty on the validation part from trainer.BLEND_WEIGHTS × trainer.POPULARITY_PENALTIES, an
# exact choice a sampler would only approximate.
SPACE: dict[str, tuple[str, tuple]] = {
    # Retrieval.
    "retrieval_dim": ("categorical", ((32, 64, 96, 128),)),
    "retrieval_epochs": ("int", (3, 20)),
    "retrieval_learning_rate": ("log", (3e-4, 1e-2)),
    "history_sample": ("categorical", ((16, 32, 64, 128),)),
    "causal_history_share": ("float", (0.0, 0.5)),
    "history_shrinkage": ("float", (0.0, 50.0)),
    "low_rating_weight": ("float", (0.0, 1.0)),
    "candidates": ("categorical", ((50, 100, 200, 400),)),
    "item_neighbours": ("categorical", ((0, 50, 100, 200),)),
    "item_l2": ("log", (30.0, 3000.0)),
    "item_weight": ("float", (0.0, 1.0)),
    # Ranking.
    "knn_neighbours": ("categorical", ((0, 20, 40, 80),)),
    "knn_shrinkage": ("log", (10.0, 1000.0)),
    "knn_weight": ("float", (0.0, 0.8)),
    "embedding_dim": ("categorical", ((16, 32, 64),)),
    RANKING_LAYERS: ("int", (1, 3)),
    RANKING_WIDTH: ("categorical", ((32, 64, 128, 256),)),
    "l2": ("log", (1e-4, 3e-2)),
    "learning_rate": ("log", (3e-4, 1e-2)),
    "epochs": ("int", (5, 80)),
}


def layer_sizes(layers: int, width: int) -> tuple[int, ...]:
    """The ranking MLP: ``layers`` dense layers from ``width`` down, halving each time (at least 8 wide)."""
    return tuple(max(8, width >> i) for i in range(layers))


def params_of(config: TrainConfig) -> dict:
    """A config's values as the search's parameters (the inverse of ``config_of``), for enqueueing a preset."""
    params = {name: getattr(config, name) for name in SPACE if name not in (RANKING_LAYERS, RANKING_WIDTH)}
    params[RANKING_LAYERS], params[RANKING_WIDTH] = len(config.layer_sizes), config.layer_sizes[0]
    return params


def config_of(base: TrainConfig, params: dict) -> TrainConfig:
    """``base`` with the search's parameters in it."""
    values = {name: value for name, value in params.items() if name not in (RANKING_LAYERS, RANKING_WIDTH)}
    if RANKING_LAYERS in params or RANKING_WIDTH in params:
        values["layer_sizes"] = layer_sizes(params.get(RANKING_LAYERS, len(base.layer_sizes)),
                                            params.get(RANKING_WIDTH, base.layer_sizes[0]))
    return dataclasses.replace(base, **values)


def suggest(trial, base: TrainConfig, fixed: dict) -> TrainConfig:
    """The trial's config: each parameter of SPACE not in ``fixed`` drawn by the sampler."""
    params = dict(fixed)
    for name, (kind, arguments) in SPACE.items():
        if name in fixed:
            continue
        if kind == "categorical":
            params[name] = trial.suggest_categorical(name, *arguments)
        elif kind == "int":
            params[name] = trial.suggest_int(name, *arguments)
        else:
            params[name] = trial.suggest_float(name, *arguments, log=kind == "log")
    return config_of(base, params)


def parse_fixed(assignments: list[str]) -> dict:
    """``--fix name=value`` pairs as parameters: SPACE names, or layer_sizes as widths ("64 32")."""
    fixed: dict = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        name = name.strip().replace("-", "_")
        if name == "layer_sizes":
            sizes = [int(v) for v in value.replace(",", " ").split()]
            fixed[RANKING_LAYERS], fixed[RANKING_WIDTH] = len(sizes), sizes[0]
            continue
        if name not in SPACE:
            raise ValueError(f"--fix {assignment}: {name!r} is not a searched parameter ({', '.join(SPACE)})")
        kind, arguments = SPACE[name]
        cast = float if kind in ("float", "log") else int
        fixed[name] = cast(value)
    return fixed


@dataclasses.dataclass(frozen=True)
class TuningData:
    """A split's train and validation parts, the feature tables and the validation protocol's tables.

    Built once per worker and shared by its trials: the features depend on the
    training rows only, never on a trial's parameters.
    """

    features: object  # train.features.FeatureTables
    train: object  # train.rows.Rows
    val: object  # train.rows.Rows
    users: np.ndarray  # the validation users the figures average over
    relevant: object  # Interactions: validation ratings >= 4
    seen: object  # Interactions: the training rows (excluded from every list)
    new_users: np.ndarray  # those of ``users`` with NEW_USER_RATINGS training ratings or more (ML-100K: every one)
    given_movies: np.ndarray  # [new_users, NEW_USER_RATINGS]: their earliest training ratings, the new-user input
    given_ratings: np.ndarray

    @classmethod
    def load(cls, data_dir: Path, split: str, seed: int, max_eval_users: int) -> "TuningData":
        from train import data as movielens_data
        from train.evaluation import evaluation_users, new_user_input
        from train.features import build
        from train.rows import Rows

        movielens = movielens_data.load(data_dir)
        part = splits.without_test(split, movielens, seed=seed)
        features = build(movielens, part.train)
        train, val = Rows.of(movielens, part.train), Rows.of(movielens, part.val)
        shape = (features.n_user_rows, features.n_movie_rows)
        users = evaluation_users(val.user, max_eval_users, seed)
        return cls(features, train, val, users, val.table(*shape, min_rating=4.0), train.table(*shape),
                   *new_user_input(train, users, shape))

    def baselines(self) -> dict:
        """Most-popular and EASE (λ=300) on the same validation part: what a trial has to beat."""
        from train.baselines import evaluate_baselines

        return evaluate_baselines(self.seen, self.seen, self.relevant, self.users, float(self.train.rating.mean()),
                                  self.val.rating, EVAL_TOP_K)

    @functools.cached_property
    def new_user_popularity(self) -> dict:
        """Most popular's validation figures on ``new_users``: what a new user's lists are measured against."""
        from train.baselines import popularity_scores, top_k_of_ranking
        from train.evaluation import top_k_metrics

        order = np.argsort(-popularity_scores(self.seen), kind="stable")
        return top_k_metrics(top_k_of_ranking(order, self.new_users, self.seen, EVAL_TOP_K), self.relevant,
                             self.new_users, EVAL_TOP_K)


def retrieval_figures(retrieval, data: TuningData) -> dict:
    """Validation Recall@10, NDCG@10 and coverage of the retrieval stage's own top 10 (no ranking)."""
    import tensorflow as tf

    from train import evaluation

    embeddings, bias = (t.numpy() for t in retrieval.candidates())
    if not (np.isfinite(embeddings).all() and np.isfinite(bias).all()):  # diverged: the trial fails, the worker goes on
        raise FloatingPointError("the retrieval stage's candidate embeddings are not finite")
    catalogue = data.features.catalogue
    n_movies = data.features.n_movie_rows

    def scores(users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), n_movies), -np.inf, np.float32)
        out[:, catalogue] = retrieval.user_scores(tf.constant(users)).numpy()
        return out

    top = evaluation.top_k_excluding(scores, data.users, data.seen, EVAL_TOP_K)
    return evaluation.top_k_metrics(top, data.relevant, data.users, EVAL_TOP_K)


def new_user_figures(recommender, data: TuningData) -> dict:
    """Validation figures of ``recommend_from_ratings`` given each user's earliest training ratings alone.

    The served path a new user meets. The known users' figures cannot see it:
    ``history_shrinkage`` weighs a short history, and every validation user has
    a long one. Every training movie is excluded and relevant = validation ≥ 4,
    the protocol of export/evaluate.py's new-user rows on a fold.
    """
    import tensorflow as tf

    from train import evaluation

    recommend = tf.function(recommender.recommend_from_ratings, reduce_retracing=True)

    def with_ratings(batch: np.ndarray, k: int) -> np.ndarray:
        at = np.searchsorted(data.new_users, batch)
        movies, _ = recommend(tf.constant(batch, tf.int64), tf.constant(data.given_movies[at], tf.int64),
                              tf.constant(data.given_ratings[at], tf.float32), tf.constant(k))
        return movies.numpy()

    top = evaluation.recommend_top_k(with_ratings, data.new_users, data.seen)
    return evaluation.top_k_metrics(top, data.relevant, data.new_users, EVAL_TOP_K)


def new_user_lift(figures: dict, popularity: dict) -> float:
    """How far a new user's lists are above most popular's on the same users: Recall@10 ratio − 1."""
    recall = f"recall_at_{EVAL_TOP_K}"
    return float(figures[recall] / popularity[recall] - 1.0)


def objective_value(figures: dict) -> float:
    return float(figures[f"recall_at_{EVAL_TOP_K}"] + figures[f"ndcg_at_{EVAL_TOP_K}"])


def pruning_callback(trial, data: TuningData):
    """A Keras callback for the retrieval fit: report each epoch's validation figure, stop a trailing trial."""
    import optuna
    import tensorflow as tf

    class ReportAndPrune(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs=None) -> None:
            figures = retrieval_figures(self.model, data)
            trial.report(objective_value(figures), epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_after_retrieval_epoch", epoch + 1)
                trial.set_user_attr("retrieval_val_figures", figures)
                raise optuna.TrialPruned(f"retrieval epoch {epoch + 1}: {objective_value(figures):.4f}")

    return ReportAndPrune()


class Objective:
    """One trial: fit on the split's train part, choose the blend on validation, score on validation.

    Never reads a test file: the data come from ``splits.without_test``.
    """

    def __init__(self, data_dir: Path, base: TrainConfig, fixed: dict, max_val_rmse: float, min_val_coverage: int = 0,
                 min_new_user_lift: float | None = None):
        self.data_dir, self.base, self.fixed, self.max_val_rmse = Path(data_dir), base, fixed, max_val_rmse
        self.min_val_coverage, self.min_new_user_lift = min_val_coverage, min_new_user_lift
        self._data: TuningData | None = None
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def data(self) -> TuningData:
        if self._data is None:
            self._data = TuningData.load(self.data_dir, self.base.split, self.base.seed, self.base.max_eval_users)
        return self._data

    def __call__(self, trial) -> float:
        import tensorflow as tf

        from train import trainer

        started = time.perf_counter()
        config = suggest(trial, self.base, self.fixed)
        data = self.data
        trial.set_user_attr("worker", self.worker)
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
        try:
            fitted = trainer.fit(config, data.features, data.train, data.val, tf.distribute.get_strategy(),
                                 progress=lambda stage: [pruning_callback(trial, data)] if stage == "retrieval" else [])
        finally:
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - started, 2))
        val_rmse = float(fitted.rating_model.evaluate(data.val.dataset(fitted.batch_sizes["rating"]),
                                                      return_dict=True, verbose=0)["root_mean_squared_error"])
        recommender = trainer.recommender_of(config, fitted.models, data.features)
        (weight, penalty), by_pair = trainer.choose_blend(recommender, data.users, data.relevant)
        figures = by_pair[trainer.blend_key(weight, penalty)]
        value = objective_value(figures)
        new_users = new_user_figures(recommender, data)
        lift = new_user_lift(new_users, data.new_user_popularity)
        if not np.isfinite(val_rmse) or not np.isfinite(value):
            raise FloatingPointError(f"trial {trial.number}: not a number (val RMSE {val_rmse}, objective {value})")
        history = fitted.history.history.get("val_root_mean_squared_error", [])
        trial.set_user_attr("figures", {
            f"recall_at_{EVAL_TOP_K}": figures[f"recall_at_{EVAL_TOP_K}"], f"ndcg_at_{EVAL_TOP_K}": figures[f"ndcg_at_{EVAL_TOP_K}"],
            f"coverage_at_{EVAL_TOP_K}": figures[f"coverage_at_{EVAL_TOP_K}"], "val_rmse": val_rmse, "blend_weight": weight,
            "popularity_penalty": penalty, "users_evaluated": figures["users_evaluated"],
            f"new_user_recall_at_{EVAL_TOP_K}": new_users[f"recall_at_{EVAL_TOP_K}"],
            f"new_user_ndcg_at_{EVAL_TOP_K}": new_users[f"ndcg_at_{EVAL_TOP_K}"], "new_user_lift": lift,
        })
        trial.set_user_attr("ranking_epochs_run", len(history))
        trial.set_user_attr("fit_seconds", fitted.fit_seconds)
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - started, 2))
        trial.set_constraint("val_rmse", val_rmse - self.max_val_rmse)
        trial.set_constraint("val_coverage", self.min_val_coverage - figures[f"coverage_at_{EVAL_TOP_K}"])
        if self.min_new_user_lift is not None:
            trial.set_constraint("new_user_lift", self.min_new_user_lift - lift)
        return value


# --- the study: storage, sampler, pruner, budget ------------------------------------------------


def quiet_optuna() -> None:
    """Optuna's warnings only: heartbeats and the matplotlib plots are marked experimental, and it logs every trial."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(study_name: str, storage: str | None = None) -> str:
    """The study's database: ``--storage`` as given, else SQLite at runs/tuning/<study>.db."""
    return storage or f"sqlite:///{TUNING_DIR / f'{study_name}.db'}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None: another database, or SQLite in memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def storage_of(url: str, heartbeat: int = HEARTBEAT_SECONDS):
    """Optuna's RDB storage with heartbeats (a dead worker's trial is failed, then retried with its parameters).

    SQLite serialises writers with a file lock; a trial writes a handful of rows
    per epoch, so two to a few workers wait milliseconds at most, but Python's
    default 5 s busy timeout is short for a slow disk under load: 60 s here.
    (Optuna's JournalStorage avoids the lock, but has no heartbeat, so a killed
    worker's trial would stay RUNNING forever.) Other URLs go to SQLAlchemy as they are.
    """
    import optuna
    import sqlalchemy.exc

    quiet_optuna()  # the heartbeat is marked experimental
    if (database := sqlite_file(url)) is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            # Two processes creating the same new database at once: both create its tables and write
            # its schema version, one loses ("table ... already exists", a unique constraint). The
            # schema is there now; opening it again succeeds.
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def open_study(name: str, storage, seed: int, pruner_startup: int = 5, pruner_warmup: int = 6):
    """Creates or loads the study: TPE (seeded; constant liar so parallel workers spread out), MedianPruner."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=10)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=pruner_startup, n_warmup_steps=pruner_warmup)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)


COUNTED = ("COMPLETE", "PRUNED", "RUNNING")


def trials_left(study, budget: int) -> int:
    """How many trials to start so the study holds ``budget`` finished ones (running ones count as finishing).

    Trials of dead workers are failed first (after the heartbeat's grace period),
    so their retries, waiting in the study, are among those started.
    """
    import optuna

    quiet_optuna()
    optuna.storages.fail_stale_trials(study)
    states = tuple(getattr(optuna.trial.TrialState, s) for s in COUNTED)
    return max(0, budget - len(study.get_trials(deepcopy=False, states=states)))


def shares(n: int, workers: int) -> list[int]:
    """``n`` trials dealt to ``workers`` as evenly as possible (largest first); workers with none are dropped."""
    return [share for share in (n // workers + (i < n % workers) for i in range(workers)) if share]


def work(args: argparse.Namespace, split: str, n_trials: int, deadline: float, worker_index: int) -> None:
    """One worker: ``n_trials`` trials (fewer if the deadline or the study's budget is reached first)."""
    import optuna

    from common.quiet import native_stderr_silenced

    with native_stderr_silenced():
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    try:  # two workers on two cores: one thread pool each, not two pools of two
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:
        pass  # TensorFlow already started in this process (a test calling main): its pools stay
    name = study_name(args.study_name, split)
    storage = storage_of(storage_url(name, args.storage), args.heartbeat)
    study = open_study(name, storage, args.seed + worker_index, args.pruner_startup_trials, args.pruner_warmup_epochs)
    objective = Objective(Path(args.data_dir), base_config(split, args.base_preset), parse_fixed(args.fix),
                          args.max_val_rmse, args.min_val_coverage, args.min_new_user_lift)

    def progress(study, trial) -> None:
        if trial.state == optuna.trial.TrialState.PRUNED:
            outcome = f"pruned after retrieval epoch {trial.user_attrs.get('pruned_after_retrieval_epoch')}"
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            outcome = f"{trial.value:.4f} (val RMSE {trial.user_attrs['figures']['val_rmse']:.4f})"
        else:
            outcome = trial.state.name.lower()
        print(f"{name} trial {trial.number}: {outcome} in {trial.user_attrs.get('wall_seconds', 0):.0f} s "
              f"(worker {worker_index})", flush=True)

    # The budget is the study's, not this worker's: on several machines, each stops once the study holds it.
    guard = optuna.study.MaxTrialsCallback(args.trials, states=(optuna.trial.TrialState.COMPLETE,
                                                                optuna.trial.TrialState.PRUNED))
    study.optimize(objective, n_trials=n_trials, timeout=max(1.0, deadline - time.time()),
                   catch=(ArithmeticError,), callbacks=[guard, progress], gc_after_trial=True)


def study_name(prefix: str, split: str) -> str:
    return f"{prefix}-{split}"


def base_config(split: str, preset: str = TWO_STAGE) -> TrainConfig:
    """The config a trial starts from: the preset (named or a file) on ``split``."""
    return TrainConfig(**{**train_config.preset_values(preset), "preset": preset, "split": split})


def prepare_study(args: argparse.Namespace, split: str):
    """Opens the study and, on first use, records what it tunes and enqueues the base preset as its first trial."""
    name = study_name(args.study_name, split)
    storage = storage_of(storage_url(name, args.storage), args.heartbeat)
    study = open_study(name, storage, args.seed, args.pruner_startup_trials, args.pruner_warmup_epochs)
    if "split" not in study.user_attrs:
        base, fixed = base_config(split, args.base_preset), parse_fixed(args.fix)
        data = TuningData.load(Path(args.data_dir), split, base.seed, base.max_eval_users)
        baselines = data.baselines()
        for key, value in {
            "split": split, "base_preset": args.base_preset, "fixed": fixed, "seed": args.seed,
            "max_val_rmse": args.max_val_rmse, "min_val_coverage": args.min_val_coverage,
            "min_new_user_lift": args.min_new_user_lift,
            "objective": f"validation Recall@{EVAL_TOP_K} + NDCG@{EVAL_TOP_K} (maximised)",
            "validation": {"train_rows": len(data.train.user), "val_rows": len(data.val.user),
                           "users": len(data.users), "users_evaluated": baselines["popularity"]["users_evaluated"]},
            "baselines": {key: {k: v for k, v in figures.items() if k.endswith(f"_at_{EVAL_TOP_K}")}
                          for key, figures in baselines.items() if key in ("popularity", "ease")},
            "new_user_popularity": {k: v for k, v in data.new_user_popularity.items() if k.endswith(f"_at_{EVAL_TOP_K}")},
        }.items():
            study.set_user_attr(key, value)
        # The preset as it stands is trial 0: the search's yardstick, and a known good point for TPE.
        study.enqueue_trial({k: v for k, v in params_of(base).items() if k not in fixed}, skip_if_exists=True)
    return study


def report_command(args: argparse.Namespace) -> str:
    """The command that writes the report of this search's studies (``export/tuning_report.py``)."""
    words = ["--split", *args.split]
    if args.study_name != DEFAULT_STUDY:
        words += ["--study-name", args.study_name]
    if args.storage:
        words += ["--storage", args.storage]
    return " ".join(["python -m export.tuning_report", *map(shlex.quote, words)])


def run(args: argparse.Namespace) -> int:
    started = time.time()
    deadline = started + args.timeout
    command = " ".join(["python -m train tune", *map(shlex.quote, args.argv)])
    for split in args.split:
        study = prepare_study(args, split)
        left = trials_left(study, args.trials)
        if left:  # the report's "reproduce": the last command that ran trials on it
            study.set_user_attr(SEARCH_COMMAND, command)
        # Each split gets an equal part of what is left of the time budget.
        split_deadline = time.time() + (deadline - time.time()) / (len(args.split) - args.split.index(split))
        print(f"study {study.study_name} ({storage_url(study.study_name, args.storage)}): "
              f"{args.trials - left} of {args.trials} trials done or running, {left} to run on {args.workers} "
              f"worker(s), until {time.strftime('%H:%M:%S', time.localtime(split_deadline))}", flush=True)
        parts = shares(left, args.workers)
        if len(parts) == 1 and args.workers == 1:
            work(args, split, parts[0], split_deadline, 0)
        elif parts:
            failed = run_workers(args, split, parts, split_deadline, study)
            if failed:
                return cli.fail(f"study {study.study_name}: {failed}; the study keeps every finished trial: "
                                "the same command again resumes it")
    print(f"search done in {(time.time() - started) / 60:.1f} min. The report (TUNING.md, a preset file per study "
          f"and the plots in {REPORT_DIR}/; add --evaluate to measure each tuned preset on its split's test part, "
          f"the only step that reads a test file):\n    {report_command(args)}", flush=True)
    return cli.EXIT_OK


def wait_for_queue(study, timeout: float = QUEUE_WAIT_SECONDS) -> None:
    """Returns once no enqueued trial waits in the study (or after ``timeout`` seconds).

    SQLite has no ``SELECT ... FOR UPDATE``, so two workers starting together can both pop the
    enqueued trial 0 and run it twice; the later one then fails telling a finished trial
    (optuna/optuna#4002; it stopped one of make tune's two workers after its first trial).
    """
    import optuna

    end = time.time() + timeout
    while time.time() < end and study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        time.sleep(1.0)


def run_workers(args: argparse.Namespace, split: str, parts: list[int], deadline: float, study=None) -> str:
    """One OS process per share, all on the same study; waits for them (Ctrl-C stops them too).

    With ``study``, the first worker starts alone until it has taken the enqueued trials (``wait_for_queue``).
    Returns "" when every worker finished, else which did not.
    """
    procs = []
    for index, share in enumerate(parts):
        argv = [sys.executable, "-m", "train.tuning", "--worker", str(index), "--worker-trials", str(share),
                "--worker-deadline", str(deadline), "--split", split, *worker_flags(args)]
        procs.append(subprocess.Popen(argv))
        if index == 0 and study is not None and len(parts) > 1:
            wait_for_queue(study)
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    return ", ".join(f"worker {i} (pid {p.pid}) exited with {code}"
                     for i, (p, code) in enumerate(zip(procs, codes)) if code)


def worker_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--data-dir", str(args.data_dir), "--study-name", args.study_name, "--trials", str(args.trials),
             "--seed", str(args.seed), "--max-val-rmse", str(args.max_val_rmse),
             "--min-val-coverage", str(args.min_val_coverage), "--heartbeat", str(args.heartbeat),
             "--pruner-startup-trials", str(args.pruner_startup_trials),
             "--pruner-warmup-epochs", str(args.pruner_warmup_epochs), "--base-preset", args.base_preset,
             "--threads", str(args.threads)]
    if args.min_new_user_lift is not None:
        flags += ["--min-new-user-lift", str(args.min_new_user_lift)]
    if args.storage:
        flags += ["--storage", args.storage]
    for assignment in args.fix:
        flags += ["--fix", assignment]
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train tune", description=cli.plain(__doc__.split("\n\n", 1)[1]),
        usage="%(prog)s [--split u1 ...] [--trials N] [--timeout SECONDS] [--workers N] [--storage URL] ...",
    )
    parser.add_argument("--split", nargs="+", choices=TUNABLE_SPLITS, default=["u1"],
                        help="one study per split, each tuned on that split's train and validation parts "
                             "(a fold: its base file only) (default u1)")
    parser.add_argument("--trials", type=int, default=40,
                        help="trials per study, counted across workers and resumes (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=3000,
                        help="wall seconds for all the studies; no trial starts after it (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing each study (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow threads per worker (default: the cores divided among the workers)")
    parser.add_argument("--storage", default=None,
                        help="SQLAlchemy URL of the study database, e.g. postgresql://host/db (with its driver "
                             "installed) to share a study among machines; SQLite serves the workers of one machine "
                             f"(default: {storage_url('<study>-<split>')})")
    parser.add_argument("--study-name", default=DEFAULT_STUDY,
                        help="the study of split S is NAME-S (default %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="the sampler's seed (worker i: seed + i) (default %(default)s)")
    parser.add_argument("--base-preset", default=TWO_STAGE, type=train_config.preset_argument,
                        help="preset (name or file) the trials start from and trial 0 runs (default %(default)s)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="take a parameter out of the search, e.g. --fix retrieval_dim=64 (repeatable)")
    parser.add_argument("--max-val-rmse", type=float, default=DEFAULT_MAX_VAL_RMSE,
                        help="constraint: a trial with a higher validation RMSE is not feasible (default %(default)s)")
    parser.add_argument("--min-val-coverage", type=int, default=0,
                        help=f"constraint: a trial whose validation lists hold fewer distinct movies (coverage@{EVAL_TOP_K}) "
                             "is not feasible (default %(default)s)")
    parser.add_argument("--min-new-user-lift", type=float, default=None, metavar="FRACTION",
                        help=f"constraint: a trial whose new-user lists (recommend_from_ratings from each validation "
                             f"user's earliest {NEW_USER_RATINGS} training ratings) beat most popular's Recall@{EVAL_TOP_K} "
                             "by less than this fraction is not feasible (default: recorded, not a constraint)")
    parser.add_argument("--pruner-startup-trials", type=int, default=5,
                        help="trials that run to the end before any is pruned (default %(default)s)")
    # 6, not 2: make tune's u1 study pruned at retrieval epoch 3 a trial whose values had scored best of an
    # earlier study on the same data (docs/tuning.md).
    parser.add_argument("--pruner-warmup-epochs", type=int, default=6,
                        help="retrieval epochs of each trial before it can be pruned (default %(default)s)")
    parser.add_argument("--heartbeat", type=int, default=HEARTBEAT_SECONDS,
                        help="seconds between a worker's heartbeats; a trial silent for 3x this is failed and "
                             "retried (default %(default)s)")
    parser.add_argument("--data-dir", default=None, help="MovieLens 100K folder (default: $MOVIELENS_DIR, the cache, "
                                                         "a download)")
    # A worker process started by run_workers.
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-trials", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-deadline", type=float, default=None, help=argparse.SUPPRESS)
    cli.add_verbose(parser)
    return parser


@cli.interruptible
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    cli.apply_verbose(args)
    quiet_optuna()
    for flag, value in (("--trials", args.trials), ("--workers", args.workers), ("--heartbeat", args.heartbeat)):
        if value < 1:
            parser.error(f"{flag} must be at least 1")
    try:
        parse_fixed(args.fix)
    except ValueError as e:
        parser.error(str(e))
    if args.threads is None:
        args.threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    if args.worker is not None:  # started by run_workers: the coordinator prepared the study
        work(args, args.split[0], args.worker_trials, args.worker_deadline, args.worker)
        return cli.EXIT_OK

    from train.download import DataUnavailable, locate

    from train.data import DataError

    try:
        args.data_dir = locate(args.data_dir)
        return run(args)
    except (DataUnavailable, DataError) as e:
        return cli.fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
