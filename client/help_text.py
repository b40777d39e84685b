"""A docstring's first paragraph as ``--help`` text: the one definition every command line of the project uses.

It lives in the client because the client is the lowest layer: the thin wheel
(``movielens_client``) ships without ``common/``, while ``common/cli.py`` may take
this module from the client (tests/import_graph_test.py). Like ``contract.py`` it
imports nothing beyond the standard library, so a command line that uses it does not
load gRPC.
"""

from __future__ import annotations


def plain(docstring: str | None) -> str:
    """A docstring's first paragraph as plain help text (no reStructuredText ``code`` marks)."""
    first = (docstring or "").strip().split("\n\n")[0]
    return " ".join(first.replace("``", "").split())
