"""Does the prediction log cost the reply anything? Latency with logging off, on
(SQLite file), and on with a slow store (every batch write sleeps), in one run.

    python -m benchmarks.experiments.prediction_log [--requests 3000] [--concurrency 16]
        [--rounds 3]

The gateway runs in process (ASGI) in front of fake upstreams that answer after
`--upstream-ms`, so the numbers isolate the gateway's own work. Configurations are
interleaved round by round; the table gives p50/p99 per configuration, the ratio to
logging off, and the records written and dropped (the slow store's small queue fills
up on purpose: its drops must be counted, and its replies must not slow down).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gateway.app import create_app
from gateway.experiments.log.store import SqliteLogStore
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

BODY = {"instances": [[0.0, 5.0, 1.0, 2.0]]}


class SlowStore(SqliteLogStore):
    """A store whose every batch write takes `delay` seconds (a slow disk or database)."""

    def __init__(self, delay: float) -> None:
        super().__init__(None)
        self.delay = delay

    def write_batch(self, rows: Sequence[Any]) -> None:
        time.sleep(self.delay)
        super().write_batch(rows)


def build(name: str, store_dir: Path, upstream_s: float) -> Any:
    experiments: dict[str, Any] = {"log_enabled": name != "off", "data_dir": str(store_dir / name)}
    if name == "slow":
        experiments |= {"queue_size": 200, "batch_size": 50}
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    for upstream in upstreams.values():
        upstream.delay = upstream_s
    settings = settings_for(make_store(store_dir / f"{name}-store"), experiments=experiments)
    app = create_app(settings, upstreams)  # type: ignore[arg-type]
    log = app.state.gateway.experiments.log
    if name == "slow":
        log._open_store = lambda: SlowStore(0.05)  # bench-only injection of a slow backend
        log._writer = None  # written on the storage thread, by the slow store
    return app


async def drive(app: Any, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

        async def worker(offset: int) -> None:
            for i in range(offset, requests, concurrency):
                started = time.perf_counter()
                headers = {"X-Routing-Key": f"u{i}"}
                reply = await client.post("/v1/models/toy:predict", json=BODY, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert reply.status_code == 200

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return latencies


async def bench(
    names: list[str], requests: int, concurrency: int, rounds: int, upstream_s: float
) -> dict[str, Any]:
    """All configurations up at once, driven in turn round by round (interleaved)."""
    results: dict[str, Any] = {name: {"lat": []} for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        apps = {name: build(name, Path(tmp), upstream_s) for name in names}
        async with contextlib.AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
                await drive(app, 200, concurrency)  # warm up
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no order bias
                for name in order:
                    results[name]["lat"] += await drive(apps[name], requests, concurrency)
            for name, app in apps.items():
                results[name]["log"] = app.state.gateway.experiments.log_counters()
    return results


def main(
    requests: Annotated[int, typer.Option(help="requests per configuration and round")] = 3000,
    concurrency: Annotated[int, typer.Option(help="concurrent clients")] = 16,
    rounds: Annotated[int, typer.Option(help="rounds")] = 3,
    upstream_ms: Annotated[float, typer.Option(help="fake backend latency")] = 1.0,
) -> None:
    names = ["off", "sqlite", "slow"]
    results = asyncio.run(bench(names, requests, concurrency, rounds, upstream_ms / 1000))
    base = {q: np.percentile(results["off"]["lat"], q) for q in (50, 99)}
    table = Table(
        title=f"prediction log on vs off ({concurrency} clients, upstream {upstream_ms} ms)"
    )
    for column in (
        "logging",
        "requests",
        "p50 ms",
        "p99 ms",
        "p50 ratio",
        "p99 ratio",
        "written",
        "dropped",
    ):
        table.add_column(column)
    for name in names:
        lat, log = np.array(results[name]["lat"]), results[name]["log"]
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        ratios = f"{p50 / base[50]:.3f}", f"{p99 / base[99]:.3f}"
        counts = str(log.get("written", "-")), str(log.get("dropped", "-"))
        table.add_row(name, str(lat.size), f"{p50 * 1e3:.3f}", f"{p99 * 1e3:.3f}", *ratios, *counts)
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
