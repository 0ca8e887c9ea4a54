"""Gateway overhead benchmark: the same load directly at each backend and through the
gateway pinned to it, interleaved in one run, with exact per-request latencies.

    python -m loadtest.bench_gateway [--model digits-mlp] [--duration 5] [--rounds 2]

Uses a running stack (`dualserve up`) when run/state.json exists, else starts one and
stops it at the end. Prints throughput, p50/p99, the gateway/direct ratios and the
gateway's CPU milliseconds per forwarded request (psutil). Locust rounds latencies to
whole milliseconds, which hides sub-millisecond overhead: this uses its own client.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import numpy as np
import psutil
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backends.torchserve.launcher import read_token
from dualserve.stack import StackPaths, down, read_state, up
from trainers.architecture import to_model_input
from trainers.data import load_dataset


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    via_gateway: bool


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


def bodies(model: str, count: int = 64) -> list[bytes]:
    """Single-example requests drawn from the model's test set, not constants."""
    arch = model.rsplit("-", 1)[-1]
    x = to_model_input(load_dataset("digits").test.x[:count], arch)
    return [json.dumps({"instances": x[i : i + 1].tolist()}).encode() for i in range(len(x))]


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


async def run_cell(
    target: Target,
    concurrency: int,
    duration: float,
    payloads: list[bytes],
    gateway: psutil.Process,
) -> Cell:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm: list[float] = []
        await _worker(session, target, payloads, time.perf_counter() + 0.5, warm, [0], 0)
        latencies: list[float] = []
        errors = [0]
        cpu_before = sum(gateway.cpu_times()[:2])
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(
            *(
                _worker(session, target, payloads, deadline, latencies, errors, k * 7)
                for k in range(concurrency)
            )
        )
        seconds = time.perf_counter() - started
        cpu = sum(gateway.cpu_times()[:2]) - cpu_before
    return Cell(
        target.name, concurrency, latencies, errors[0], seconds, cpu if target.via_gateway else 0.0
    )


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


def print_results(
    console: Console,
    rows: dict[tuple[str, int], dict[str, float]],
    comparisons: list[dict[str, Any]],
) -> None:
    table = Table(title="direct vs through the gateway (REST, exact latencies)")
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
        plan = [(t, c) for _ in range(rounds) for c in concurrency for t in targets(state, model)]
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
    if output is not None:
        serial = {f"{name}@{conc}": row for (name, conc), row in rows.items()}
        output.write_text(json.dumps({"rows": serial, "ratios": comparisons}, indent=2))


if __name__ == "__main__":
    typer.run(main)
