"""A backend's own queue and compute time over a cell, from two scrapes of its metrics:
TF Serving's page as the bundled server renders it (its own exporter), TorchServe's as its
docs/metrics.md shows it (prometheus mode); and the parser of the gateway's Server-Timing values."""

from __future__ import annotations

import math

import pytest

from backends.tfserving.server.metrics import ServerMetrics
from loadtest.server_clock import parse_server_timing, tfserving_clock, times, torchserve_clock

MODEL = "digits-mlp"


def test_tfserving_means_over_the_cell() -> None:
    metrics = ServerMetrics()
    metrics.request_latency.labels("other", "predict", "REST").observe(99_999)
    before = tfserving_clock(metrics.render().decode(), MODEL)
    for us in (1000, 3000):  # two requests: 2 ms mean
        metrics.request_latency.labels(MODEL, "predict", "REST").observe(us)
    metrics.runtime_latency.labels(MODEL, "predict", "TF1").observe(600)  # one batch run
    metrics.record_batch(MODEL, 2, [0.0002, 0.0004])  # queued 0.2 and 0.4 ms
    got = times(before, tfserving_clock(metrics.render().decode(), MODEL))
    assert got.server_ms == pytest.approx(2.0)
    assert got.queue_ms == pytest.approx(0.3) and got.compute_ms == pytest.approx(0.6)


def test_tfserving_without_batching_has_no_queue() -> None:
    metrics = ServerMetrics()
    before = tfserving_clock(metrics.render().decode(), MODEL)
    metrics.request_latency.labels(MODEL, "predict", "REST").observe(1500)
    got = times(before, tfserving_clock(metrics.render().decode(), MODEL))
    assert got.server_ms == pytest.approx(1.5) and got.queue_ms == 0.0
    assert math.isnan(got.compute_ms)


def _torchserve(requests: int, latency_us: float, queue_us: float) -> str:
    labels = f'{{model_name="{MODEL}",model_version="default",hostname="h"}}'
    return (
        "# HELP ts_inference_requests_total Total number of inference requests.\n"
        "# TYPE ts_inference_requests_total counter\n"
        f"ts_inference_requests_total{labels} {requests}\n"
        "# TYPE ts_inference_latency_microseconds counter\n"
        f"ts_inference_latency_microseconds{labels} {latency_us}\n"
        "# TYPE ts_queue_latency_microseconds counter\n"
        f"ts_queue_latency_microseconds{labels} {queue_us}\n"
    )


def test_torchserve_compute_is_inference_minus_queue() -> None:
    before = torchserve_clock(_torchserve(10, 20_000.0, 2_000.0), MODEL)
    after = torchserve_clock(_torchserve(14, 32_000.0, 2_800.0), MODEL)
    got = times(before, after)  # 4 requests: 12 ms in all, 0.8 ms queued
    assert got.server_ms == pytest.approx(3.0) and got.queue_ms == pytest.approx(0.2)
    assert got.compute_ms == pytest.approx(2.8)


def test_no_requests_or_no_page_is_unknown() -> None:
    same = torchserve_clock(_torchserve(10, 20_000.0, 2_000.0), MODEL)
    assert math.isnan(times(same, same).server_ms)
    grpc = torchserve_clock(_torchserve(30, 20_000.0, 2_000.0), MODEL)  # counted, not timed
    assert math.isnan(times(same, grpc).server_ms) and math.isnan(times(same, grpc).compute_ms)
    assert math.isnan(times(None, same).queue_ms)


def test_server_timing_parse() -> None:
    value = "gateway;dur=0.412, upstream;dur=2.930"
    assert parse_server_timing(value) == {"gateway": 0.412, "upstream": 2.93}
    assert parse_server_timing("cache;desc=hit, db;dur=x, app;dur=1") == {"app": 1.0}
