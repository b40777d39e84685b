"""What the project's parts share: the contract's deployment names (contract.py), command-line
conventions (cli.py), quiet logging (quiet.py), model versions (versions.py).

Importing ``common`` changes nothing in the process. TensorFlow's process-wide setup
(TF_USE_LEGACY_KERAS, quiet logging) lives in ``common/tf_setup.py``, which the packages
that use TensorFlow import first.
"""
