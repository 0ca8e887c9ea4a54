"""Does the capture cost the gateway throughput? Requests per second and latency with
capture off, on for every request (share 1.0: the worst case), and on with a writer
that stalls (a full queue: its drops must be counted and its replies must not slow).

    python -m benchmarks.experiments.capture [--requests 3000] [--concurrency 16] [--rounds 3]

The gateway runs in process (ASGI) in front of fake upstreams that answer after
`--upstream-ms`, so the figures isolate the gateway's own work; the prediction log is
off in every configuration. Configurations are interleaved round by round. On a shared
machine the wall-clock throughput is noisy; the CPU seconds this process spends per
request (every thread, the capture's writer included) is the figure that bounds the
throughput of a CPU-bound gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gateway.app import create_app
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

BODY = {"instances": [[0.0, 5.0, 1.0, 2.0]]}
NAMES = ("off", "on", "stalled")


def build(name: str, root: Path, upstream_s: float, stall: threading.Event) -> Any:
    capture: dict[str, Any] = {"dir": str(root / name / "capture")}
    if name != "off":
        capture["models"] = {"toy": 1.0}
    if name == "stalled":
        capture["queue_size"] = 100
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    for upstream in upstreams.values():
        upstream.delay = upstream_s
    settings = settings_for(
        make_store(root / f"{name}-store"), experiments={"log_enabled": False}, capture=capture
    )
    app = create_app(settings, upstreams)  # type: ignore[arg-type]
    sink = app.state.gateway.capture
    if name == "stalled":  # bench-only: a writer whose every write waits until the end
        original = sink._open_files

        def stalled_files() -> Any:
            files = original()
            write = files.write
            files.write = lambda records: (stall.wait(), write(records))[1]
            return files

        sink._open_files = stalled_files
    return app


async def drive(app: Any, requests: int, concurrency: int) -> tuple[list[float], float, float]:
    """Latencies, wall seconds, and this process's CPU seconds (every thread: the capture's
    writer included, flushed before the clock stops) for `requests` requests."""
    cpu = time.process_time()
    latencies, took = await _drive(app, requests, concurrency)
    sink = app.state.gateway.capture
    if sink is not None and sink.counters.dropped == 0:  # the stalled writer never ends
        await asyncio.to_thread(sink.flush, 30.0, False)
    return latencies, took, time.process_time() - cpu


async def _drive(app: Any, requests: int, concurrency: int) -> tuple[list[float], float]:
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

        began = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return latencies, time.perf_counter() - began


async def bench(requests: int, concurrency: int, rounds: int, upstream_s: float) -> dict[str, Any]:
    results: dict[str, Any] = {name: {"lat": [], "s": 0.0, "n": 0, "cpu": 0.0} for name in NAMES}
    stall = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        apps = {name: build(name, Path(tmp), upstream_s, stall) for name in NAMES}
        async with contextlib.AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
                await _drive(app, 200, concurrency)  # warm up
            for r in range(rounds):
                order = NAMES[r % len(NAMES) :] + NAMES[: r % len(NAMES)]
                for name in order:
                    lat, took, cpu = await drive(apps[name], requests, concurrency)
                    results[name]["lat"] += lat
                    results[name]["s"] += took
                    results[name]["cpu"] += cpu
                    results[name]["n"] += len(lat)
            stall.set()
            for name, app in apps.items():
                sink = app.state.gateway.capture
                results[name]["counters"] = None if sink is None else sink.snapshot()
    return results


def main(
    requests: Annotated[int, typer.Option(help="requests per configuration and round")] = 3000,
    concurrency: Annotated[int, typer.Option(help="concurrent clients")] = 16,
    rounds: Annotated[int, typer.Option(help="rounds")] = 3,
    upstream_ms: Annotated[float, typer.Option(help="fake backend latency")] = 1.0,
) -> None:
    results = asyncio.run(bench(requests, concurrency, rounds, upstream_ms / 1000))
    base = results["off"]["n"] / results["off"]["s"]
    base_cpu = results["off"]["cpu"] / results["off"]["n"]
    table = Table(title=f"capture on vs off ({concurrency} clients, upstream {upstream_ms} ms)")
    for column in ("capture", "requests", "req/s", "throughput ratio", "CPU us/request",
                   "CPU ratio", "p50 ms", "p99 ms", "captured", "dropped"):  # fmt: skip
        table.add_column(column)
    for name in NAMES:
        r = results[name]
        lat, rate, c = np.array(r["lat"]), r["n"] / r["s"], r["counters"]
        cpu = r["cpu"] / r["n"]
        table.add_row(
            name, str(r["n"]), f"{rate:.0f}", f"{rate / base:.3f}", f"{cpu * 1e6:.0f}",
            f"{cpu / base_cpu:.3f}",
            f"{np.percentile(lat, 50) * 1e3:.3f}", f"{np.percentile(lat, 99) * 1e3:.3f}",
            "-" if c is None else str(c.submitted), "-" if c is None else str(c.dropped),
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    typer.run(main)
