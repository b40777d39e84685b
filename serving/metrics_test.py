"""ServingMetrics.observe: one count and one latency sample per request, under the code that ended it."""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
import pytest
from portpicker import pick_unused_port

from serving.errors import ServingError, invalid_argument
from serving.metrics import UNKNOWN, ServingMetrics, start_metrics_server


def _value(metrics: ServingMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_successful_request_is_counted_with_the_labels_the_handler_found():
    metrics = ServingMetrics()
    for _ in range(2):
        with metrics.observe("Predict") as observation:
            assert _value(metrics, "serving_requests_in_flight", api="Predict") == 1
            observation.model, observation.signature = "movielens", "recommend"
    labels = {"api": "Predict", "model": "movielens", "signature": "recommend", "code": "OK"}
    assert _value(metrics, "serving_requests_total", **labels) == 2
    assert _value(metrics, "serving_request_latency_seconds_count", **labels) == 2
    assert _value(metrics, "serving_requests_in_flight", api="Predict") == 0


def test_graph_runs_and_their_cpu_add_up_per_model_and_signature():
    metrics = ServingMetrics()
    metrics.observe_graph_run("movielens", "recommend", 0.25)
    metrics.observe_graph_run("movielens", "recommend", 0.5)
    metrics.observe_graph_run("movielens", "serving_default", 0.125)
    labels = {"model": "movielens", "signature": "recommend"}
    assert _value(metrics, "serving_graph_runs_total", **labels) == 2
    assert _value(metrics, "serving_graph_cpu_seconds_total", **labels) == 0.75
    assert _value(metrics, "serving_graph_runs_total", model="movielens", signature="serving_default") == 1


def test_a_serving_error_is_counted_under_its_code_and_still_raised():
    metrics = ServingMetrics()
    with pytest.raises(ServingError):
        with metrics.observe("Predict"):
            raise invalid_argument("bad")
    labels = {"api": "Predict", "model": UNKNOWN, "signature": UNKNOWN, "code": "INVALID_ARGUMENT"}
    assert _value(metrics, "serving_requests_total", **labels) == 1
    assert _value(metrics, "serving_requests_in_flight", api="Predict") == 0


def test_any_other_exception_is_internal():
    metrics = ServingMetrics()
    with pytest.raises(KeyError):
        with metrics.observe("GetModelStatus", signature=""):
            raise KeyError("bug")
    labels = {"api": "GetModelStatus", "model": UNKNOWN, "signature": "", "code": grpc.StatusCode.INTERNAL.name}
    assert _value(metrics, "serving_requests_total", **labels) == 1


def test_the_metrics_port_serves_the_page_at_its_path_only():
    metrics = ServingMetrics()
    with metrics.observe("Predict"):
        pass
    port = pick_unused_port()
    server = start_metrics_server(metrics, "127.0.0.1", port, "/monitoring/prometheus/metrics")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/monitoring/prometheus/metrics", timeout=10) as page:
            assert page.status == 200
            assert page.headers["Content-Type"].startswith("text/plain")
            assert page.read() == metrics.render()
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert elsewhere.value.code == 404
        assert elsewhere.value.read() == b"Unexpected path: /metrics. Should be /monitoring/prometheus/metrics"
    finally:
        server.shutdown()
        server.server_close()
