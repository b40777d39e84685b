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

# Width of serving_default's user_embedding / movie_embedding for the default
# (two-stage) model: the retrieval query and candidate embeddings. The reference
# presets (basic, tuned) serve their 32-d id embeddings instead.
EMBEDDING_DIM = 64

# Signatures.
PREDICT_SIGNATURE = "serving_default"
RECOMMEND_SIGNATURE = "recommend"
# A new user's handful of ratings instead of a known user's training history.
RECOMMEND_FROM_RATINGS_SIGNATURE = "recommend_from_ratings"
PREDICT_METHOD = "tensorflow/serving/predict"

# recommend scores the whole catalogue for each user in the request (a users ×
# catalogue matrix); larger batches are refused in-graph.
MAX_RECOMMEND_USERS = 100

# Input keys.
USER_ID = "user_id"
MOVIE_ID = "movie_id"
K = "k"  # recommend, recommend_from_ratings: DT_INT32 [-1], one per user_id (a batch dimension for TF Serving's batcher)
K_PER_USER_MESSAGE = (
    f"{K} needs one value per {USER_ID} (DT_INT32 [-1], e.g. [10, 10] for two users); "
    "a scalar k is no longer accepted"
)
RATED_MOVIE_IDS = "rated_movie_ids"  # recommend_from_ratings: [users, n] movie ids, "" pads
RATINGS = "ratings"  # recommend_from_ratings: [users, n] the ratings of those movies, 0.5-5
RATING_MIN, RATING_MAX = 0.5, 5.0
# recommend_from_ratings compares every given movie with every other in a row
# (first occurrence wins), so a row's length is bounded.
MAX_RATED_MOVIES = 1000
# A row's width may be one more: clients put "" first in the first row (the value
# TF Serving's batcher pads a merged tensor with is that tensor's first element).
MAX_RATED_WIDTH = MAX_RATED_MOVIES + 1

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

# A third signature returns the model card as a JSON string, because TF Serving's
# GetModelMetadata carries only signature_defs and clients have no access to the
# model's assets.extra/ folder. Like every signature it is batchable (TF Serving's
# batching session refuses input-free and rank-0 calls): input `request`
# DT_INT32 [-1] (values ignored; send [0]), output `model_card` DT_STRING [-1],
# one copy of the card per element.
MODEL_CARD_SIGNATURE = "model_card"
MODEL_CARD_REQUEST = "request"
MODEL_CARD = "model_card"
