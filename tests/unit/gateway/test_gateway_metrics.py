"""GatewayMetrics' per-request helpers write the registry's own labelled series."""

from __future__ import annotations

from gateway.telemetry.metrics import GatewayMetrics


def _sample(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_answered_counts_and_times_every_call() -> None:
    metrics = GatewayMetrics()
    for total, upstream in ((0.004, 0.003), (0.002, 0.0025)):
        metrics.answered("m", "tensorflow", "rest", total, upstream)
    labels = {"model": "m", "arm": "tensorflow", "protocol": "rest"}
    assert _sample(metrics, "dualserve_requests_total", **labels, status="200") == 2
    assert _sample(metrics, "dualserve_request_latency_seconds_sum", **labels) == 0.006
    assert _sample(metrics, "dualserve_request_latency_seconds_count", **labels) == 2
    # the gateway's share: 1 ms, and 0 (never negative) for the second call
    overhead = _sample(metrics, "dualserve_gateway_overhead_seconds_sum", protocol="rest")
    assert overhead is not None and abs(overhead - 0.001) < 1e-12
    assert (
        _sample(metrics, "dualserve_gateway_overhead_seconds_bucket", protocol="rest", le="0.0001")
        == 1
    )


def test_upstream_calls_and_breaker_state_follow_every_change() -> None:
    metrics = GatewayMetrics()
    metrics.upstream_call("m", "pytorch", 0.002)
    metrics.upstream_call("m", "pytorch", 0.001)
    assert (
        _sample(metrics, "dualserve_upstream_latency_seconds_count", model="m", arm="pytorch") == 2
    )
    for state in (0, 2, 2, 1, 0):
        metrics.breaker_state("pytorch", state)
        assert _sample(metrics, "dualserve_breaker_state", arm="pytorch") == state
