"""Gateway overhead benchmark: the same load directly at each backend and through the
gateway pinned to it, interleaved in one run, with exact per-request latencies. When the
gateway has a gRPC ingress, TF Serving's `Predict` over gRPC joins in (straight at TF
Serving and through the gateway pinned to each backend) and gRPC / REST through the
gateway is printed as ratios.

    python -m loadtest.bench_gateway [--model digits-mlp] [--duration 5] [--rounds 2]

Uses a running stack (`dualserve up`) when run/state.json exists, else starts one and
stops it at the end. Prints throughput, p50/p99, the gateway/direct ratios and the
gateway's CPU milliseconds per forwarded request (psutil). Locust rounds latencies to
whole milliseconds, which hides sub-millisecond overhead: this uses its own client.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import grpc
import numpy as np
import psutil
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backends.torchserve.launcher import read_token
from dualserve.stack import StackPaths, down, read_state, up
from gateway._proto.tfserving import PREDICT, PredictRequest
from gateway.codecs.tensorproto import to_tensor_proto
from trainers.architecture import to_model_input
from trainers.data import load_dataset


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]  # REST headers, or gRPC metadata
    via_gateway: bool
    grpc: bool = False  # `url` is then host:port and the call TF Serving's Predict


@dataclass(frozen=True)
class Payloads:
    """The same examples as REST bodies and as serialized gRPC `PredictRequest`s."""

    rest: list[bytes]
    grpc: list[bytes]


@dataclass
class Cell:
    target: str
    concurrency: int
    latencies: list[float]
    errors: int
    seconds: float
    gateway_cpu_s: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


def targets(state: dict[str, Any], model: str) -> list[Target]:
    token = read_token(Path(state["pytorch"]["token_file"]), "inference")
    gw = state["gateway"]["rest"]
    return [
        Target("tf-direct", f"{state['tensorflow']['rest']}/v1/models/{model}:predict", {}, False),
        Target("gateway->tf", f"{gw}/v1/models/{model}:predict", {"X-Backend": "tensorflow"}, True),
        Target(
            "torch-direct",
            f"{state['pytorch']['inference']}/predictions/{model}",
            {"Authorization": f"Bearer {token}"},
            False,
        ),
        Target("gateway->torch", f"{gw}/v1/models/{model}:predict", {"X-Backend": "pytorch"}, True),
    ]


def grpc_targets(state: dict[str, Any]) -> list[Target]:
    """gRPC rows: direct TF Serving, and the gateway's gRPC ingress pinned to each arm."""
    gw = state["gateway"].get("grpc")
    if not gw:
        return []
    return [
        Target("tf-direct-grpc", state["tensorflow"]["grpc"], {}, False, grpc=True),
        Target("gateway-grpc->tf", gw, {"x-backend": "tensorflow"}, True, grpc=True),
        Target("gateway-grpc->torch", gw, {"x-backend": "pytorch"}, True, grpc=True),
    ]


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


async def _measure(
    target: Target, concurrency: int, duration: float, worker: Worker, gateway: psutil.Process
) -> Cell:
    await worker(time.perf_counter() + 0.5, [], [0], 0)  # warm-up
    latencies: list[float] = []
    errors = [0]
    cpu_before = sum(gateway.cpu_times()[:2])
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(worker(deadline, latencies, errors, k * 7) for k in range(concurrency)))
    seconds = time.perf_counter() - started
    cpu = sum(gateway.cpu_times()[:2]) - cpu_before
    return Cell(
        target.name, concurrency, latencies, errors[0], seconds, cpu if target.via_gateway else 0.0
    )


async def run_cell(
    target: Target,
    concurrency: int,
    duration: float,
    payloads: Payloads,
    gateway: psutil.Process,
) -> Cell:
    if target.grpc:
        async with grpc.aio.insecure_channel(target.url) as channel:
            method = channel.unary_unary(PREDICT)  # bytes in, bytes out
            worker = functools.partial(_grpc_worker, method, target, payloads.grpc)
            return await _measure(target, concurrency, duration, worker, gateway)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        rest = functools.partial(_worker, session, target, payloads.rest)
        return await _measure(target, concurrency, duration, rest, gateway)


def summarise(cells: list[Cell]) -> dict[tuple[str, int], dict[str, float]]:
    """Pool the rounds of each (target, concurrency) into one row."""
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for key in sorted({(c.target, c.concurrency) for c in cells}):
        group = [c for c in cells if (c.target, c.concurrency) == key]
        latencies = [x for c in group for x in c.latencies]
        requests, seconds = len(latencies), sum(c.seconds for c in group)
        rows[key] = {
            "throughput": requests / seconds,
            "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000),
            "errors": sum(c.errors for c in group),
            "gateway_cpu_ms_per_req": 1000 * sum(c.gateway_cpu_s for c in group) / max(requests, 1),
        }
    return rows


def ratios(rows: dict[tuple[str, int], dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for (name, conc), row in rows.items():
        if not name.startswith("gateway->"):
            continue
        direct = rows[(f"{name.split('->')[1]}-direct", conc)]
        out.append({
            "backend": name.split("->")[1], "concurrency": conc,
            "throughput_ratio": row["throughput"] / direct["throughput"],
            "added_p50_ms": row["p50_ms"] - direct["p50_ms"],
            "p99_ratio": row["p99_ms"] / direct["p99_ms"],
            "gateway_cpu_ms_per_req": row["gateway_cpu_ms_per_req"],
        })  # fmt: skip
    return out


def grpc_ratios(rows: dict[tuple[str, int], dict[str, float]]) -> list[dict[str, Any]]:
    """gRPC / REST through the gateway per backend, and the gateway's gRPC ingress / a
    direct TF Serving gRPC call (`via`)."""
    out = []
    for (name, conc), row in rows.items():
        if not name.startswith("gateway-grpc->"):
            continue
        backend = name.split("->")[1]
        pairs = [("gw REST", rows.get((f"gateway->{backend}", conc)))]
        if backend == "tf":
            pairs.append(("direct gRPC", rows.get(("tf-direct-grpc", conc))))
        for versus, other in pairs:
            if other is None:
                continue
            out.append({
                "backend": backend, "concurrency": conc, "versus": versus,
                "throughput_ratio": row["throughput"] / other["throughput"],
                "p50_ratio": row["p50_ms"] / other["p50_ms"],
                "p99_ratio": row["p99_ms"] / other["p99_ms"],
                "gateway_cpu_ms_per_req": row["gateway_cpu_ms_per_req"],
            })  # fmt: skip
    return out


def print_grpc_ratios(console: Console, comparisons: list[dict[str, Any]]) -> None:
    table = Table(title="gateway gRPC ingress / (gateway REST | direct TF Serving gRPC)")
    for col in ("backend", "conc", "versus", "throughput ratio", "p50 ratio", "p99 ratio",
                "gRPC gw CPU ms/req"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in comparisons:
        ratios_ = (r["throughput_ratio"], r["p50_ratio"], r["p99_ratio"])
        cells = [f"{value:.2f}x" for value in ratios_]
        cpu = f"{r['gateway_cpu_ms_per_req']:.3f}"
        table.add_row(r["backend"], str(r["concurrency"]), r["versus"], *cells, cpu)
    console.print(table)


def print_results(
    console: Console,
    rows: dict[tuple[str, int], dict[str, float]],
    comparisons: list[dict[str, Any]],
) -> None:
    table = Table(title="direct vs through the gateway (REST and gRPC, exact latencies)")
    for col in ("target", "conc", "req/s", "p50 ms", "p99 ms", "errors", "gw CPU ms/req"):
        table.add_column(col, justify="right")
    for (name, conc), row in rows.items():
        cpu = f"{row['gateway_cpu_ms_per_req']:.3f}" if name.startswith("gateway") else ""
        table.add_row(name, str(conc), f"{row['throughput']:.0f}", f"{row['p50_ms']:.3f}",
                      f"{row['p99_ms']:.3f}", str(int(row["errors"])), cpu)  # fmt: skip
    console.print(table)
    ratio_table = Table(title="gateway / direct")
    for col in (
        "backend",
        "conc",
        "throughput ratio",
        "added p50 ms",
        "p99 ratio",
        "gw CPU ms/req",
    ):
        ratio_table.add_column(col, justify="right")
    for r in comparisons:
        ratio_table.add_row(
            r["backend"],
            str(r["concurrency"]),
            f"{r['throughput_ratio']:.2f}x",
            f"{r['added_p50_ms']:+.3f}",
            f"{r['p99_ratio']:.2f}x",
            f"{r['gateway_cpu_ms_per_req']:.3f}",
        )
    console.print(ratio_table)


def main(
    model: str = "digits-mlp",
    duration: Annotated[float, typer.Option(help="seconds per cell")] = 5.0,
    rounds: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 2,
    concurrency: Annotated[list[int], typer.Option(help="client concurrency levels")] = [1, 16],  # noqa: B006
    model_store: Path = Path("model_store"),
    run_dir: Path = Path("run"),
    output: Annotated[Path | None, typer.Option(help="write the results as JSON")] = None,
) -> None:
    console = Console()
    paths = StackPaths(model_store, run_dir.resolve())
    started_here = not paths.state_file.is_file()
    if started_here:
        with console.status("starting the stack (dualserve up)"):
            up(paths)
    try:
        state = read_state(paths.run_dir)
        gateway = psutil.Process(state["gateway"]["pid"])
        payloads = bodies(model)
        cells: list[Cell] = []
        every = targets(state, model) + grpc_targets(state)
        plan = [(t, c) for _ in range(rounds) for c in concurrency for t in every]
        with Progress(console=console) as progress:
            task = progress.add_task("benchmark", total=len(plan))
            for target, conc in plan:
                progress.update(task, description=f"{target.name} c={conc}")
                cells.append(asyncio.run(run_cell(target, conc, duration, payloads, gateway)))
                progress.advance(task)
    finally:
        if started_here:
            down(paths)
    rows = summarise(cells)
    comparisons = ratios(rows)
    print_results(console, rows, comparisons)
    versus_rest = grpc_ratios(rows)
    if versus_rest:
        print_grpc_ratios(console, versus_rest)
    if output is not None:
        serial = {f"{name}@{conc}": row for (name, conc), row in rows.items()}
        report = {"rows": serial, "ratios": comparisons, "grpc_ratios": versus_rest}
        output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
