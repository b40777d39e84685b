"""Tests for serving.config: the shipped files parse, and mistakes fail loudly with file/line/field."""

from pathlib import Path

import pytest
from google.protobuf import text_format

from common.contract import MODEL_NAME, PROMETHEUS_PATH
from serving import config, tfs_protos

SERVING_DIR = Path(__file__).resolve().parent


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped files ---------------------------------------------------------------


def test_shipped_models_config_serves_movielens_latest_version() -> None:
    parsed = config.read_model_server_config(SERVING_DIR / "models.config")
    (model,) = parsed.model_config_list.config
    assert model.name == MODEL_NAME
    assert model.base_path == f"/models/{MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1


def test_shipped_batching_config_sets_every_scheduler_knob() -> None:
    params = config.read_batching_parameters(SERVING_DIR / "batching.config")
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert params.HasField(name), name
    assert params.allowed_batch_sizes[-1] == params.max_batch_size.value


def test_shipped_monitoring_config_exposes_the_contract_path() -> None:
    parsed = config.read_monitoring_config(SERVING_DIR / "monitoring.config")
    assert config.prometheus_path(parsed) == PROMETHEUS_PATH


# --- the rebuilt protos match upstream's wire format ----------------------------------


def test_batching_parameters_field_numbers_match_upstream() -> None:
    numbers = {f.name: f.number for f in tfs_protos.BatchingParameters.DESCRIPTOR.fields}
    assert numbers == {
        "max_batch_size": 1,
        "batch_timeout_micros": 2,
        "max_enqueued_batches": 3,
        "num_batch_threads": 4,
        "thread_pool_name": 5,
        "allowed_batch_sizes": 6,
        "pad_variable_length_inputs": 7,
        "enable_large_batch_splitting": 8,
        "max_execution_batch_size": 9,
    }


def test_batching_parameters_wire_bytes_are_what_tf_serving_expects() -> None:
    # Field 1 (max_batch_size, Int64Value) = tag 0x0a, len 2, {field 1 varint 64}; field 6 packed.
    params = text_format.Parse("max_batch_size { value: 64 } allowed_batch_sizes: 64", tfs_protos.BatchingParameters())
    assert params.SerializeToString() == bytes([0x0A, 0x02, 0x08, 0x40, 0x32, 0x01, 0x40])


def test_monitoring_config_round_trips_through_text_format() -> None:
    parsed = text_format.Parse('prometheus_config { enable: true path: "/m" }', tfs_protos.MonitoringConfig())
    assert parsed.prometheus_config.enable is True
    assert parsed.prometheus_config.path == "/m"


# --- typos name the file, line and field ---------------------------------------------


@pytest.mark.parametrize(
    ("reader", "text", "line", "field"),
    [
        (config.read_batching_parameters, "max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }\n", 2, "max_batch_sise"),
        (config.read_monitoring_config, "prometheus_config {\n  enabled: true\n}\n", 2, "enabled"),
        (
            config.read_model_server_config,
            'model_config_list {\n  config {\n    name: "m"\n    base_pth: "/m"\n  }\n}\n',
            4,
            "base_pth",
        ),
    ],
    ids=["batching", "monitoring", "models"],
)
def test_unknown_field_names_file_line_and_field(tmp_path: Path, reader, text: str, line: int, field: str) -> None:
    path = _write(tmp_path, "bad.config", text)
    with pytest.raises(config.ConfigError) as excinfo:
        reader(path)
    message = str(excinfo.value)
    assert f"{path}:{line}:" in message
    assert f'"{field}"' in message


def test_wrong_value_type_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "batching.config", "num_batch_threads { value: four }\n")
    with pytest.raises(config.ConfigError, match=r"batching\.config:1:"):
        config.read_batching_parameters(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.read_monitoring_config(tmp_path / "absent.config")


# --- semantics TF Serving enforces --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("num_batch_threads { value: 0 }", "num_batch_threads must be >= 1"),
        ("max_batch_size { value: 0 }", "max_batch_size must be >= 1"),
        ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be >= 1"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be >= 0"),
        (
            "max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 8 allowed_batch_sizes: 32",
            "strictly increasing",
        ),
        (
            "max_batch_size { value: 32 } allowed_batch_sizes: 16 allowed_batch_sizes: 8 allowed_batch_sizes: 32",
            "strictly increasing",
        ),
        ("max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 16", r"\(16\) must equal max_batch_size \(32\)"),
        # Unset max_batch_size means TF Serving's default of 1000, not "anything".
        ("allowed_batch_sizes: 8 allowed_batch_sizes: 64", r"must equal max_batch_size \(1000\)"),
        ("max_batch_size { value: 32 } allowed_batch_sizes: 0 allowed_batch_sizes: 32", "must be positive"),
        (
            "max_batch_size { value: 32 } enable_large_batch_splitting { value: true } max_execution_batch_size { value: 64 }",
            r"must be <= max_batch_size",
        ),
        (
            "max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 16 } allowed_batch_sizes: 8 allowed_batch_sizes: 64",
            r"must equal max_execution_batch_size \(16\)",
        ),
    ],
)
def test_batching_semantics_rejected(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "batching.config", text + "\n")
    with pytest.raises(config.ConfigError, match=expected) as excinfo:
        config.read_batching_parameters(path)
    assert str(path) in str(excinfo.value)


def test_max_execution_batch_size_without_splitting_is_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    # TF Serving ignores the field unless splitting is on, so the batch limit stays max_batch_size.
    path = _write(
        tmp_path, "batching.config",
        "max_batch_size { value: 32 } max_execution_batch_size { value: 8 } allowed_batch_sizes: 8 allowed_batch_sizes: 32\n",
    )
    params = config.read_batching_parameters(path)
    assert params.max_execution_batch_size.value == 8
    assert "max_execution_batch_size is ignored" in caplog.text


def test_large_batch_splitting_allowed_sizes_follow_execution_size(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "batching.config",
        "max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 16 } allowed_batch_sizes: 8 allowed_batch_sizes: 16\n",
    )
    params = config.read_batching_parameters(path)
    assert list(params.allowed_batch_sizes) == [8, 16]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "model_config_list is required"),
        ("model_config_list {}", "no config entries"),
        ('model_config_list { config { name: "m" } }', "base_path is empty"),
        ('model_config_list { config { base_path: "/m" } }', "name is empty"),
        (
            'model_config_list { config { name: "m" base_path: "/a" model_platform: "tensorflow" } '
            'config { name: "m" base_path: "/b" model_platform: "tensorflow" } }',
            "duplicate model name 'm'",
        ),
        # server_core.cc GetPlatform: a config file gets no default platform.
        ('model_config_list { config { name: "m" base_path: "/m" } }', "model_platform is empty"),
        ('model_config_list { config { name: "m" base_path: "/m" model_platform: "tflite" } }', "'tflite' is not served"),
        (
            'model_config_list { config { name: "m" base_path: "/m" model_platform: "tensorflow" model_type: TENSORFLOW } }',
            "not both",
        ),
        ('model_config_list { config { name: "m" base_path: "/m" model_type: OTHER } }', "model_type 2 is not supported"),
    ],
)
def test_model_server_config_semantics_rejected(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "models.config", text + "\n")
    with pytest.raises(config.ConfigError, match=expected):
        config.read_model_server_config(path)


@pytest.mark.parametrize(
    "extra",
    [
        'model_platform: "tensorflow" model_version_policy { latest { num_versions: 0 } }',  # served as 1, like TF
        'model_platform: "tensorflow" model_version_policy { specific { } }',  # TF only warns: nothing is served
        "model_type: TENSORFLOW",  # the deprecated spelling of the platform
    ],
)
def test_model_server_config_accepted_like_tf_serving(tmp_path: Path, extra: str) -> None:
    path = _write(tmp_path, "models.config", f'model_config_list {{ config {{ name: "m" base_path: "/m" {extra} }} }}\n')
    (model,) = config.read_model_server_config(path).model_config_list.config
    assert model.name == "m"


def test_monitoring_path_must_be_absolute(tmp_path: Path) -> None:
    path = _write(tmp_path, "monitoring.config", 'prometheus_config { enable: true path: "metrics" }\n')
    with pytest.raises(config.ConfigError, match="must start with '/'"):
        config.read_monitoring_config(path)


def test_disabled_prometheus_has_no_path_and_empty_path_uses_tf_serving_default(tmp_path: Path) -> None:
    disabled = config.read_monitoring_config(_write(tmp_path, "off.config", "prometheus_config { enable: false }\n"))
    assert config.prometheus_path(disabled) is None
    default = config.read_monitoring_config(_write(tmp_path, "on.config", "prometheus_config { enable: true }\n"))
    assert config.prometheus_path(default) == PROMETHEUS_PATH


def test_a_file_that_does_not_parse_is_reported_in_tf_servings_words(tmp_path: Path) -> None:
    # tensorflow_model_server logs "Error parsing text-format tensorflow.serving.ModelServerConfig: ...".
    path = _write(tmp_path, "bad_model_config.txt", "improperly formatted file")
    with pytest.raises(config.ConfigError) as excinfo:
        config.read_model_server_config(path)
    assert str(excinfo.value).startswith(f"{path}:1:1: Error parsing text-format tensorflow.serving.ModelServerConfig: ")


def test_grpc_channel_arguments_are_ints_when_they_parse_as_int32() -> None:
    assert config.parse_grpc_channel_arguments("grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb") == [
        ("grpc.max_connection_age_ms", 2000), ("grpc.lb_policy_name", "grpclb")
    ]
    assert config.parse_grpc_channel_arguments("") == []
    assert config.parse_grpc_channel_arguments("k=99999999999") == [("k", "99999999999")]
    with pytest.raises(config.ConfigError, match="not key=value"):
        config.parse_grpc_channel_arguments("a=1,b")
