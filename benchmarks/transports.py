"""Which upstream transport should each backend kind use by default: gRPC or REST?

Runs the gateway's own upstream clients (`gateway.upstreams.factory`, exactly as the
gateway builds them) in this process against a running stack's backends, one digit per
request as the router sends it, at each concurrency, every (backend, transport) cell
interleaved over `--rounds`. Prints requests per second, p50 and this process's CPU per
request (user + system of every thread, so grpc's own threads count), and REST / gRPC
per backend kind: the client's cost is the part of the gateway's cost that the transport
changes.

    python -m benchmarks.transports [--requests 2000] [--rounds 3] [--concurrency 1,16]
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dualserve.run_state import RunState, read_state
from gateway.core.types import Framework, InferRequest
from gateway.processes.launcher import gateway_config
from gateway.settings import Transport
from gateway.upstreams.base import Upstream
from gateway.upstreams.factory import build_upstreams
from trainers.architecture import to_model_input
from trainers.data import load_dataset

KINDS: list[tuple[Framework, Transport]] = [
    ("tensorflow", "grpc"),
    ("tensorflow", "rest"),
    ("pytorch", "grpc"),
    ("pytorch", "rest"),
]


@dataclass
class Cell:
    framework: Framework
    transport: str
    concurrency: int
    latencies: list[float]
    seconds: float
    cpu_s: float


def client(state: RunState, framework: Framework, transport: Transport) -> Upstream:
    """The gateway's client for `framework` over `transport`, from `dualserve up`'s config."""
    config = gateway_config(state.tensorflow, state.pytorch, Path("model_store"), Path("run"), 0)
    config.tensorflow.transport = config.pytorch.transport = transport
    return build_upstreams(config)[framework]


async def run_cell(
    upstream: Upstream, requests: list[InferRequest], count: int, concurrency: int
) -> tuple[list[float], float, float]:
    """(latencies, wall seconds, CPU seconds) of `count` calls at `concurrency`."""
    latencies: list[float] = []
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            started = time.perf_counter()
            await upstream.infer(requests[i % len(requests)], 30.0)
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - wall, time.process_time() - cpu


async def measure(
    state: RunState, model: str, count: int, concurrency: list[int], rounds: int
) -> list[Cell]:
    x = to_model_input(load_dataset("digits").test.x[:64], model.rsplit("-", 1)[-1])
    requests = [
        InferRequest(model=model, inputs={"input": x[i : i + 1]}, version=1) for i in range(64)
    ]
    clients = {kind: client(state, *kind) for kind in KINDS}
    cells = []
    try:
        for upstream in clients.values():
            await run_cell(upstream, requests, 200, 16)  # warm-up: open the pools
        for _ in range(rounds):
            for c in concurrency:
                for kind, upstream in clients.items():
                    latencies, wall, cpu = await run_cell(upstream, requests, count, c)
                    cells.append(Cell(*kind, c, latencies, wall, cpu))
    finally:
        for upstream in clients.values():
            await upstream.aclose()
    return cells


def summarise(cells: list[Cell]) -> dict[tuple[Framework, str, int], dict[str, float]]:
    rows = {}
    for key in dict.fromkeys((c.framework, c.transport, c.concurrency) for c in cells):
        group = [c for c in cells if (c.framework, c.transport, c.concurrency) == key]
        latencies = [x for c in group for x in c.latencies]
        rows[key] = {
            "throughput": len(latencies) / sum(c.seconds for c in group),
            "p50_ms": statistics.median(latencies) * 1000,
            "cpu_ms_per_req": 1000 * sum(c.cpu_s for c in group) / len(latencies),
        }
    return rows


def print_rows(console: Console, rows: dict[tuple[Framework, str, int], dict[str, float]]) -> None:
    table = Table(title="the gateway's upstream clients, in process (REST / gRPC per backend)")
    for col in ("backend", "transport", "conc", "req/s", "p50 ms", "CPU ms/req", "REST/gRPC"):
        table.add_column(col, justify="right")
    for (framework, transport, conc), row in rows.items():
        versus = ""
        grpc = rows.get((framework, "grpc", conc))
        if transport == "rest" and grpc:
            versus = (
                f"req/s {row['throughput'] / grpc['throughput']:.2f}x, "
                f"CPU {row['cpu_ms_per_req'] / grpc['cpu_ms_per_req']:.2f}x"
            )
        table.add_row(framework, transport, str(conc), f"{row['throughput']:.0f}",
                      f"{row['p50_ms']:.3f}", f"{row['cpu_ms_per_req']:.3f}", versus)  # fmt: skip
    console.print(table)


def main(
    model: str = "digits-mlp",
    requests: Annotated[int, typer.Option(help="calls per cell")] = 2000,
    rounds: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 3,
    concurrency: Annotated[str, typer.Option(help="concurrency levels")] = "1,16",
    run_dir: Path = Path("run"),
) -> None:
    """Needs a running stack (`dualserve up`)."""
    state = read_state(run_dir.resolve())
    levels = [int(c) for c in concurrency.split(",")]
    cells = asyncio.run(measure(state, model, requests, levels, rounds))
    print_rows(Console(), summarise(cells))


if __name__ == "__main__":
    typer.run(main)
