"""Prometheus metrics. With several uvicorn workers set PROMETHEUS_MULTIPROC_DIR so /metrics
aggregates every process (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

HTTP_REQUESTS = Counter("sentiment_http_requests_total", "HTTP requests by route, method and status.",
                        ["path", "method", "status"])
HTTP_LATENCY = Histogram("sentiment_http_request_duration_seconds", "HTTP request latency by route.",
                         ["path", "method"], buckets=LATENCY_BUCKETS)
PREDICT_REQUESTS = Counter("sentiment_predict_requests_total",
                           "Prediction requests by model and outcome (ok, or the HTTP status of the error).",
                           ["model", "status"])
PREDICT_LATENCY = Histogram("sentiment_predict_duration_seconds",
                            "Time to score one request's reviews with one model, queueing included.",
                            ["model"], buckets=LATENCY_BUCKETS)
REVIEWS_SCORED = Counter("sentiment_reviews_scored_total", "Reviews scored, by model.", ["model"])
REQUEST_REVIEWS = Histogram("sentiment_request_reviews", "Reviews per /predict request.", buckets=BATCH_BUCKETS)
MODEL_BATCH_SIZE = Histogram("sentiment_model_batch_size", "Rows per onnxruntime call after dynamic batching.",
                             ["model"], buckets=BATCH_BUCKETS)


@dataclass(frozen=True)
class ModelMetrics:
    """One model's labelled series, looked up once rather than on every request."""

    latency: Histogram
    ok: Counter
    unavailable: Counter
    reviews: Counter
    batch_size: Histogram


@functools.cache
def for_model(name: str) -> ModelMetrics:
    return ModelMetrics(latency=PREDICT_LATENCY.labels(name), ok=PREDICT_REQUESTS.labels(name, "ok"),
                        unavailable=PREDICT_REQUESTS.labels(name, "503"), reviews=REVIEWS_SCORED.labels(name),
                        batch_size=MODEL_BATCH_SIZE.labels(name))


@functools.cache
def for_route(path: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The request counter and latency histogram of one route, method and status (bounded values)."""
    return HTTP_REQUESTS.labels(path, method, str(status)), HTTP_LATENCY.labels(path, method)


def render() -> tuple[bytes, str]:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
