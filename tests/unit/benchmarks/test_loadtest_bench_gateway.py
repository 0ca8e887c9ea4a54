"""The benchmark's floor proxy forwards bytes unchanged, and its ratios and goals are the
arithmetic the issue states (checked by hand)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from backends.process import free_port
from benchmarks.floor_proxy import FloorProxy
from benchmarks.processes import GatewayVariant, variant_config
from benchmarks.ratios import Row, floor_ratios, goals
from dualserve.run_state import GatewayState, PytorchState, RunState, TensorflowState
from gateway.settings import GatewaySettings


async def _backend(seen: list[tuple[str, bytes, str | None, str | None]]) -> web.AppRunner:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            (request.path_qs, body, request.content_type, request.headers.get("Authorization"))
        )
        return web.Response(body=body[::-1], status=201, content_type="application/x-test")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def _through_proxy(body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, list[Any]]:
    seen: list[Any] = []
    runner = await _backend(seen)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy = FloorProxy(f"http://127.0.0.1:{port}/")
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    lifespan = asyncio.create_task(proxy({"type": "lifespan"}, inbox.get, outbox.put))
    try:
        await inbox.put({"type": "lifespan.startup"})
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://floor") as client:
            reply = await client.post("/v1/models/m:predict?x=1", content=body, headers=headers)
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    finally:
        await lifespan
        await runner.cleanup()
    return reply, seen


def test_floor_proxy_forwards_path_body_and_headers_unchanged() -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer t", "X-Other": "no"}
    reply, seen = asyncio.run(_through_proxy(b'{"instances": [[1, 2]]}', headers))
    assert seen == [
        ("/v1/models/m:predict?x=1", b'{"instances": [[1, 2]]}', "application/json", "Bearer t")
    ]
    assert reply.status_code == 201 and reply.content == b'{"instances": [[1, 2]]}'[::-1]
    assert reply.headers["content-type"] == "application/x-test"


def _row(kind: str, ingress: str, conc: int, rps: float, p50: float, cpu: float) -> Row:
    return Row(kind, "tf", ingress, conc, rps, p50, p50 * 2, 0, cpu)


ROWS = [
    _row("direct", "rest", 1, 500, 2.0, 0.0),
    _row("floor", "rest", 1, 400, 2.5, 0.40),
    _row("gw1", "rest", 1, 300, 3.0, 0.60),
    _row("gw1", "grpc", 1, 280, 3.2, 0.80),
    _row("direct", "rest", 16, 4000, 4.0, 0.0),
    _row("floor", "rest", 16, 2000, 8.0, 0.20),
    _row("gw1", "rest", 16, 1900, 8.4, 0.25),
    _row("gw1", "grpc", 16, 1400, 11.0, 0.30),
]


def test_ratios_to_the_floor_by_hand() -> None:
    by_key = {(r.ingress, r.concurrency): r for r in floor_ratios(ROWS)}
    rest1, grpc16 = by_key[("rest", 1)], by_key[("grpc", 16)]
    assert rest1.throughput_vs_floor == pytest.approx(300 / 400)
    assert rest1.p50_minus_floor_ms == pytest.approx(0.5)
    assert rest1.added_p50_ms == pytest.approx(1.0)
    assert rest1.cpu_vs_floor == pytest.approx(1.5)
    assert rest1.throughput_vs_rest is None
    assert grpc16.throughput_vs_rest == pytest.approx(1400 / 1900)


def test_goals_apply_where_the_issue_says() -> None:
    checks = {(goal.split(" ")[0], where): met for goal, where, _, met in goals(floor_ratios(ROWS))}
    assert checks[("REST", "gw1 rest->tf c=16")] is True  # 0.95x >= 0.9x
    assert checks[("gRPC", "gw1 grpc->tf c=16")] is False  # 0.74x < 0.8x
    assert checks[("p50", "gw1 rest->tf c=1")] is False  # +0.5 ms > 0.3 ms
    assert checks[("CPU/req", "gw1 rest->tf c=16")] is True  # 1.25x <= 1.3x
    assert checks[("CPU/req", "gw1 rest->tf c=1")] is False  # 1.5x
    assert ("REST", "gw1 rest->tf c=1") not in checks  # throughput: top concurrency only


STATE = RunState(
    tensorflow=TensorflowState(rest="http://127.0.0.1:1", grpc="127.0.0.1:2"),
    pytorch=PytorchState(
        inference="http://127.0.0.1:3", grpc="127.0.0.1:4", management="http://127.0.0.1:5",
        token_file=Path("k"),
    ),
    gateway=GatewayState(
        rest="http://127.0.0.1:6", admin_token_file=Path("a"), config_file=Path("g.yaml"),
        pid=1, workers=1, worker_pids=(1,),
    ),
)  # fmt: skip


def test_gateway_variants_are_valid_gateway_configs(tmp_path: Path) -> None:
    plain = variant_config(STATE, tmp_path, tmp_path, GatewayVariant(1))
    rest_nolog = variant_config(STATE, tmp_path, tmp_path, GatewayVariant(2, "grpc", log=False))
    assert (plain["tensorflow"]["transport"], plain["pytorch"]["transport"]) == ("rest", "rest")
    assert rest_nolog["pytorch"]["transport"] == "grpc"
    assert rest_nolog["experiments"] == {"log_enabled": False, "data_dir": str(tmp_path / "data")}
    assert (plain["workers"], rest_nolog["workers"]) == (1, 2)
    for config in (plain, rest_nolog):
        GatewaySettings.model_validate(config)  # the gateway would start with it
    assert GatewayVariant(2, "rest", log=False).label == "gw2/rest/nolog"
