"""Test support: helpers that only tests and test runners import.

Runtime code (common, train, export, serving, client, loadtest) never imports
this package, and it is not in the wheel (pyproject.toml lists the runtime
packages). pytest finds it because the repository root, where conftest.py is,
is on ``sys.path``; subprocesses started by the tests get it on PYTHONPATH.

- ``testing.fake_serving``: an in-process fake of TF Serving's gRPC API that fails on cue, for
  the client's and the load test's tests of retries, status codes and answer checks.
- ``testing.tls``: a throw-away CA with server and client certificates, and a server interceptor
  that checks bearer tokens as Envoy does, for the TLS and token tests.
- ``testing.movielens_fixture``: the small MovieLens-format fixture (100K, 1M and CSV layouts)
  the tests train and parse on, written through ``train/synthetic.py``'s 100K writer.
- ``testing.tf1_models``: a TF1 half_plus_two SavedModel with Classify/Regress signatures.
- ``testing.upstream_conformance``: ``make conformance-upstream``, TF Serving's own
  model-server tests against ``python -m serving``.

Free ports come from ``portpicker.pick_unused_port()``; a running local server
from ``serving.launcher.start_local_server`` (the demo and load test use it too).
"""
