"""The server's Prometheus metrics, named as Triton names its own (docs/user_guide/metrics.md),
so dashboards written for Triton read this server too.

- `nv_inference_request_success` / `nv_inference_request_failure` (counters, per model and
  version): requests answered, and refused or failed;
- `nv_inference_count`: examples inferred (the batch sizes summed);
- `nv_inference_request_duration_us`: cumulative request time, microseconds;
- `nv_inference_queue_duration_us`: cumulative time waiting for a free runner;
- `oip_requests_waiting` (gauge) and `oip_requests_shed` (counter): the wait bound.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ("model", "version")


class OipMetrics:
    """One registry per server (never prometheus_client's global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.success = Counter(
            "nv_inference_request_success", "requests answered", _LABELS, registry=r
        )
        self.failure = Counter(
            "nv_inference_request_failure", "requests that failed", (*_LABELS, "reason"), registry=r
        )
        self.count = Counter("nv_inference_count", "examples inferred", _LABELS, registry=r)
        self.duration_us = Counter(
            "nv_inference_request_duration_us", "request time, microseconds", _LABELS, registry=r
        )
        self.queue_us = Counter(
            "nv_inference_queue_duration_us", "time waiting for a runner, us", _LABELS, registry=r
        )
        self.waiting = Gauge("oip_requests_waiting", "requests waiting for a runner", registry=r)
        self.shed = Counter("oip_requests_shed", "requests refused past max_waiting", registry=r)

    def answered(
        self, model: str, version: int, batch: int, queue_s: float, total_s: float
    ) -> None:
        labels = (model, str(version))
        self.success.labels(*labels).inc()
        self.count.labels(*labels).inc(batch)
        self.queue_us.labels(*labels).inc(queue_s * 1e6)
        self.duration_us.labels(*labels).inc(total_s * 1e6)

    def failed(self, model: str, version: int | None, reason: str) -> None:
        self.failure.labels(model, str(version or ""), reason).inc()

    def page(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
