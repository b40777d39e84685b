"""Prometheus metrics for the local server, on their own registry.

TF Serving exports its own metric names (``:tensorflow:serving:request_count``
and friends) through its monitoring config; a Python server cannot produce
those faithfully, so this exports a small, honest set instead: requests and
latency per API, model, signature and status code, requests in flight per API,
the loaded version per model, and the sizes of executed batches. A private
registry keeps the page free of the Python client's process defaults being
confused with serving data and lets tests build independent instances.

Model and signature labels come from the server's own names, never straight
from a request: until a request's model (or signature) has been found it is
counted as "unknown", so clients cannot grow the number of series without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.batch_size = Histogram(
            "serving_batch_size", "Rows per executed batch (after padding), by model and signature.",
            ("model", "signature"), buckets=_BATCH_BUCKETS, registry=self.registry,
        )

    @contextmanager
    def observe(self, api: str, signature: str = UNKNOWN) -> Iterator[Observation]:
        """Times one request and counts it under the code of whatever exception escapes.

        The handler sets ``model`` and ``signature`` once it has found them;
        ``signature=""`` is for APIs that have none (status, metadata).
        """
        observation = Observation(signature)
        in_flight = self.in_flight.labels(api)
        in_flight.inc()
        start = time.perf_counter()
        try:
            yield observation
        except ServingError as exc:
            observation.code = exc.code
            raise
        except Exception:
            observation.code = grpc.StatusCode.INTERNAL
            raise
        finally:
            in_flight.dec()
            labels = (api, observation.model, observation.signature, observation.code.name)
            self.requests.labels(*labels).inc()
            self.latency.labels(*labels).observe(time.perf_counter() - start)

    def set_versions(self, model: str, versions: list[int]) -> None:
        self.loaded_version.labels(model).set(max(versions) if versions else 0)
        self.available_versions.labels(model).set(len(versions))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Observation:
    """The labels of one request, filled in as the handler learns them."""

    __slots__ = ("model", "signature", "code")

    def __init__(self, signature: str) -> None:
        self.model = UNKNOWN
        self.signature = signature
        self.code = grpc.StatusCode.OK


def start_metrics_server(metrics: ServingMetrics, host: str, port: int, path: str) -> ThreadingHTTPServer:
    """Serves the metrics page at exactly ``path`` (404 elsewhere) on its own port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server naming)
            if self.path.split("?", 1)[0] != path:
                body = f"Unexpected path: {self.path}. Should be {path}".encode()
                self.send_response(404)
                self.send_header("Content-Type", "text/plain")
            else:
                body = metrics.render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # scrapes every few seconds: keep the log quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
