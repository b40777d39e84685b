"""The served API and the project's shared names, ports and paths.

Every component (export, serving, client, load test, compose checks) reads these
constants instead of spelling the strings again, so renaming a signature or a
port is a one-line change that the tests then follow.

The API itself (MODEL_NAME, GRPC_PORT, the signatures and their tensors, input and
output keys, limits) is declared in ``client/contract.py``, which ships with the thin
client, and re-exported here unchanged: one declaration, two ways to import it.
"""

from __future__ import annotations

from client.contract import *  # noqa: F403  (the served API, declared once)
from client.contract import __all__ as _API_NAMES

# Ports: TF Serving's defaults for gRPC and REST; Locust's for its web UI.
REST_PORT = 8501
LOCUST_WEB_PORT = 8089
TRAINER_WORKER_PORT = 2222  # multi-worker training: each worker's collective-ops port in TF_CONFIG
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's path, on the REST port

# Where things live, relative to the repository root.
RUNS_DIR = "runs"
MODELS_DIR = "models"
MODEL_BASE_PATH = f"{MODELS_DIR}/{MODEL_NAME}"
REPORTS_DIR = "reports"

# Width of serving_default's user_embedding / movie_embedding for the default
# (two-stage) model: the retrieval query and candidate embeddings. The reference
# model's presets (reference-basic, reference-tuned) serve their 32-d id embeddings instead.
EMBEDDING_DIM = 64

# Files inside an exported version directory.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"
MODEL_CARD_FILE = f"{ASSETS_EXTRA}/model_card.json"


__all__ = [*_API_NAMES, "REST_PORT", "LOCUST_WEB_PORT", "TRAINER_WORKER_PORT", "PROMETHEUS_PATH", "RUNS_DIR", "MODELS_DIR", "MODEL_BASE_PATH", "REPORTS_DIR", "EMBEDDING_DIM", "ASSETS_EXTRA", "WARMUP_FILE", "MODEL_CARD_FILE"]
