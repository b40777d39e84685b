"""serving component."""

import common.tf_setup  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads, quiet logs)
