"""One `CellResult` to vary in the load-test unit tests (a row of `cells.csv`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from loadtest.cells import CellResult

BASE = CellResult(
    model="digits-mlp",
    target="tf-direct",
    protocol="rest",
    framework="tensorflow",
    route="direct",
    concurrency=1,
    repeat=1,
    requests=1000,
    errors=0,
    seconds=5.0,
    throughput=200.0,
    p50_ms=1.0,
    p90_ms=1.5,
    p99_ms=2.0,
    max_ms=3.0,
    mean_ms=1.1,
    loadgen_cpu=0.3,
    saturated=False,
    verdict="stable",
    locust_requests=1010,
    p99_corrected_ms=2.5,
    goodput=180.0,
    gateway_ms=0.25,
    upstream_ms=0.75,
    server_ms=0.5,
    server_queue_ms=0.125,
    server_compute_ms=0.25,
    box_cpu=0.5,
)


def cell(**changes: Any) -> CellResult:
    """BASE with `changes`."""
    return replace(BASE, **changes)
