"""Prometheus metrics (one registry per process; `/metrics` exposes it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("jinaserve_requests_total", "HTTP requests handled", ["endpoint", "model", "status"],
                   registry=REGISTRY)
REQUEST_LATENCY = Histogram(
    "jinaserve_request_duration_seconds", "End-to-end request latency", ["endpoint", "model"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY)
INPUT_TOKENS = Counter("jinaserve_input_tokens_total", "Tokens processed", ["model"], registry=REGISTRY)
INPUTS = Counter("jinaserve_inputs_total", "Inputs / documents processed", ["model"], registry=REGISTRY)
BATCH_SIZE = Histogram("jinaserve_batch_size", "Items per forward pass", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=REGISTRY)
BATCH_TOKENS = Histogram("jinaserve_batch_padded_tokens", "Padded tokens per forward pass", ["model"],
                         buckets=(64, 256, 1024, 4096, 16384, 65536), registry=REGISTRY)
BATCH_LATENCY = Histogram("jinaserve_batch_duration_seconds", "Forward pass time", ["model"],
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                          registry=REGISTRY)
QUEUE_DEPTH = Gauge("jinaserve_queue_depth", "Items waiting in the model's batch queue", ["model"],
                    registry=REGISTRY)
MODEL_READY = Gauge("jinaserve_model_ready", "1 when the model is loaded and serving", ["model"],
                    registry=REGISTRY)
ESTIMATED_WAIT = Gauge("jinaserve_estimated_wait_seconds", "Estimated wait for a request admitted now (tokens "
                       "ahead / measured tokens per second)", ["model"], registry=REGISTRY)
CONNECTIONS_CLOSED = Counter("jinaserve_connections_refused_total", "Client connections closed by the connection "
                             "layer: reason=header_timeout (slow or silent client) or over_capacity (max_connections)",
                             ["reason"], registry=REGISTRY)
REJECTED = Counter("jinaserve_rejected_total", "Requests refused because a queue was full or its wait too long",
                   ["model"],
                   registry=REGISTRY)


def batch_observer(model: str):
    size_h = BATCH_SIZE.labels(model)
    tok_h = BATCH_TOKENS.labels(model)
    lat_h = BATCH_LATENCY.labels(model)

    def observe(size: int, tokens: int, seconds: float) -> None:
        size_h.observe(size)
        tok_h.observe(tokens)
        lat_h.observe(seconds)

    return observe
