"""TF Serving config protos that the tensorflow-serving-api wheel does not ship.

`--batching_parameters_file`, `--monitoring_config_file` and `--ssl_config_file` are
text protos of `tensorflow.serving.BatchingParameters`, `tensorflow.serving.MonitoringConfig`
and `tensorflow.serving.SSLConfig`,
but the PyPI package only carries the `apis/` and part of `config/`. Parsing the
files as real messages (instead of hand-rolled regexes) is what makes a typo'd
field fail the same way it would fail in `tensorflow_model_server`, so this
module rebuilds the three message types at import time from a
FileDescriptorProto that mirrors upstream's field names, numbers and types:

- tensorflow_serving/servables/tensorflow/session_bundle_config.proto
  (BatchingParameters only; SessionBundleConfig drags in TensorFlow's
  ConfigProto and is not needed to read the batching file)
- tensorflow_serving/config/monitoring_config.proto
- tensorflow_serving/config/ssl_config.proto (``--ssl_config_file``)

The types live in a private DescriptorPool so they can never clash with a
future tensorflow-serving-api release that registers the same file names in the
default pool.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2
from google.protobuf.message import Message

_PACKAGE = "tensorflow.serving"
_WRAPPERS_FILE = "google/protobuf/wrappers.proto"

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    name: str,
    number: int,
    field_type: int,
    type_name: str | None = None,
    label: int = _F.LABEL_OPTIONAL,
) -> _F:
    field = _F(name=name, number=number, type=field_type, label=label)
    if type_name is not None:
        field.type_name = type_name
    return field


def _wrapper(name: str, number: int, wrapper: str) -> _F:
    return _field(name, number, _F.TYPE_MESSAGE, f".google.protobuf.{wrapper}")


def _session_bundle_config_file() -> descriptor_pb2.FileDescriptorProto:
    # Field numbers follow upstream, including the non-sequential 8/9 that were
    # added after allowed_batch_sizes/pad_variable_length_inputs.
    batching = descriptor_pb2.DescriptorProto(
        name="BatchingParameters",
        field=[
            _wrapper("max_batch_size", 1, "Int64Value"),
            _wrapper("batch_timeout_micros", 2, "Int64Value"),
            _wrapper("max_enqueued_batches", 3, "Int64Value"),
            _wrapper("num_batch_threads", 4, "Int64Value"),
            _wrapper("thread_pool_name", 5, "StringValue"),
            _field("allowed_batch_sizes", 6, _F.TYPE_INT64, label=_F.LABEL_REPEATED),
            _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
            _wrapper("enable_large_batch_splitting", 8, "BoolValue"),
            _wrapper("max_execution_batch_size", 9, "Int64Value"),
        ],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[_WRAPPERS_FILE],
        message_type=[batching],
    )


def _monitoring_config_file() -> descriptor_pb2.FileDescriptorProto:
    prometheus = descriptor_pb2.DescriptorProto(
        name="PrometheusConfig",
        field=[
            _field("enable", 1, _F.TYPE_BOOL),
            _field("path", 2, _F.TYPE_STRING),
        ],
    )
    monitoring = descriptor_pb2.DescriptorProto(
        name="MonitoringConfig",
        field=[
            _field("prometheus_config", 1, _F.TYPE_MESSAGE, f".{_PACKAGE}.PrometheusConfig"),
        ],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        message_type=[prometheus, monitoring],
    )


def _ssl_config_file() -> descriptor_pb2.FileDescriptorProto:
    # PEM contents, not paths: TF Serving hands these strings to gRPC as they are.
    ssl = descriptor_pb2.DescriptorProto(
        name="SSLConfig",
        field=[
            _field("server_key", 1, _F.TYPE_STRING),
            _field("server_cert", 2, _F.TYPE_STRING),
            _field("custom_ca", 3, _F.TYPE_STRING),
            _field("client_verify", 4, _F.TYPE_BOOL),
        ],
    )
    return descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        message_type=[ssl],
    )


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(_session_bundle_config_file().SerializeToString())
    pool.AddSerializedFile(_monitoring_config_file().SerializeToString())
    pool.AddSerializedFile(_ssl_config_file().SerializeToString())
    return pool


_POOL = _build_pool()


def _message_class(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


BatchingParameters: type[Message] = _message_class("BatchingParameters")
PrometheusConfig: type[Message] = _message_class("PrometheusConfig")
MonitoringConfig: type[Message] = _message_class("MonitoringConfig")
SSLConfig: type[Message] = _message_class("SSLConfig")
