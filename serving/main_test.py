"""``python -m serving`` (serving/__main__.py) takes tensorflow_model_server's command lines."""

from __future__ import annotations

import shlex

import pytest

from serving.__main__ import INERT_TF_SERVING_FLAGS, build_parser, inert_flag_warnings

# What TF Serving's own tests pass to every server (test_util RunServer), with every optional flag.
TF_SERVING_TEST_COMMAND = (
    "--port=8500 --rest_api_port=8501 --rest_api_timeout_in_ms=5000 --grpc_socket_path=/tmp/tf-serving.sock "
    "--model_config_file=/m.config --prefer_tflite_model=true --monitoring_config_file=/mon.config "
    "--model_config_file_poll_wait_seconds=1 --enable_batching --batching_parameters_file=/b.config "
    "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb,grpc.so_reuseaddr=1"
)


def test_the_command_line_tf_servings_tests_use_parses():
    args = build_parser().parse_args(shlex.split(TF_SERVING_TEST_COMMAND))
    assert (args.port, args.rest_api_port, args.rest_api_timeout_in_ms) == (8500, 8501, 5000)
    assert args.grpc_socket_path == "/tmp/tf-serving.sock"
    assert args.model_config_file_poll_wait_seconds == 1
    assert args.enable_batching is True
    assert args.grpc_channel_arguments.endswith("grpc.so_reuseaddr=1")
    assert inert_flag_warnings(args) == [
        "--prefer_tflite_model=True is a tensorflow_model_server flag this local server accepts but does not act "
        "on; ignored"
    ]


@pytest.mark.parametrize("name", sorted(INERT_TF_SERVING_FLAGS))
def test_every_inert_tf_serving_flag_is_accepted_with_one_warning(name):
    kind = INERT_TF_SERVING_FLAGS[name]
    value = {bool: "true", int: "4", float: "0.5", str: "x"}[kind]
    args = build_parser().parse_args([f"--{name}={value}", "--model_base_path=/m"])
    assert len(inert_flag_warnings(args)) == 1


def test_no_port_but_grpc_and_rest_opens_by_default():
    args = build_parser().parse_args(["--model_base_path=/m"])
    assert args.monitoring_port == 0 and args.grpc_socket_path == ""


def test_a_malformed_channel_argument_is_a_usage_error(capsys):
    from serving.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model_base_path=/m", "--grpc_channel_arguments=grpc.keepalive_time_ms"])
    assert exit_info.value.code == 2
    assert "'grpc.keepalive_time_ms' is not key=value" in capsys.readouterr().err
