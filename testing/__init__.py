"""Test support: helpers that only tests and test runners import.

Runtime code (common, train, export, serving, client, loadtest) never imports
this package, and it is not in the wheel (pyproject.toml lists the runtime
packages). pytest finds it because the repository root, where conftest.py is,
is on ``sys.path``; subprocesses started by the tests get it on PYTHONPATH.

- ``testing.movielens_fixture``: the small MovieLens-format fixture (100K, 1M and CSV layouts)
  the tests train and parse on, written through ``train/synthetic.py``'s 100K writer.
- ``testing.tf1_models``: a TF1 half_plus_two SavedModel with Classify/Regress signatures.
- ``testing.upstream_conformance``: ``make conformance-upstream``, TF Serving's own
  model-server tests against ``python -m serving``.

Free ports come from ``portpicker.pick_unused_port()``; a running local server
from ``serving.launcher.start_local_server`` (the demo and load test use it too).
"""
