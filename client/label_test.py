"""Version labels (docs/rollouts.md): `label=` on both clients and `--label` on the CLI send
ModelSpec.version_label, which the server resolves through its config's version_labels."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from client import AsyncRecommenderClient, RecommenderClient, cli, errors, protocol

CONFIG = """model_config_list {
  config {
    name: "movielens"
    base_path: "/models/movielens"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
"""


@pytest.fixture(scope="module")
def labelled_server(exported_model, tmp_path_factory):
    from serving.launcher import start_local_server

    root = tmp_path_factory.mktemp("labelled")
    base = root / "movielens"
    for version in (1, 2):
        shutil.copytree(exported_model / "1", base / str(version))
    config = root / "models.config"
    config.write_text(CONFIG)
    with start_local_server(base, extra_args=["--model_config_file", str(config)]) as server:
        yield server


def test_model_spec_carries_a_label_or_a_number() -> None:
    assert protocol.model_spec("m", "canary").version_label == "canary"
    assert protocol.model_spec("m", 3).version.value == 3
    assert not protocol.model_spec("m", None).HasField("version")
    with pytest.raises(ValueError):
        RecommenderClient("localhost:1", version=1, label="canary")
    with pytest.raises(ValueError):
        RecommenderClient("localhost:1", label="")


def test_each_label_answers_with_its_version(labelled_server) -> None:
    target = labelled_server.grpc_target
    for label, version in (("stable", 1), ("canary", 2)):
        with RecommenderClient(target, label=label) as client:
            assert client.metadata().version == version
            assert client.recommend("1", k=3)
    with RecommenderClient(target) as client:  # no label: the newest loaded version (TF Serving's rule)
        assert client.metadata().version == 2
    with RecommenderClient(target, label="nope") as client, pytest.raises(errors.InvalidArgument, match="label"):
        client.metadata()


def test_the_async_client_takes_a_label(labelled_server) -> None:
    async def version() -> int:
        async with AsyncRecommenderClient(labelled_server.grpc_target, label="stable") as client:
            return (await client.metadata()).version

    assert asyncio.run(version()) == 1


def test_the_cli_takes_a_label(labelled_server, capsys) -> None:
    assert cli.main(["--target", labelled_server.grpc_target, "--label", "canary", "metadata", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
