"""The served API and the project's shared names, ports and paths.

Every component (export, serving, client, load test, compose checks) reads these
constants instead of spelling the strings again, so renaming a signature or a
port is a one-line change that the tests then follow.
"""

MODEL_NAME = "movielens"

# Ports: TF Serving's defaults for gRPC and REST; Locust's for its web UI.
GRPC_PORT = 8500
REST_PORT = 8501
MONITORING_PORT = 8502  # the local server's Prometheus endpoint
LOCUST_WEB_PORT = 8089
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's path, on the REST port

# Where things live, relative to the repository root.
RUNS_DIR = "runs"
MODELS_DIR = "models"
MODEL_BASE_PATH = f"{MODELS_DIR}/{MODEL_NAME}"
REPORTS_DIR = "reports"

# Model shape.
EMBEDDING_DIM = 32

# Signatures.
PREDICT_SIGNATURE = "serving_default"
RECOMMEND_SIGNATURE = "recommend"
PREDICT_METHOD = "tensorflow/serving/predict"

# recommend scores every catalogue movie for each user in the request (users ×
# ~1,600 rows through the dense tower); larger batches are refused in-graph.
MAX_RECOMMEND_USERS = 100

# Input keys.
USER_ID = "user_id"
MOVIE_ID = "movie_id"
K = "k"

# Output keys: serving_default.
PREDICTED_RATING = "predicted_rating"
USER_EMBEDDING = "user_embedding"
MOVIE_EMBEDDING = "movie_embedding"

# Output keys: recommend.
MOVIE_IDS = "movie_ids"
MOVIE_TITLES = "movie_titles"
SCORES = "scores"

# Files inside an exported version directory.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = f"{ASSETS_EXTRA}/tf_serving_warmup_requests"
MODEL_CARD_FILE = f"{ASSETS_EXTRA}/model_card.json"

# A third, input-free signature returns the model card as a JSON string (scalar),
# because TF Serving's GetModelMetadata carries only signature_defs and clients
# have no access to the model's assets.extra/ folder.
MODEL_CARD_SIGNATURE = "model_card"
MODEL_CARD = "model_card"
