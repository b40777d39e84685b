"""Prometheus metrics for the local server, on their own registry.

TF Serving exports its own metric names (``:tensorflow:serving:request_count``
and friends) through its monitoring config; a Python server cannot produce
those faithfully, so this exports a small, honest set instead: requests and
latency per API, model, signature and status code, requests in flight per API,
the loaded version per model, the sizes of executed batches, and the graph
runs with the CPU time they took (what batching shares out). A private
registry keeps the page free of the Python client's process defaults being
confused with serving data and lets tests build independent instances.

Model and signature labels come from the server's own names, never straight
from a request: until a request's model (or signature) has been found it is
counted as "unknown", so clients cannot grow the number of series without bound.
"""

from __future__ import annotations

import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from serving.errors import ServingError

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNKNOWN = "unknown"  # the model or signature label before the lookup succeeded


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("api", "model", "signature", "code")
        self.requests = Counter(
            "serving_requests", "Requests answered, by API, model, signature and status code.", labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "serving_request_latency_seconds", "Request latency in seconds, by API, model, signature and status code.",
            labels, buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "serving_requests_in_flight", "Requests being handled right now, by API.", ("api",),
            registry=self.registry,
        )
        self.loaded_version = Gauge(
            "serving_model_loaded_version", "Newest version of each model that is loaded and serving (0: none).",
            ("model",), registry=self.registry,
        )
        self.available_versions = Gauge(
            "serving_model_available_versions", "Number of loaded versions per model.", ("model",),
            registry=self.registry,
        )
        self._in_flight_children: dict[str, object] = {}
        self._children: dict[tuple[str, str, str, str], tuple[object, object]] = {}
        self.batch_size = Histogram(
            "serving_batch_size", "Rows per executed batch (after padding), by model and signature.",
            ("model", "signature"), buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.graph_runs = Counter(
            "serving_graph_runs", "Session runs of a signature's graph (one per batch when batching), by model and "
            "signature.", ("model", "signature"), registry=self.registry,
        )
        self.graph_cpu = Counter(
            "serving_graph_cpu_seconds", "CPU seconds of the threads that ran the graph, inside the runs, by model "
            "and signature (kernels that fan out to TensorFlow's intra-op pool are not counted).",
            ("model", "signature"), registry=self.registry,
        )
        self._graph_children: dict[tuple[str, str], tuple[object, object]] = {}

    def observe(self, api: str, signature: str = UNKNOWN) -> _Observed:
        """Times one request and counts it under the code of whatever exception escapes.

        ``with metrics.observe(api) as observation:`` -- the handler sets
        ``model`` and ``signature`` once it has found them; ``signature=""`` is
        for APIs that have none (status, metadata).
        """
        return _Observed(self, api, signature)

    def _in_flight_child(self, api: str):
        child = self._in_flight_children.get(api)
        if child is None:
            child = self._in_flight_children[api] = self.in_flight.labels(api)
        return child

    def _finished_children(self, labels: tuple[str, str, str, str]):
        # prometheus_client's labels() validates and locks on every call; the
        # label sets are few (the server's own names), so their children are
        # looked up once. A race only looks one up twice: labels() is idempotent.
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (self.requests.labels(*labels), self.latency.labels(*labels))
        return children

    def observe_graph_run(self, model: str, signature: str, cpu_seconds: float) -> None:
        children = self._graph_children.get((model, signature))
        if children is None:
            children = self._graph_children[(model, signature)] = (
                self.graph_runs.labels(model, signature), self.graph_cpu.labels(model, signature),
            )
        children[0].inc()
        children[1].inc(cpu_seconds)

    def set_versions(self, model: str, versions: list[int]) -> None:
        self.loaded_version.labels(model).set(max(versions) if versions else 0)
        self.available_versions.labels(model).set(len(versions))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Observed:
    """The context manager ``ServingMetrics.observe`` returns (a class: cheaper per request than a generator)."""

    __slots__ = ("_metrics", "_api", "_gauge", "_start", "observation")

    def __init__(self, metrics: ServingMetrics, api: str, signature: str) -> None:
        self._metrics = metrics
        self._api = api
        self.observation = Observation(signature)

    def __enter__(self) -> Observation:
        self._gauge = self._metrics._in_flight_child(self._api)
        self._gauge.inc()
        self._start = time.perf_counter()
        return self.observation

    def __exit__(self, exc_type, exc, tb) -> bool:
        observation = self.observation
        if exc is not None:
            observation.code = exc.code if isinstance(exc, ServingError) else grpc.StatusCode.INTERNAL
        self._gauge.dec()
        requests, latency = self._metrics._finished_children(
            (self._api, observation.model, observation.signature, observation.code.name)
        )
        requests.inc()
        latency.observe(time.perf_counter() - self._start)
        return False  # the exception, if any, goes on to the caller


class Observation:
    """The labels of one request, filled in as the handler learns them."""

    __slots__ = ("model", "signature", "code")

    def __init__(self, signature: str) -> None:
        self.model = UNKNOWN
        self.signature = signature
        self.code = grpc.StatusCode.OK


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # scrapes every few seconds: keep the log quiet
        pass


def start_metrics_server(metrics: ServingMetrics, host: str, port: int, path: str) -> ThreadingWSGIServer:
    """Serves the metrics page (prometheus_client's WSGI app) at exactly ``path``, 404 elsewhere, on its own port."""
    page = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO", "") != path:
            query = environ.get("QUERY_STRING", "")
            requested = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
            body = f"Unexpected path: {requested}. Should be {path}".encode()
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return page(environ, start_response)

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
