"""Observers of the router's outcomes that belong to no room: the Prometheus metrics.

`gateway.app.build_context` subscribes them, with the live statistics and the prediction
log, to the router's one outcome per upstream call.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.core.outcome import CallOutcome, Observer
from gateway.core.types import other
from gateway.telemetry.metrics import GatewayMetrics


def metrics_observer(metrics: GatewayMetrics) -> Observer:
    """Breaker state, failovers, upstream latency and shadow comparisons per call."""

    def observe(outcome: CallOutcome) -> None:
        model, arm = outcome.request.model, outcome.arm
        metrics.breaker_state(arm, outcome.breaker)
        if outcome.kind == "failover":
            metrics.failovers.labels(model, other(arm)).inc()
        if outcome.comparison is not None:
            metrics.observe_shadow(model, outcome.comparison)
        if outcome.response is not None:
            upstream = outcome.response.timings.get("upstream", outcome.latency_s)
            metrics.upstream_call(model, arm, upstream)

    return observe


def shadow_drops(metrics: GatewayMetrics) -> Callable[[str], None]:
    """A mirrored call dropped for lack of queue room, per model."""
    return lambda model: metrics.observe_shadow(model, None)
