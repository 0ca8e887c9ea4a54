"""Gateway overhead benchmark, measured against the floor of any Python hop.

The same load, interleaved in one run with exact per-request latencies, goes straight at
each backend (`direct`), through a minimal pass-through proxy (`floor`:
benchmarks/floor_proxy.py, uvicorn + httptools + one aiohttp session, bytes forwarded) and
through gateways the bench starts itself, one per `--workers` count and `--transport`,
over REST and over the gateway's gRPC ingress, pinned to each arm. It prints every row,
then gateway / floor ratios (throughput, p50 minus the floor's, CPU per request ratio),
gRPC ingress / REST ingress, and the issue-15 goals met or not.

    python -m benchmarks.gateway [--model digits-mlp] [--duration 5] [--rounds 2]
        [--workers 1,2] [--transport default,rest,grpc] [--log on,off] [--capture 0,1]

Uses a running stack's backends (`dualserve up`) when run/state.json exists, else starts
one and stops it at the end. CPU is the user + system time of the process tree (psutil).
Locust rounds latencies to whole milliseconds, which hides sub-millisecond overhead: this
uses its own client.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import aiohttp
import grpc
import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress

from backends.torchserve.launcher import read_token
from benchmarks.processes import (
    GatewayVariant,
    Running,
    bench_processes,
    tree_cpu_s,
)
from benchmarks.ratios import Row, print_report, report_json
from dualserve.run_state import RunState
from dualserve.stack import StackPaths, down, read_state, up
from gateway._proto.tfserving import PREDICT, PredictRequest
from gateway.codecs.tensorproto import to_tensor_proto
from trainers.architecture import to_model_input
from trainers.data import load_dataset


@dataclass(frozen=True)
class Target:
    """One row of the benchmark: where requests go and whose CPU is counted.

    Attributes:
        kind: `direct` (the backend itself), `floor` (the pass-through proxy) or a gateway
            variant's label (`gw1`, `gw2/rest`, ...).
        arm: `tf` or `torch`, the backend that answers.
        ingress: `rest` or `grpc` (then `url` is host:port and the call TF Serving's Predict).
        headers: REST headers, or gRPC metadata.
        pid: the process tree whose CPU is counted per request; None for direct rows.
    """

    kind: str
    arm: str
    ingress: str
    url: str
    headers: dict[str, str]
    pid: int | None = None

    @property
    def name(self) -> str:
        ingress = "-grpc" if self.ingress == "grpc" else ""
        return f"{self.kind}{ingress}->{self.arm}"

    @property
    def grpc(self) -> bool:
        return self.ingress == "grpc"


@dataclass(frozen=True)
class Payloads:
    """The same examples as REST bodies and as serialized gRPC `PredictRequest`s."""

    rest: list[bytes]
    grpc: list[bytes]


@dataclass
class Cell:
    target: Target
    concurrency: int
    latencies: list[float]
    errors: int
    seconds: float
    cpu_s: float


def direct_targets(state: RunState, model: str) -> list[Target]:
    """Straight at each backend: TF Serving REST and gRPC, TorchServe REST."""
    token = read_token(state.pytorch.token_file, "inference")
    tf, torch = state.tensorflow, state.pytorch
    return [
        Target("direct", "tf", "rest", f"{tf.rest}/v1/models/{model}:predict", {}),
        Target("direct", "tf", "grpc", tf.grpc, {}),
        Target(
            "direct", "torch", "rest", f"{torch.inference}/predictions/{model}",
            {"Authorization": f"Bearer {token}"},
        ),
    ]  # fmt: skip


def floor_targets(directs: list[Target], floors: dict[str, Running]) -> list[Target]:
    """The direct REST rows' paths and headers, through each arm's floor proxy."""
    out = []
    for t in directs:
        if t.ingress == "rest":
            path = t.url.split("/", 3)[3]
            floor = floors[t.arm]
            out.append(Target("floor", t.arm, "rest", f"{floor.rest}/{path}", t.headers, floor.pid))
    return out


def gateway_targets(label: str, gateway: Running, model: str) -> list[Target]:
    """REST and gRPC ingress of one gateway, pinned to each arm."""
    out = []
    for arm, backend in (("tf", "tensorflow"), ("torch", "pytorch")):
        url = f"{gateway.rest}/v1/models/{model}:predict"
        out.append(Target(label, arm, "rest", url, {"X-Backend": backend}, gateway.pid))
        if gateway.grpc:
            out.append(
                Target(label, arm, "grpc", gateway.grpc, {"x-backend": backend}, gateway.pid)
            )
    return out


def _predict_bytes(model: str, x: np.ndarray) -> bytes:
    request = PredictRequest()
    request.model_spec.name = model
    to_tensor_proto(x.astype(np.float32), request.inputs["input"])
    return bytes(request.SerializeToString())


def bodies(model: str, count: int = 64) -> Payloads:
    """Single-example requests drawn from the model's test set, not constants."""
    arch = model.rsplit("-", 1)[-1]
    x = to_model_input(load_dataset("digits").test.x[:count], arch)
    rest = [json.dumps({"instances": x[i : i + 1].tolist()}).encode() for i in range(len(x))]
    return Payloads(rest, [_predict_bytes(model, x[i : i + 1]) for i in range(len(x))])


async def _worker(
    session: aiohttp.ClientSession, target: Target, payloads: list[bytes], deadline: float,
    latencies: list[float], errors: list[int], offset: int,
) -> None:  # fmt: skip
    headers = {"Content-Type": "application/json", **target.headers}
    i = offset
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        async with session.post(target.url, data=payloads[i % len(payloads)], headers=headers) as r:
            await r.read()
            ok = r.status == 200
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors[0] += 1
        i += 1


async def _grpc_worker(
    method: grpc.aio.UnaryUnaryMultiCallable, target: Target, payloads: list[bytes],
    deadline: float, latencies: list[float], errors: list[int], offset: int,
) -> None:  # fmt: skip
    metadata = tuple(target.headers.items())
    i = offset
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:  # pre-serialized requests, raw replies: the client does no protobuf work
            await method(payloads[i % len(payloads)], timeout=30, metadata=metadata)
            latencies.append(time.perf_counter() - started)
        except grpc.RpcError:
            errors[0] += 1
        i += 1


Worker = Callable[[float, list[float], list[int], int], Awaitable[None]]


async def _measure(target: Target, concurrency: int, duration: float, worker: Worker) -> Cell:
    await worker(time.perf_counter() + 0.5, [], [0], 0)  # warm-up
    latencies: list[float] = []
    errors = [0]
    cpu_before = tree_cpu_s(target.pid) if target.pid else 0.0
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(worker(deadline, latencies, errors, k * 7) for k in range(concurrency)))
    seconds = time.perf_counter() - started
    cpu = tree_cpu_s(target.pid) - cpu_before if target.pid else 0.0
    return Cell(target, concurrency, latencies, errors[0], seconds, cpu)


async def run_cell(target: Target, concurrency: int, duration: float, payloads: Payloads) -> Cell:
    if target.grpc:
        async with grpc.aio.insecure_channel(target.url) as channel:
            method = channel.unary_unary(PREDICT)  # bytes in, bytes out
            worker = functools.partial(_grpc_worker, method, target, payloads.grpc)
            return await _measure(target, concurrency, duration, worker)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        rest = functools.partial(_worker, session, target, payloads.rest)
        return await _measure(target, concurrency, duration, rest)


def summarise(cells: list[Cell]) -> list[Row]:
    """Pool the rounds of each (target, concurrency) into one row."""
    rows = []
    for name, conc in dict.fromkeys((c.target.name, c.concurrency) for c in cells):
        group = [c for c in cells if (c.target.name, c.concurrency) == (name, conc)]
        latencies = [x for c in group for x in c.latencies]
        requests, seconds = len(latencies), sum(c.seconds for c in group)
        target = group[0].target
        rows.append(Row(
            kind=target.kind, arm=target.arm, ingress=target.ingress, concurrency=conc,
            throughput=requests / seconds,
            p50_ms=float(np.percentile(latencies, 50) * 1000) if latencies else float("nan"),
            p99_ms=float(np.percentile(latencies, 99) * 1000) if latencies else float("nan"),
            errors=sum(c.errors for c in group),
            cpu_ms_per_req=1000 * sum(c.cpu_s for c in group) / max(requests, 1),
        ))  # fmt: skip
    return rows


def variants_of(
    workers: list[int], transports: list[str], logs: list[bool], console: Console,
    captures: tuple[tuple[tuple[str, float], ...], ...] = ((),),
) -> list[GatewayVariant]:  # fmt: skip
    """The gateways to start: every (workers, transport, log, capture) combination."""
    return [
        GatewayVariant(w, t, log, capture)
        for w in dict.fromkeys(workers)
        for t in dict.fromkeys(transports)
        for log in dict.fromkeys(logs)
        for capture in dict.fromkeys(captures)
    ]


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def measure(
    console: Console, every: list[Target], concurrency: list[int], rounds: int, duration: float,
    payloads: Payloads,
) -> list[Cell]:  # fmt: skip
    """Every (target, concurrency) cell, `rounds` times, interleaved."""
    plan = [(t, c) for _ in range(rounds) for c in concurrency for t in every]
    cells = []
    with Progress(console=console) as progress:
        task = progress.add_task("benchmark", total=len(plan))
        for target, conc in plan:
            progress.update(task, description=f"{target.name} c={conc}")
            cells.append(asyncio.run(run_cell(target, conc, duration, payloads)))
            progress.advance(task)
    return cells


def run_all(
    console: Console, paths: StackPaths, model: str, variants: list[GatewayVariant],
    concurrency: list[int], rounds: int, duration: float,
) -> list[Cell]:  # fmt: skip
    """Start the floors and gateways in front of the stack's backends, measure, stop them."""
    state = read_state(paths.run_dir)
    directs = direct_targets(state, model)
    store = paths.model_store.resolve()
    console.print(f"starting the floor proxies and {len(variants)} gateway(s)")
    with bench_processes(state, store, paths.run_dir / "bench", variants) as (floors, gateways):
        every = directs + floor_targets(directs, floors)
        for variant, gateway in gateways.items():
            every += gateway_targets(variant.label, gateway, model)
        return measure(console, every, concurrency, rounds, duration, bodies(model))


def main(
    model: str = "digits-mlp",
    duration: Annotated[float, typer.Option(help="seconds per cell")] = 5.0,
    rounds: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 2,
    concurrency: Annotated[str, typer.Option(help="client concurrency levels")] = "1,16",
    workers: Annotated[
        str, typer.Option(help="gateway worker processes, one gateway each")
    ] = "1,2",
    transport: Annotated[
        str, typer.Option(help="upstream transports: default (as `dualserve up`), rest, grpc")
    ] = "default",
    log: Annotated[str, typer.Option(help="prediction log: on, off or on,off")] = "on",
    capture: Annotated[
        str, typer.Option(help="shares of the model captured (issue 28), e.g. 0,1; 0 = off")
    ] = "0",
    model_store: Path = Path("model_store"),
    run_dir: Path = Path("run"),
    output: Annotated[Path | None, typer.Option(help="write the results as JSON")] = None,
) -> None:
    console = Console()
    paths = StackPaths(model_store, run_dir.resolve())
    logs = [value == "on" for value in _csv(log)]
    captures = tuple(((model, float(v)),) if float(v) > 0 else () for v in _csv(capture))
    variants = variants_of(
        [int(w) for w in _csv(workers)], _csv(transport), logs, console, captures
    )
    started_here = not paths.state_file.is_file()
    if started_here:
        with console.status("starting the stack (dualserve up)"):
            up(paths)
    try:
        cells = run_all(console, paths, model, variants, [int(c) for c in _csv(concurrency)],
                        rounds, duration)  # fmt: skip
    finally:
        if started_here:
            down(paths)
    rows = summarise(cells)
    print_report(console, rows)
    if output is not None:
        output.write_text(json.dumps(report_json(rows), indent=2))


if __name__ == "__main__":
    typer.run(main)
