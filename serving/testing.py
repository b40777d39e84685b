"""Moved: the local-server launcher is ``serving.launcher``; test-only helpers are in the top-level ``testing`` package.

Kept only so ``loadtest`` (changed separately) keeps importing ``start_local_server``
from here; delete this file once loadtest imports ``serving.launcher``.
"""

from serving.launcher import LocalServer, start_local_server, stop_server, wait_until_serving

__all__ = ["LocalServer", "start_local_server", "stop_server", "wait_until_serving"]
