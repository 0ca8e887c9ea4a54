"""What `bench_gateway` starts next to a running stack: the floor proxies and one gateway
per (workers, upstream transport), each on its own free ports, always stopped again.

Every process is started by `backends.process` (own session, pid file, log under the
bench's run folder), so `stop` ends it and everything it spawned.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
import yaml

from backends.process import LOOPBACK, ManagedProcess, free_port, port_open, start, stop, wait_until
from dualserve.run_state import RunState
from gateway.capture.settings import CaptureSettings
from gateway.processes.launcher import gateway_config
from gateway.settings import ExperimentsSettings, Transport, settings_document


@dataclass(frozen=True)
class GatewayVariant:
    """One gateway the bench starts: its process count, upstream transport ("default" =
    what `dualserve up` configures), whether it writes the prediction log, and the
    share of each model it captures (none by default)."""

    workers: int
    transport: str = "default"
    log: bool = True
    capture: tuple[tuple[str, float], ...] = ()  # (model, share) captured (issue 28)

    @property
    def label(self) -> str:
        suffix = "" if self.transport == "default" else f"/{self.transport}"
        shares = "".join(f"/capture{share:g}" for _, share in self.capture)
        return f"gw{self.workers}{suffix}{'' if self.log else '/nolog'}{shares}"


@dataclass(frozen=True)
class Running:
    """A started server: its REST base URL, gRPC address (if any) and root pid."""

    rest: str
    grpc: str | None
    pid: int


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (gateway workers)."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for member in members:
        try:
            total += sum(member.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def variant_config(
    state: RunState, store: Path, run_dir: Path, variant: GatewayVariant
) -> dict[str, Any]:
    """`dualserve up`'s gateway config on new ports, with the variant's workers and
    transport. Every variant has its own experiments database (`data/` in `run_dir`),
    which its workers share (the control plane lives there even with the log off)."""
    port = free_port()
    grpc_port = next(p for p in iter(free_port, None) if p != port)
    config = gateway_config(state.tensorflow, state.pytorch, store, run_dir, port, grpc_port)
    config.workers = variant.workers
    config.experiments = ExperimentsSettings(log_enabled=variant.log, data_dir=run_dir / "data")
    if variant.capture:
        config.capture = CaptureSettings(models=dict(variant.capture))
    if variant.transport != "default":
        transport = cast(Transport, variant.transport)  # the gateway validates it at load
        config.tensorflow.transport = config.pytorch.transport = transport
    return settings_document(config)


def start_variant(
    state: RunState, store: Path, run_dir: Path, variant: GatewayVariant, stack: ExitStack
) -> Running:
    """Start one gateway variant (stopped when `stack` closes) and wait for /readyz."""
    folder = run_dir / variant.label.replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    config = variant_config(state, store, folder, variant)
    config_file = folder / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "gateway", "--config", str(config_file)]
    proc = start("gateway", command, folder, cwd=folder)
    stack.callback(stop, proc, 10)
    rest = f"http://{LOOPBACK}:{config['port']}"
    wait_until(proc, lambda: httpx.get(f"{rest}/readyz", timeout=2).status_code == 200, 90)
    return Running(rest, f"{LOOPBACK}:{config['grpc_port']}", _pid(proc))


def start_floor(upstream: str, run_dir: Path, name: str, stack: ExitStack) -> Running:
    """Start `benchmarks.floor_proxy` in front of `upstream` (stopped when `stack` closes)."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.floor_proxy", "--upstream", upstream]
    proc = start(name, [*command, "--port", str(port)], run_dir, cwd=run_dir)
    stack.callback(stop, proc, 10)
    wait_until(proc, lambda: port_open(port), 30)
    return Running(f"http://{LOOPBACK}:{port}", None, _pid(proc))


@contextmanager
def bench_processes(
    state: RunState, store: Path, run_dir: Path, variants: list[GatewayVariant]
) -> Iterator[tuple[dict[str, Running], dict[GatewayVariant, Running]]]:
    """The floor proxies (`tf`, `torch`) and the gateway variants, stopped on exit."""
    with ExitStack() as stack:
        floors = {
            "tf": start_floor(state.tensorflow.rest, run_dir, "floor-tf", stack),
            "torch": start_floor(state.pytorch.inference, run_dir, "floor-torch", stack),
        }
        gateways = {v: start_variant(state, store, run_dir, v, stack) for v in variants}
        yield floors, gateways


def _pid(proc: ManagedProcess) -> int:
    pid = proc.pid()
    if pid is None:
        raise RuntimeError(f"{proc.name} is not running (see {proc.log_file})")
    return pid
