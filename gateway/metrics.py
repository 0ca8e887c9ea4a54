"""Prometheus metrics: a registry per app, or every worker's figures in multiprocess mode.

One process (tests build several apps in one): each `GatewayMetrics` has its own registry.
Several workers (`settings.workers > 1`): the supervisor sets `PROMETHEUS_MULTIPROC_DIR` before
it spawns them, so prometheus_client keeps every value in a file per worker, and `render`
sums the files of all workers, the dead ones' included (a scrape through any worker counts
each request once); breaker states stay per worker, with a `pid` label (prometheus_client's
multiprocess mode: https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.experiments.shadow import Comparison

# Sub-millisecond resolution: the gateway's own overhead is measured in microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class GatewayMetrics:
    """Requests, latency (total, upstream, the gateway's own), shadow, breakers, failovers."""

    def __init__(self) -> None:
        # prometheus_client chose its value storage from this variable when it was imported.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dualserve_requests", "Prediction requests answered",
            ["model", "arm", "protocol", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "dualserve_request_latency_seconds", "Request latency at the gateway",
            ["model", "arm", "protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "dualserve_upstream_latency_seconds", "Time spent in the backend call",
            ["model", "arm"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead = Histogram(
            "dualserve_gateway_overhead_seconds", "Gateway time per request, upstream excluded",
            ["protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.shadow = Counter(
            "dualserve_shadow_comparisons", "Shadow comparisons by result",
            ["model", "result"], registry=r,
        )  # fmt: skip
        self.shadow_diff = Histogram(
            "dualserve_shadow_max_abs_diff", "Largest |probability difference| per shadow call",
            ["model"], buckets=(1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0), registry=r,
        )  # fmt: skip
        self.breaker = Gauge(
            "dualserve_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            ["arm"], registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.failovers = Counter(
            "dualserve_failovers", "Requests answered by the other framework after a failure",
            ["model", "from_arm"], registry=r,
        )  # fmt: skip

    def observe_shadow(self, model: str, result: Comparison | None) -> None:
        if result is None:
            self.shadow.labels(model, "dropped").inc()
            return
        self.shadow.labels(model, "agree" if result.agreed else "disagree").inc()
        self.shadow_diff.labels(model).observe(result.max_abs_diff)

    def render(self) -> bytes:
        """The text exposition of this app's registry, or of every worker's files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)
