"""What does the prediction log cost a saturated event loop? Off, written by the storage
thread, written by the writer process: side by side, interleaved, in one run.

    python -m benchmarks.experiments.log_handoff [--requests 6000] [--work-us 300] [--rounds 7]

One event loop does `--work-us` of pure-Python work per request (a stand-in for the
gateway's own) and submits one prediction-log record per request to a SQLite file in WAL
mode (random request ids, as `new_request_id` draws them), yielding every 16 requests.
Per mode the table gives the median over rounds of the loop's wall time per request (what
a writer competing for the GIL costs the loop) and of the process tree's CPU per request
(the writer process's CPU counts). `psutil`'s CPU clock ticks every 10 ms: with 6,000
requests a figure is good to ~2 us.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
import psutil
import typer
from rich.console import Console
from rich.table import Table

from gateway.control.database import SQLITE_FILE
from gateway.experiments.log.process import WriterProcess
from gateway.experiments.log.records import PredictionRecord
from gateway.experiments.log.sink import PredictionLog
from gateway.experiments.log.store import SqliteLogStore

MODES = ("off", "thread", "process")
OUTPUTS = {
    "probabilities": np.array([[0.1, 0.7, 0.2, 0, 0, 0, 0, 0, 0, 0]], dtype=np.float32),
    "class": np.array([1]),
}


def work(iterations: int) -> int:
    total = 0
    for _ in range(iterations):
        total += 1
    return total


def tree_cpu_s() -> float:
    me = psutil.Process()
    total = 0.0
    for proc in (me, *me.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _log(mode: str, folder: Path) -> PredictionLog:
    writer = WriterProcess(None, folder) if mode == "process" else None
    path = folder / SQLITE_FILE
    return PredictionLog(lambda: SqliteLogStore(path), 10_000, 500, 0.2, writer=writer)


async def one_run(mode: str, folder: Path, requests: int, iterations: int) -> tuple[float, float]:
    """Seconds of loop wall time and of tree CPU for `requests` requests."""
    log = _log(mode, folder)
    await log.start()
    ids = [uuid.uuid4().hex for _ in range(requests)]
    cpu, started = tree_cpu_s(), time.perf_counter()
    for i, request_id in enumerate(ids):
        work(iterations)
        if mode != "off":
            record = PredictionRecord(
                request_id=request_id, kind="serve", ts=time.time(), experiment="exp",
                model="m", arm="tensorflow", version=1, routing_key=f"u{i}",
                latency_s=0.001, status=200, outputs=OUTPUTS,
            )  # fmt: skip
            log.submit(record)
        if i % 16 == 15:
            await asyncio.sleep(0)
    wall = time.perf_counter() - started
    await log.flush()
    cpu = tree_cpu_s() - cpu
    await log.aclose()
    return wall, cpu


def calibrate(work_us: float) -> int:
    """Iterations of `work` that take `work_us` of CPU on this machine."""
    started = time.process_time()
    work(1_000_000)
    return max(1, int(work_us * 1e-6 * 1_000_000 / (time.process_time() - started)))


async def bench(requests: int, work_us: float, rounds: int) -> dict[str, list[tuple[float, float]]]:
    iterations = calibrate(work_us)
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode in MODES[r % 3 :] + MODES[: r % 3]:  # rotate: no order bias
                folder = Path(tmp) / mode
                folder.mkdir(exist_ok=True)
                results[mode].append(await one_run(mode, folder, requests, iterations))
    return results


def main(
    requests: Annotated[int, typer.Option(help="requests per mode and round")] = 6000,
    work_us: Annotated[float, typer.Option(help="the loop's own CPU per request")] = 300.0,
    rounds: Annotated[int, typer.Option(help="interleaved rounds")] = 7,
) -> None:
    results = asyncio.run(bench(requests, work_us, rounds))
    per_us = {
        mode: [(wall / requests * 1e6, cpu / requests * 1e6) for wall, cpu in runs]
        for mode, runs in results.items()
    }
    base_wall = statistics.median(w for w, _ in per_us["off"])
    base_cpu = statistics.median(c for _, c in per_us["off"])
    table = Table(title=f"prediction log hand-off, loop saturated ({work_us:.0f} us/request)")
    for column in ("mode", "loop wall us/req", "vs off", "tree CPU us/req", "vs off"):
        table.add_column(column)
    for mode, runs in per_us.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        table.add_row(
            mode, f"{wall:.1f}", f"{wall - base_wall:+.1f}", f"{cpu:.1f}", f"{cpu - base_cpu:+.1f}"
        )
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
