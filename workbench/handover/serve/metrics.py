"""The service's Prometheus metrics (`GET /metrics`), in a registry of its own (never the process-global one,
so two services in one process, e.g. in tests, count separately)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

# Seconds; the service's own overhead is milliseconds, a model call up to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("workbench_requests", "Requests by route and HTTP status", ["route", "status"], registry=r)
        self.errors = Counter("workbench_request_errors", "Requests that failed, by route and kind", ["route", "kind"],
                              registry=r)
        self.latency = Histogram("workbench_request_latency_seconds", "Whole-request latency of answered requests",
                                 ["route"], buckets=BUCKETS, registry=r)
        self.model_latency = Histogram("workbench_model_latency_seconds", "Model call latency", buckets=BUCKETS,
                                       registry=r)
        self.tokens = Counter("workbench_tokens", "Model tokens", ["kind"], registry=r)
        self.cost = Counter("workbench_cost_usd", "Model cost in USD (known prices only)", registry=r)
        self.cache_hits = Counter("workbench_cache_hits", "Answers served from the answer cache", registry=r)
        self.in_flight = Gauge("workbench_requests_in_flight", "Requests being answered", registry=r)
        self.feedback = Counter("workbench_feedback", "Feedback received, by kind", ["kind"], registry=r)
        self.traces_pending = Gauge("workbench_traces_pending", "Traces and feedback waiting to be written", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
