"""`Server-Timing`'s upstream share against the backend's own measure of the same request.

The independent figure: TF Serving's `:tensorflow:serving:request_latency` histogram (the
bundled server's, as TF Serving's own: decoding, running and the batching queue of one
Predict call), whose sum grows by exactly one request's microseconds when one request is
sent at a time (the module has its own stack; readiness probes are not Predict calls).
The gateway's clock runs around the backend's, so its upstream figure is never below the
backend's and, the issue asks, within 1 ms of it: what lies between is the backend's HTTP
handling, the loopback and the gateway's HTTP client.

TorchServe's `ts_inference_latency_microseconds` (its REST frontend's, the gateway's default
transport since issue 15; its gRPC frontend leaves it unchanged) starts after Netty has read
the request and stops before the answer is written, so the Java frontend's own time lies
outside it (1-2 ms here). The torch test takes the same gap from a client calling TorchServe
directly, interleaved, and prints both (the gateway's upstream share adds under 1 ms to what
a direct client sees beyond it on an idle machine): a figure, never asserted, since any busy
machine lifts it (issue 26). What is asserted holds on any machine: the enclosures, the
gateway's upstream share around TorchServe's figure and inside the client's round trip.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backends.torchserve.launcher import read_token
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow

MODEL = "digits-mlp"
REQUESTS = 25
TIMING = re.compile(r"^gateway;dur=(\d+\.\d+), upstream;dur=(\d+\.\d+)$")
FAMILY = ":tensorflow:serving:request_latency"
TS_FAMILY = "ts_inference_latency_microseconds"


def predict_micros(metrics_url: str) -> float:
    """TF Serving's cumulative Predict latency for MODEL, in microseconds."""
    text = httpx.get(metrics_url, timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == FAMILY
        for s in family.samples
        if s.name == f"{FAMILY}_sum"
        and s.labels.get("model_name") == MODEL
        and s.labels.get("API") == "predict"
    )


def test_upstream_share_agrees_with_tf_servings_own_latency(
    stack: dict[str, Any], figures: Callable[[str], None]
) -> None:
    x = to_model_input(load_dataset("digits").test.x[:REQUESTS], "mlp")
    metrics = stack["tensorflow"]["metrics"]
    gaps_ms = []
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as client:
        for row in x:
            before = predict_micros(metrics)
            reply = client.post(
                f"/v1/models/{MODEL}:predict",
                json={"instances": [row.tolist()]},
                headers={"X-Backend": "tensorflow"},
            )
            backend_ms = (predict_micros(metrics) - before) / 1000
            assert reply.status_code == 200, reply.text
            match = TIMING.match(reply.headers["Server-Timing"])
            assert match is not None, reply.headers["Server-Timing"]
            assert backend_ms > 0, "TF Serving counted no Predict call"
            gaps_ms.append(float(match[2]) - backend_ms)
    gaps = np.round(sorted(gaps_ms), 3).tolist()
    figures(f"\nServer-Timing upstream minus TF Serving's own latency, ms: {gaps}")
    # The gap is the HTTP round trip both Python sides pay (~0.6-1 ms on an idle machine):
    # printed above (with its lower quartile), never asserted, since any busy machine lifts
    # it. What holds on any machine is the enclosure: the gateway's clock around the upstream
    # call contains TF Serving's own clock around the Predict.
    figures(f"lower quartile of the gap: {statistics.quantiles(gaps_ms, n=4)[0]:.3f} ms")
    assert min(gaps_ms) >= -0.001, gaps


def inference_micros(metrics_url: str) -> float:
    """TorchServe's cumulative inference latency for MODEL (every version), in microseconds."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == TS_FAMILY
        for s in family.samples
        if s.labels.get("model_name") == MODEL
    )


def test_upstream_share_encloses_torchserves_own_latency(
    stack: dict[str, Any], figures: Callable[[str], None]
) -> None:
    x = to_model_input(load_dataset("digits").test.x[:REQUESTS], "mlp")
    torch = stack["pytorch"]
    token = read_token(Path(torch["token_file"]), "inference")
    via_gateway: list[float] = []
    direct: list[float] = []
    outside_round_trip: list[float] = []  # the client's round trip minus the upstream share
    with (
        httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as gateway,
        httpx.Client(base_url=torch["inference"], timeout=30) as straight,
    ):
        for row in x:
            body = {"instances": [row.tolist()]}
            before = inference_micros(torch["metrics"])
            started = time.perf_counter()
            reply = gateway.post(
                f"/v1/models/{MODEL}:predict", json=body, headers={"X-Backend": "pytorch"}
            )
            round_trip_ms = (time.perf_counter() - started) * 1000
            backend_ms = (inference_micros(torch["metrics"]) - before) / 1000
            assert reply.status_code == 200, reply.text
            match = TIMING.match(reply.headers["Server-Timing"])
            assert match is not None, reply.headers["Server-Timing"]
            assert backend_ms > 0, "TorchServe counted no inference"
            via_gateway.append(float(match[2]) - backend_ms)
            outside_round_trip.append(round_trip_ms - float(match[2]))

            before = inference_micros(torch["metrics"])
            started = time.perf_counter()
            answer = straight.post(
                f"/predictions/{MODEL}", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            client_ms = (time.perf_counter() - started) * 1000
            assert answer.status_code == 200, answer.text
            direct.append(client_ms - (inference_micros(torch["metrics"]) - before) / 1000)
    figures(
        "\nTorchServe, ms beyond its own inference latency:"
        f"\n  gateway's upstream share {np.round(sorted(via_gateway), 3).tolist()}"
        f"\n  a direct client's round trip {np.round(sorted(direct), 3).tolist()}"
    )
    figures(
        f"lower quartiles: gateway's share {statistics.quantiles(via_gateway, n=4)[0]:.3f} ms,"
        f" direct {statistics.quantiles(direct, n=4)[0]:.3f} ms"
    )
    assert min(via_gateway) >= -0.001, via_gateway  # the gateway's clock encloses TorchServe's
    # and the client's clock around the gateway call encloses the gateway's upstream share
    # (the header's three decimals: 0.0005 ms of rounding)
    assert min(outside_round_trip) >= -0.001, outside_round_trip
