"""`Server-Timing` on every prediction reply: REST (TF Serving and v2) and gRPC (both
services), both arms, and the helper's arithmetic by hand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.telemetry.server_timing import server_timing
from tests.unit.gateway.test_gateway_app import ROW, V2, Gateway, _gateway
from tests.unit.protocols.test_grpc_ingress import infer_request, predict_request, running, trailing

# W3C Server Timing: `name;dur=<ms>` metrics separated by commas.
PATTERN = re.compile(r"^gateway;dur=(\d+\.\d{3}), upstream;dur=(\d+\.\d{3})$")
FAKE_UPSTREAM_MS = 0.1  # what tests/unit/gateway_fakes.FakeUpstream reports
ARMS = ["tensorflow", "pytorch"]


def durations(value: str) -> tuple[float, float]:
    match = PATTERN.match(value)
    assert match is not None, value
    return float(match[1]), float(match[2])


def test_gateway_share_is_total_minus_upstream_in_milliseconds() -> None:
    assert server_timing({"total": 0.0035, "upstream": 0.0029}) == (
        "gateway;dur=0.600, upstream;dur=2.900"
    )
    assert server_timing({"upstream": 0.002}) == "gateway;dur=0.000, upstream;dur=2.000"
    # clocks read in a different order never make the gateway's share negative
    assert server_timing({"total": 0.001, "upstream": 0.0012}).startswith("gateway;dur=0.000,")


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(tmp_path)


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize(
    ("path", "body"), [("/v1/models/toy:predict", ROW), ("/v2/models/toy/infer", V2)]
)
def test_rest_replies_carry_server_timing(
    rest: Gateway, arm: str, path: str, body: dict[str, object]
) -> None:
    reply = rest.client.post(path, json=body, headers={"X-Backend": arm})
    assert reply.status_code == 200, reply.text
    gateway_ms, upstream_ms = durations(reply.headers["Server-Timing"])
    assert upstream_ms == FAKE_UPSTREAM_MS and gateway_ms >= 0
    assert reply.headers["X-Backend"] == arm and reply.headers["X-Model-Version"] == "2"


@pytest.mark.parametrize("arm", ARMS)
def test_grpc_replies_carry_server_timing(tmp_path: Path, arm: str) -> None:
    with running(tmp_path) as gw:
        _, predicted = gw.predict(predict_request(), metadata=[("x-backend", arm)])
        _, inferred = gw.infer(infer_request(), metadata=[("x-backend", arm)])
    for call in (predicted, inferred):
        gateway_ms, upstream_ms = durations(trailing(call)["server-timing"])
        assert upstream_ms == FAKE_UPSTREAM_MS and gateway_ms >= 0
        assert trailing(call)["x-backend"] == arm
