"""`Server-Timing`'s upstream share against each backend's own measure of the same request.

The backends' independent figures: TF Serving's `:tensorflow:serving:request_latency`
histogram (its sum grows by one request's microseconds) and TorchServe's
`ts_inference_latency_microseconds` counter, read before and after each single request
(nothing else calls Predict meanwhile: the module has its own stack and sends one request
at a time). The gateway's clock runs around the backend's, so its upstream figure is never
below the backend's and, the issue asks, within 1 ms of it.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow

MODEL = "digits-mlp"
REQUESTS = 15
TIMING = re.compile(r"^gateway;dur=(\d+\.\d+), upstream;dur=(\d+\.\d+)$")


def _metric_sum(url: str, family: str, sample: str, **labels: str) -> float:
    """The sum of `sample` values whose labels include `labels` (microseconds)."""
    text = httpx.get(url, timeout=10).text
    total = 0.0
    for metrics in text_string_to_metric_families(text):
        if metrics.name != family:
            continue
        for s in metrics.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def backend_micros(stack: dict[str, Any], arm: str) -> Callable[[], float]:
    """A reader of the arm's cumulative Predict latency, in microseconds."""
    if arm == "tensorflow":
        url = f"{stack['tensorflow']['metrics']}"
        family = ":tensorflow:serving:request_latency"
        return lambda: _metric_sum(url, family, family + "_sum", model_name=MODEL, API="predict")
    url = f"{stack['pytorch']['metrics']}/metrics"
    family = "ts_inference_latency_microseconds"
    return lambda: _metric_sum(url, family, family, model_name=MODEL)


@pytest.mark.parametrize("arm", ["tensorflow", "pytorch"])
def test_upstream_share_agrees_with_the_backends_own_latency(
    stack: dict[str, Any], arm: str
) -> None:
    x = to_model_input(load_dataset("digits").test.x[:REQUESTS], "mlp")
    read = backend_micros(stack, arm)
    gaps_ms = []
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as client:
        for row in x:
            before = read()
            reply = client.post(
                f"/v1/models/{MODEL}:predict",
                json={"instances": [row.tolist()]},
                headers={"X-Backend": arm},
            )
            backend_ms = (read() - before) / 1000
            assert reply.status_code == 200, reply.text
            match = TIMING.match(reply.headers["Server-Timing"])
            assert match is not None, reply.headers["Server-Timing"]
            assert backend_ms > 0, "the backend counted no Predict call"
            gaps_ms.append(float(match[2]) - backend_ms)
    assert min(gaps_ms) >= -0.001, gaps_ms  # the gateway's clock encloses the backend's
    assert statistics.median(gaps_ms) < 1.0, np.round(gaps_ms, 3).tolist()
