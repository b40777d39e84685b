"""Build step: describe TF Serving's gRPC API for the thin client, from the pinned tensorflow-serving-api.

    python -m client.describe_protos            # (re)write client/tfserving_protos.binpb
    python -m client.describe_protos --check    # exit 1 if the file differs from what the installed package describes

The client needs a dozen of TF Serving's and TensorFlow's messages (PredictRequest,
TensorProto, ...) but must not import TensorFlow, which ``tensorflow_serving.apis``'s
generated modules do (their protos live in the ``tensorflow`` package). So at build
time this module imports those generated modules once, walks their file descriptors
(the two services, PredictionService and ModelService, and everything they import),
and writes them as one serialized ``FileDescriptorSet``: the protos' own description,
nothing written by hand. ``client/messages.py`` loads it at run time with protobuf's
``descriptor_pool`` and ``message_factory``. ``make client-wheel`` runs this before it
builds, and client/messages_test.py checks the committed file against the installed
package, so it cannot drift from the pin in pyproject.toml.

Not part of the thin wheel: it needs tensorflow-serving-api (and so TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT = Path(__file__).with_name("tfserving_protos.binpb")
# The generated modules whose services the client calls; their imports come along.
SERVICE_MODULES = ("tensorflow_serving.apis.prediction_service_pb2", "tensorflow_serving.apis.model_service_pb2")


def describe() -> bytes:
    """The serialized FileDescriptorSet of the services and their dependencies, dependencies first."""
    import importlib

    from google.protobuf import descriptor_pb2

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def visit(file_descriptor) -> None:
        if file_descriptor.name in files:
            return
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        files[file_descriptor.name] = proto

    for name in SERVICE_MODULES:
        visit(importlib.import_module(name).DESCRIPTOR)
    return descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.describe_protos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    data = describe()
    if args.check:
        if not args.out.is_file() or args.out.read_bytes() != data:
            print(f"error: {args.out} differs from what the installed tensorflow-serving-api describes; "
                  "run python -m client.describe_protos", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date ({len(data)} bytes)")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
