"""Admission control, client deadlines and draining, in process with fake upstreams.

References: RFC 9110 §15.5.21 / RFC 6585 §4 (429 with Retry-After), Envoy router filter
docs (`x-envoy-expected-rq-timeout-ms`), gRPC over HTTP2 (`grpc-timeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.core.errors import BadRequest, DeadlineExceeded, Overloaded, UpstreamTimeout
from gateway.core.types import InferRequest, InferResponse
from gateway.edge.admission import Admission
from gateway.edge.deadline import budget, from_headers
from gateway.edge.limits import check_request_id
from gateway.edge.security_settings import LimitsSettings
from gateway.protocols.rest.front_door import GatewayApp
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ROW = {"instances": [[0.0, 5.0, 1.0, 2.0]]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 1, 2]}]}


class GatedUpstream(FakeUpstream):
    """Holds every call until `gate` is set; records the timeout each call was given."""

    def __init__(self, framework: Any) -> None:
        super().__init__(framework)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.timeouts: list[float] = []

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        self.timeouts.append(timeout)
        self.entered.set()
        try:
            await asyncio.wait_for(self.gate.wait(), timeout)
        except TimeoutError:  # as every real upstream translates it
            raise UpstreamTimeout(self.framework, f"no answer within {timeout} s") from None
        return await super().infer(request, timeout)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, dict[str, Any]]]:
    upstreams = {fw: GatedUpstream(fw) for fw in ("tensorflow", "pytorch")}
    settings = settings_for(
        make_store(tmp_path),
        admission={"max_in_flight": 2, "upstream_max_in_flight": 8, "retry_after_s": 3},
        limits={"body_timeout_s": 0.2, "max_request_id_length": 64},
    )
    app = create_app(settings, upstreams)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        yield client, app, upstreams


def test_admission_refuses_past_its_limit_and_frees_slots_on_errors() -> None:
    admission = Admission(limit=1, retry_after_s=0.2)
    with admission.admitted():
        with pytest.raises(Overloaded) as refused:
            admission.acquire()
        assert refused.value.headers == {"Retry-After": "1"}  # whole seconds, at least 1
        assert "admission.max_in_flight = 1" in refused.value.message
    with pytest.raises(RuntimeError), admission.admitted():
        raise RuntimeError("the route failed")
    assert admission.in_flight == 0
    assert (admission.counters.admitted, admission.counters.refused) == (2, 1)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body"), [("/v1/models/toy:predict", ROW), ("/v2/models/toy/infer", V2)]
)
async def test_rest_sheds_with_429_and_retry_after(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]], path: str, body: Any
) -> None:
    client, app, upstreams = gateway
    headers = {"X-Backend": "tensorflow"}
    held = [asyncio.create_task(client.post(path, json=body, headers=headers)) for _ in range(2)]
    while app.state.gateway.admission.in_flight < 2:  # both slots taken
        await asyncio.sleep(0)
    refused = await client.post(path, json=body, headers=headers)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3"
    assert "limit (admission.max_in_flight = 2)" in refused.json()["error"]
    upstreams["tensorflow"].gate.set()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    assert (await client.post(path, json=body, headers=headers)).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'status="429"' in metrics


@pytest.mark.anyio
async def test_the_ordinary_path_sheds_too_and_frees_its_slots(tmp_path: Path) -> None:
    """With CORS on, predictions take FastAPI's path (no direct one): the edge still
    admits them, refuses past the bound with 429 and counts the refusal."""
    upstreams = {fw: GatedUpstream(fw) for fw in ("tensorflow", "pytorch")}
    settings = settings_for(
        make_store(tmp_path),
        admission={"max_in_flight": 1, "retry_after_s": 2},
        cors_origins=["https://app.example"],
    )
    app = create_app(settings, upstreams)  # type: ignore[arg-type]
    assert isinstance(app, GatewayApp) and app.direct is False
    transport = httpx.ASGITransport(app=app)
    headers = {"X-Backend": "tensorflow"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        held = asyncio.create_task(client.post("/v2/models/toy/infer", json=V2, headers=headers))
        while app.state.gateway.admission.in_flight < 1:
            await asyncio.sleep(0)
        refused = await client.post("/v1/models/toy:predict", json=ROW, headers=headers)
        upstreams["tensorflow"].gate.set()
        assert (await held).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert "limit (admission.max_in_flight = 1)" in refused.json()["error"]
    assert app.state.gateway.admission.in_flight == 0
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("dualserve_requests_total") and 'status="429"' in line
    ]
    assert len(counted) == 1 and 'protocol="tfserving-rest"' in counted[0]
    assert 'model="toy"' in counted[0] and counted[0].endswith(" 1.0")


@pytest.mark.anyio
async def test_client_deadline_bounds_the_upstream_call_and_is_a_504(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, app, upstreams = gateway
    reply = await client.post(
        "/v1/models/toy:predict",
        json=ROW,
        headers={"X-Backend": "pytorch", "x-envoy-expected-rq-timeout-ms": "30"},
    )
    assert reply.status_code == 504
    assert "deadline" in reply.json()["error"]
    assert upstreams["pytorch"].timeouts and upstreams["pytorch"].timeouts[0] <= 0.030
    # The client's own deadline is nobody's failure: the breaker stays closed.
    assert app.state.gateway.router.breakers["pytorch"].state == 0


@pytest.mark.anyio
async def test_no_failover_once_the_deadline_has_passed(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, _, upstreams = gateway
    reply = await client.post("/v1/models/toy:predict", json=ROW, headers={"grpc-timeout": "20m"})
    assert reply.status_code == 504
    called = [fw for fw, upstream in upstreams.items() if upstream.timeouts]
    assert len(called) == 1  # the first arm only: no time was left for the other


@pytest.mark.anyio
async def test_a_hung_arm_gets_half_the_deadline_then_the_other_arm_answers(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, app, upstreams = gateway
    upstreams["pytorch"].gate.set()  # TF hangs, PyTorch answers
    reply = await client.post(
        "/v1/models/toy:predict",
        json=ROW,
        headers={"X-Routing-Key": "tf-user", "x-envoy-expected-rq-timeout-ms": "800"},
    )
    tf_timeouts = upstreams["tensorflow"].timeouts
    if not tf_timeouts:  # the key hashed to PyTorch: nothing to fail over from
        pytest.fail("pick a routing key that the 50/50 split sends to tensorflow")
    assert reply.status_code == 200
    assert reply.headers["X-Backend"] == "pytorch" and reply.headers["X-Failover"] == "true"
    # half of what was left of 0.8 s (its size depends on how busy the machine was before the
    # call, so only the bound is asserted): the rest was kept for the other arm
    assert 0 < tf_timeouts[0] <= 0.4, tf_timeouts
    assert app.state.gateway.router.breakers["tensorflow"]._failures == 1  # counted


@pytest.mark.anyio
async def test_draining_answers_with_connection_close_and_not_ready(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, app, upstreams = gateway
    for upstream in upstreams.values():
        upstream.gate.set()
    assert (await client.get("/readyz")).status_code == 200
    app.state.gateway.drain.begin()
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["draining"] is True
    served = await client.post("/v1/models/toy:predict", json=ROW)
    assert served.status_code == 200  # still answered while draining
    assert served.headers["connection"] == "close"
    assert (await client.get("/v2/health/ready")).status_code != 200


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-envoy-expected-rq-timeout-ms": "250"}, 0.25),
        ({"grpc-timeout": "2S"}, 2.0),
        ({"grpc-timeout": "1500m"}, 1.5),
        ({"grpc-timeout": "100u"}, 0.0001),
        ({"grpc-timeout": "1M"}, 60.0),
        ({"x-envoy-expected-rq-timeout-ms": "900", "grpc-timeout": "300m"}, 0.3),
        ({}, None),
    ],
)
def test_deadline_headers(headers: dict[str, str], seconds: float | None) -> None:
    deadline = from_headers(headers, now=100.0)
    assert deadline == (None if seconds is None else pytest.approx(100.0 + seconds))


@pytest.mark.parametrize(
    "headers",
    [
        {"x-envoy-expected-rq-timeout-ms": "soon"},
        {"x-envoy-expected-rq-timeout-ms": "-5"},
        {"grpc-timeout": "5"},
        {"grpc-timeout": "5s"},  # the unit is case-sensitive: S is seconds, s is nothing
        {"grpc-timeout": "123456789S"},  # at most 8 digits
    ],
)
def test_malformed_deadline_headers_name_the_header(headers: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as error:
        from_headers(headers)
    assert next(iter(headers)) in error.value.message


def test_budget_is_the_shorter_of_timeout_and_deadline() -> None:
    assert budget(5.0, None, now=0.0) == 5.0
    assert budget(5.0, 2.0, now=1.5) == pytest.approx(0.5)
    assert budget(5.0, 2.0, share=0.5, now=1.0) == pytest.approx(0.5)
    assert budget(0.1, 2.0, now=1.5) == 0.1
    with pytest.raises(DeadlineExceeded):
        budget(5.0, 2.0, now=2.0)


@pytest.mark.anyio
async def test_a_body_that_never_arrives_is_a_408_and_frees_its_slot(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    """A slow client (slowloris) cannot hold an admission slot past limits.body_timeout_s."""
    client, app, _ = gateway
    stalled = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"instances": [[0.0, '
        await stalled.wait()  # the rest never comes

    reply = await client.post("/v1/models/toy:predict", content=trickle())
    assert reply.status_code == 408
    assert "limits.body_timeout_s" in reply.json()["error"]
    assert app.state.gateway.admission.in_flight == 0


@pytest.mark.anyio
async def test_an_override_naming_a_missing_build_is_refused(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, _, _ = gateway
    body = {"policy": {"arm_versions": {"tensorflow": 99}}}
    reply = await client.patch(
        "/admin/models/toy/policy", json=body, headers={"Authorization": "Bearer admin-secret"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "arm_versions.tensorflow: model toy has no tensorflow build of version 99"
    )


@pytest.mark.anyio
async def test_a_bug_is_a_500_without_detail_and_is_counted(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, _, upstreams = gateway

    async def explode(request: InferRequest, timeout: float) -> InferResponse:
        raise RuntimeError("a bug")

    upstreams["tensorflow"].infer = explode  # type: ignore[method-assign]
    reply = await client.post(
        "/v1/models/toy:predict", json=ROW, headers={"X-Backend": "tensorflow"}
    )
    assert reply.status_code == 500 and "a bug" not in reply.text
    metrics = (await client.get("/metrics")).text
    assert 'protocol="tfserving-rest",status="500"' in metrics


@pytest.mark.anyio
async def test_server_timing_charges_a_failed_attempt_to_the_upstream(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, _, upstreams = gateway
    upstreams["pytorch"].gate.set()  # TF hangs until its half of the deadline is spent
    reply = await client.post(
        "/v1/models/toy:predict",
        json=ROW,
        headers={"X-Routing-Key": "tf-user", "x-envoy-expected-rq-timeout-ms": "800"},
    )
    assert reply.headers["X-Failover"] == "true"
    parts = dict(p.strip().split(";dur=") for p in reply.headers["Server-Timing"].split(","))
    assert float(parts["upstream"]) >= upstreams["tensorflow"].timeouts[0] * 1000
    assert float(parts["gateway"]) < float(parts["upstream"])


@pytest.mark.anyio
async def test_a_request_id_too_long_for_a_header_is_refused(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]],
) -> None:
    client, _, _ = gateway
    long_id = "x" * 65
    by_header = await client.post(
        "/v1/models/toy:predict", json=ROW, headers={"X-Request-Id": long_id}
    )
    by_body = await client.post("/v2/models/toy/infer", json={**V2, "id": long_id})
    for reply in (by_header, by_body):
        assert reply.status_code == 400
        assert "(limits.max_request_id_length)" in reply.json()["error"]
        assert long_id not in reply.headers.get("X-Request-Id", "")


@pytest.mark.anyio
@pytest.mark.parametrize("bad_id", ["a\r\nSet-Cookie: x=1", "caf\u00e9", "\u4e2d", "tab\there"])
async def test_a_request_id_that_cannot_be_a_header_value_is_refused(
    gateway: tuple[httpx.AsyncClient, Any, dict[str, GatedUpstream]], bad_id: str
) -> None:
    """A v2 body's `id` is echoed as X-Request-Id: a CR/LF or non-ASCII one would split or
    break the reply's headers (RFC 9110 section 5.5), so it is a client error, not a 500."""
    client, _, _ = gateway
    reply = await client.post("/v2/models/toy/infer", json={**V2, "id": bad_id})
    assert reply.status_code == 400, reply.text
    assert "the body's id must be printable ASCII" in reply.json()["error"]
    assert reply.headers["X-Request-Id"] != bad_id  # the gateway's own id answers


def test_printable_ascii_request_ids_pass() -> None:
    limits = LimitsSettings(max_request_id_length=64)
    for good in ("req 42/a-b_c", "0f9e8d7c6b5a", "~!@#$%^&*()+={}[]|:;<>,.?"):
        assert check_request_id(good, limits, "the body's id") == good
