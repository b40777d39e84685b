"""``make client-wheel``: build the thin client's wheel, ``movielens-recommender-client``.

    python -m client.build_wheel [--out dist]

The wheel is built from ``client/`` (the folder stays where it is): the modules in
SHIPPED are copied into a staging folder as the import package ``movielens_client``
(a name no other project's ``client`` collides with; the modules import each other
relatively, so the same files work as ``client`` in the repository), TF Serving's
descriptors are described afresh from the installed, pinned tensorflow-serving-api
(client/describe_protos.py), and ``python -m build`` (pinned in pyproject.toml's dev
extra) builds the wheel with client/wheel.toml as its pyproject.toml. Left out: the
tests and the build scripts (they need the repository, TensorFlow or pytest); the fake server
the tests use is in testing/, the client's benchmark in loadtest/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parent
REPO = CLIENT.parent
PACKAGE = "movielens_client"
DISTRIBUTION = "movielens-recommender-client"
SHIPPED = (
    "__init__.py", "__main__.py", "aio.py", "auth.py", "base.py", "channel.py", "cli.py", "client.py",
    "contract.py", "errors.py", "help_text.py", "messages.py", "protocol.py", "table.py", "tensors.py",
)  # fmt: skip
README = """# movielens-recommender-client

The Python SDK and command line of the MovieLens recommender (a TF Serving gRPC API), without
TensorFlow: it needs grpcio, protobuf and numpy.

```python
from movielens_client import RecommenderClient

with RecommenderClient("localhost:8500") as client:
    for rec in client.recommend(42, k=10):
        print(rec.movie_id, rec.title, rec.score)
```

```bash
movielens-client --target localhost:8500 recommend --user 42 -k 10
movielens-client --target edge.example:8500 --tls-ca ca.pem --token-file demo.jwt recommend --rated 50=5 --rated 172=4
```

See the project's docs/client.md for the whole API.
"""


def stage(folder: Path) -> Path:
    """The staging folder: pyproject.toml, README.md and movielens_client/ with fresh descriptors."""
    from client.describe_protos import describe

    shutil.rmtree(folder, ignore_errors=True)
    package = folder / PACKAGE
    package.mkdir(parents=True)
    for name in SHIPPED:
        shutil.copy2(CLIENT / name, package / name)
    (package / "tfserving_protos.binpb").write_bytes(describe())
    (package / "py.typed").write_text("")
    shutil.copy2(CLIENT / "wheel.toml", folder / "pyproject.toml")
    (folder / "README.md").write_text(README)
    return folder


def build(out: Path, staging: Path | None = None) -> Path:
    """Build the wheel into ``out``; returns its path."""
    staging = stage(staging or REPO / "build" / "client-wheel")
    out.mkdir(parents=True, exist_ok=True)
    pattern = f"{DISTRIBUTION.replace('-', '_')}-*.whl"
    before = set(out.glob(pattern))
    # --no-isolation: the build backend (setuptools) comes from this virtualenv, not from a download.
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(staging)],
        capture_output=True, text=True,
    )  # fmt: skip
    if completed.returncode != 0:
        raise RuntimeError(f"python -m build failed ({completed.returncode}):\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
    built = sorted(set(out.glob(pattern)) - before) or sorted(out.glob(pattern), key=lambda p: p.stat().st_mtime)
    return built[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.build_wheel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the wheel goes (default %(default)s)")
    args = parser.parse_args(argv)
    wheel = build(args.out)
    print(f"{wheel} ({wheel.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
