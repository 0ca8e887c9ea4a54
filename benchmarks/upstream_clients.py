"""Which HTTP client should forward requests to the REST backends: the gateway's own
keep-alive client (`gateway.upstreams.transports.http1`, its REST wire since issue 15), aiohttp or httpx?

Starts a small aiohttp echo server in a child process on a free loopback port, then
forwards the same `.npy` request body through each client at a fixed concurrency and
prints requests per second and median latency.

    .venv/bin/python -m benchmarks.upstream_clients --requests 3000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import numpy as np
from aiohttp import web

from backends.process import free_port, port_open
from gateway.upstreams.transports.http1 import Http1Pool

Send = Callable[[], Awaitable[None]]


def _serve(port: int) -> None:
    async def predict(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body[:1024], content_type="application/x-npz")

    app = web.Application()
    app.router.add_post("/predictions/bench", predict)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _payload() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).random((32, 64), dtype=np.float32))
    return buffer.getvalue()


async def _run(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return requests / elapsed, statistics.median(latencies) * 1000


async def _bench_aiohttp(
    url: str, body: bytes, requests: int, concurrency: int
) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send() -> None:
            async with session.post(url, data=body) as response:
                await response.read()
                response.raise_for_status()

        await _run(send, 100, concurrency)  # warm-up: open the pool
        return await _run(send, requests, concurrency)


async def _bench_httpx(
    url: str, body: bytes, requests: int, concurrency: int
) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def send() -> None:
            response = await client.post(url, content=body)
            response.raise_for_status()

        await _run(send, 100, concurrency)
        return await _run(send, requests, concurrency)


async def _bench_http1(
    url: str, body: bytes, requests: int, concurrency: int
) -> tuple[float, float]:
    base, path = url.split("/predictions/", 1)
    pool = Http1Pool(base, concurrency)
    headers = {"Content-Type": "application/octet-stream"}

    async def send() -> None:
        status, _ = await pool.request("POST", f"/predictions/{path}", body, headers, 10.0)
        if status >= 300:
            raise RuntimeError(f"HTTP {status}")

    try:
        await _run(send, 100, concurrency)
        return await _run(send, requests, concurrency)
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 15
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        url, body = f"http://127.0.0.1:{port}/predictions/bench", _payload()
        benches = (("http1", _bench_http1), ("aiohttp", _bench_aiohttp), ("httpx", _bench_httpx))
        for name, bench in benches:
            rps, p50 = asyncio.run(bench(url, body, args.requests, args.concurrency))
            print(
                f"{name:8s} {rps:8.0f} req/s   p50 {p50:6.2f} ms   ({args.requests} requests, "
                f"concurrency {args.concurrency}, {len(body)} B body)"
            )
    finally:
        server.terminate()
        server.join(timeout=5)


if __name__ == "__main__":
    main()
