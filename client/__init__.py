"""client component."""

import common  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
