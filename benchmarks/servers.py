"""ASGI servers side by side: the gateway and the floor proxy under uvicorn and granian.

Issue 15 allows "an ASGI server other than uvicorn (granian)" to be measured. This starts,
next to a running stack's backends, the same two apps under each server and measures them
interleaved in one run (the client, cells and rows of `benchmarks.gateway`):

- `gateway`: `gateway.app.create_app(settings)` with `dualserve up`'s settings (one worker,
  prediction log on, gRPC ingress started in the lifespan), REST and gRPC ingress -> tf;
- `floor`: `benchmarks.floor_proxy.FloorProxy` in front of the TF server.

uvicorn runs as the project runs it (`python -m gateway`, `python -m benchmarks.floor_proxy`:
uvloop + httptools). granian runs its ASGI interface, one worker process, uvloop, HTTP/1,
once per runtime setting in `--granian` (`mt1` = its default for ASGI: multi-threaded
runtime with one thread; `st1` single-threaded runtime; `mt2` two runtime threads).
CPU per request counts the server's whole process tree (granian's supervisor + worker).

    python -m benchmarks.servers [--granian mt1,st1] [--duration 3] [--rounds 2]
        [--run-dir /work/main/run] [--work-dir /tmp/bench-servers]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from backends.process import LOOPBACK, free_port, port_open, start, stop, wait_until
from benchmarks.floor_proxy import FloorProxy
from benchmarks.gateway import Target, bodies, measure, summarise
from benchmarks.processes import (
    GatewayVariant,
    Running,
    _pid,
    start_floor,
    start_variant,
    variant_config,
)
from benchmarks.ratios import Row
from dualserve.run_state import RunState, read_state
from gateway.processes.workers import CONFIG_ENV

UPSTREAM_ENV = "DUALSERVE_FLOOR_UPSTREAM"
"""The floor proxy's upstream when granian builds it with `floor_app`."""


def floor_app() -> FloorProxy:
    """granian's factory for the floor proxy (its upstream from the environment)."""
    return FloorProxy(os.environ[UPSTREAM_ENV])


@dataclass(frozen=True)
class Granian:
    """One granian setting: runtime mode (`mt`/`st`) and runtime threads, e.g. `mt1`."""

    mode: str
    threads: int

    @classmethod
    def parse(cls, text: str) -> Granian:
        return cls(text[:2], int(text[2:]))

    @property
    def label(self) -> str:
        return f"granian-{self.mode}{self.threads}"

    def command(self, target: str, port: int) -> list[str]:
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
            "--loop", "uvloop", "--http", "1", "--no-ws", "--workers", "1",
            "--runtime-mode", self.mode, "--runtime-threads", str(self.threads),
            "--host", LOOPBACK, "--port", str(port), "--log-level", "warning", target,
        ]  # fmt: skip


def start_granian(
    setting: Granian, target: str, env: dict[str, str], folder: Path, port: int,
    stack: ExitStack, ready: Callable[[], bool] | None = None,
) -> int:  # fmt: skip
    """Start granian serving the factory `target`; returns its root pid once `ready()`
    (default: the port listens)."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = start(setting.label, setting.command(target, port), folder, env=env, cwd=folder)
    stack.callback(stop, proc, 15)
    wait_until(proc, ready or (lambda: port_open(port)), 90)
    return _pid(proc)


def granian_gateway(
    state: RunState, store: Path, work: Path, setting: Granian, stack: ExitStack
) -> Running:
    """The gateway (`dualserve up`'s settings, new ports) under granian, ready."""
    folder = work / f"gw-{setting.label}"
    folder.mkdir(parents=True, exist_ok=True)
    config = variant_config(state, store, folder, GatewayVariant(1))
    config_file = folder / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {CONFIG_ENV: str(config_file)}
    rest = f"http://{LOOPBACK}:{config['port']}"
    pid = start_granian(
        setting, "gateway.processes.workers:worker_app", env, folder, config["port"], stack,
        lambda: httpx.get(f"{rest}/readyz", timeout=2).status_code == 200,
    )  # fmt: skip
    return Running(rest, f"{LOOPBACK}:{config['grpc_port']}", pid)


def granian_floor(upstream: str, work: Path, setting: Granian, stack: ExitStack) -> Running:
    port = free_port()
    env = {UPSTREAM_ENV: upstream}
    folder = work / f"floor-{setting.label}"
    pid = start_granian(setting, "benchmarks.servers:floor_app", env, folder, port, stack)
    return Running(f"http://{LOOPBACK}:{port}", None, pid)


def targets_of(label: str, gateway: Running, floor: Running, model: str) -> list[Target]:
    """REST and gRPC ingress of the gateway and the floor, all to the TF server."""
    pin = {"X-Backend": "tensorflow"}
    path = f"/v1/models/{model}:predict"
    out = [Target(f"floor@{label}", "tf", "rest", floor.rest + path, {}, floor.pid)]
    out.append(Target(f"gw@{label}", "tf", "rest", gateway.rest + path, pin, gateway.pid))
    if gateway.grpc:
        meta = {"x-backend": "tensorflow"}
        out.append(Target(f"gw@{label}", "tf", "grpc", gateway.grpc, meta, gateway.pid))
    return out


@contextmanager
def servers(
    state: RunState, store: Path, work: Path, settings: list[Granian]
) -> Iterator[list[Target]]:
    """Every server's gateway and floor, started, as benchmark targets; stopped on exit."""
    upstream = state.tensorflow.rest
    with ExitStack() as stack:
        gateway = start_variant(state, store, work / "uvicorn", GatewayVariant(1), stack)
        floor = start_floor(upstream, work / "uvicorn", "floor-uvicorn", stack)
        every = targets_of("uvicorn", gateway, floor, "digits-mlp")
        for setting in settings:
            gateway = granian_gateway(state, store, work, setting, stack)
            floor = granian_floor(upstream, work, setting, stack)
            every += targets_of(setting.label, gateway, floor, "digits-mlp")
        yield every


def print_versus(console: Console, rows: list[Row]) -> None:
    """Each granian row against the uvicorn row of the same app, ingress and concurrency,
    and each server's gateway against its own floor."""
    by_key = {(r.kind, r.ingress, r.concurrency): r for r in rows}
    table = Table(title="granian / uvicorn (same app, ingress, concurrency) and gw / floor")
    columns = ("row", "c", "req/s", "errors", "CPU ms/req", "p50 ms", "req/s /uvicorn",
               "CPU /uvicorn", "p50 -uvicorn", "req/s /own floor", "CPU /own floor")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in rows:
        app, server = r.kind.split("@")
        base = by_key.get((f"{app}@uvicorn", r.ingress, r.concurrency))
        floor = by_key.get((f"floor@{server}", "rest", r.concurrency))
        versus = ["", "", ""]
        if base is not None and server != "uvicorn":
            versus = [f"{r.throughput / base.throughput:.2f}x",
                      f"{r.cpu_ms_per_req / base.cpu_ms_per_req:.2f}x",
                      f"{r.p50_ms - base.p50_ms:+.3f}"]  # fmt: skip
        own = ["", ""]
        if floor is not None and app == "gw":
            own = [f"{r.throughput / floor.throughput:.2f}x",
                   f"{r.cpu_ms_per_req / floor.cpu_ms_per_req:.2f}x"]  # fmt: skip
        table.add_row(r.name, str(r.concurrency), f"{r.throughput:.0f}", str(r.errors),
                      f"{r.cpu_ms_per_req:.3f}", f"{r.p50_ms:.3f}", *versus, *own)  # fmt: skip
    console.print(table)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def main(
    granian: Annotated[str, typer.Option(help="granian settings: mt1, st1, mt2, ...")] = "mt1",
    duration: Annotated[float, typer.Option(help="seconds per cell")] = 3.0,
    rounds: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 2,
    concurrency: Annotated[str, typer.Option(help="client concurrency levels")] = "1,16",
    model_store: Path = Path("/work/main/model_store"),
    run_dir: Annotated[Path, typer.Option(help="a running stack's run dir")] = Path("run"),
    work_dir: Annotated[Path, typer.Option(help="the bench's own servers' folder")] = Path(
        "run/bench-servers"
    ),
) -> None:
    """Start the servers in front of the stack's TF server, measure, print, stop them."""
    console = Console(width=180)
    state = read_state(run_dir.resolve())
    settings = [Granian.parse(s) for s in _csv(granian)]
    conc = [int(c) for c in _csv(concurrency)]
    with servers(state, model_store.resolve(), work_dir.resolve(), settings) as every:
        cells = measure(console, every, conc, rounds, duration, bodies("digits-mlp"))
    print_versus(console, summarise(cells))


if __name__ == "__main__":
    typer.run(main)
