"""The sweep: every (model, target, protocol, load) cell, repeated and interleaved.

A load is a closed-loop concurrency (`--concurrency`) or an open-loop offered rate
(`--rate`, with `--arrival poisson|constant`); a sweep runs the concurrency levels, then
the rates.

`run_sweep` brings the stack up (or uses a running one), starts the nginx baseline,
runs each cell through `loadtest.cells` (reading the answering backend's metrics before and
after it, `loadtest.server_clock`, and the machine's CPU use), writes `raw/cells.csv` after
every cell, and always puts things back: the gateway's policies, nginx, CPU affinity, the
stack it started. Within a repeat, targets run back to back at each load level, and their
order rotates between repeats, so slow drift (heat, caches, other load) hits all alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from backends.torchserve.launcher import read_token
from dualserve.run_state import RunState
from dualserve.stack import StackPaths, down, read_state, up
from loadtest import nginx as nginx_mod
from loadtest.cells import CellResult, CellSpec, Timing, run_cell
from loadtest.environment import process_facts
from loadtest.pinning import Pinning, pin_servers, plan_pinning, restore
from loadtest.results import write_cells_csv
from loadtest.server_clock import read_clock, times
from loadtest.targets import (
    ALL_TARGETS,
    Target,
    capture_bodies,
    grpc_targets,
    payload_bodies,
    rest_targets,
)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SweepOptions:
    """What to measure; the defaults are `make demo`'s short sweep."""

    models: tuple[str, ...] = ("digits-mlp",)
    concurrency: tuple[int, ...] = (1, 16)
    protocols: tuple[str, ...] = ("rest", "grpc")
    targets: tuple[str, ...] = ALL_TARGETS
    repeats: int = 1
    timing: Timing = field(default_factory=Timing)
    workers: int = 1
    pin_cpus: str = "none"
    arrival: str = "poisson"  # the open-loop arrival process of the `rates` cells
    rates: tuple[float, ...] = ()  # offered requests/s; () for a closed-loop sweep
    max_in_flight: int = 64  # open loop: Locust users, each one connection
    slo_ms: float = 0.0  # p99 objective for goodput and saturation; 0: none
    model_store: Path = Path("model_store")
    run_dir: Path = Path("run")
    capture: Path | None = None  # REST bodies from a capture (issue 28) instead of the test set


@dataclass
class SweepRun:
    """What a sweep leaves for the report."""

    cells: list[CellResult]
    state: dict[str, Any]
    pinning: Pinning
    skipped: list[str]
    settings: dict[str, Any]
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)


def loads(options: SweepOptions) -> list[tuple[str, int, float]]:
    """(arrival, users, rate) of every load level: the concurrency levels, then the rates."""
    closed = [("closed", c, 0.0) for c in options.concurrency]
    return closed + [(options.arrival, options.max_in_flight, r) for r in options.rates]


def plan(options: SweepOptions, targets: dict[str, list[Target]]) -> list[CellSpec]:
    """The cells in run order: repeat > model > load > targets (rotated per repeat)."""
    cells = []
    for repeat in range(1, options.repeats + 1):
        for model in options.models:
            chosen = targets[model]
            shift = (repeat - 1) % max(len(chosen), 1)
            for arrival, users, rate in loads(options):
                for target in chosen[shift:] + chosen[:shift]:
                    cells.append(
                        CellSpec(
                            model,
                            target,
                            users,
                            repeat,
                            options.timing,
                            options.workers,
                            arrival=arrival,
                            rate=rate,
                            slo_ms=options.slo_ms,
                        )
                    )
    return cells


def select_targets(
    options: SweepOptions, state: RunState, model: str, nginx_url: str | None
) -> list[Target]:
    found = rest_targets(state, model, nginx_url) if "rest" in options.protocols else []
    if "grpc" in options.protocols:
        found += grpc_targets(state, model)
    return [t for t in found if t.name in options.targets]


def run_sweep(options: SweepOptions, out_dir: Path, progress: Progress) -> SweepRun:
    """Run every cell; raw results go to `out_dir/raw`."""
    raw = out_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        state = stack.enter_context(_stack(options, progress))
        servers = state.model_dump(mode="json")  # what ran, for the report (+ nginx)
        nginx_url, skipped = _start_nginx(stack, options, state, servers, raw / "nginx", progress)
        pinning = plan_pinning(options.pin_cpus)
        pin_servers(pinning, _server_pids(servers, stack))
        stack.callback(restore, pinning)
        stack.callback(_reset_policies, state, options.models)
        targets = {m: select_targets(options, state, m, nginx_url) for m in options.models}
        specs = plan(options, targets)
        cells = _run_cells(specs, state, raw, pinning, progress, options.capture)
        settings = _backend_settings(options.run_dir)
        processes = process_facts(_named_pids(servers))
    return SweepRun(cells, servers, pinning, skipped, settings, processes)


def _run_cells(
    specs: list[CellSpec],
    state: RunState,
    raw: Path,
    pinning: Pinning,
    progress: Progress,
    capture: Path | None = None,
) -> list[CellResult]:
    payloads = {m: _payload_file(raw, m, capture) for m in {s.model for s in specs}}
    cells: list[CellResult] = []
    for index, spec in enumerate(specs):
        target = spec.target
        load = f"c={spec.concurrency}" if spec.arrival == "closed" else f"{spec.rate:g}/s"
        progress(
            f"{spec.model} {target.name} {target.protocol} {load} r{spec.repeat}",
            index,
            len(specs),
        )
        if spec.target.route == "gateway":
            set_policy(state, spec.model, spec.target.policy)
        url = metrics_url(state, spec.target.framework)
        before = read_clock(url, spec.target.framework, spec.model)
        psutil.cpu_percent(None)  # starts the machine-wide CPU interval
        cell = run_cell(spec, raw / "cells" / spec.key, payloads[spec.model], pinning.loadgen)
        box_cpu = psutil.cpu_percent(None) / 100
        server = times(before, read_clock(url, spec.target.framework, spec.model))
        cells.append(
            replace(
                cell,
                box_cpu=box_cpu,
                server_ms=server.server_ms,
                server_queue_ms=server.queue_ms,
                server_compute_ms=server.compute_ms,
            )
        )
        write_cells_csv(raw / "cells.csv", cells)
    progress("done", len(specs), len(specs))
    return cells


def metrics_url(state: RunState, framework: str) -> str | None:
    """The metrics page of the backend that answers `framework`'s requests, if known."""
    if framework == "tensorflow":
        return state.tensorflow.metrics
    if framework == "pytorch":
        return state.pytorch.metrics
    return None


def set_policy(state: RunState, model: str, policy: dict[str, Any] | None) -> None:
    """Set the model's admin override through the gateway's admin API (PATCH), or clear
    it (`policy=None`: DELETE), so the configured or experiment policy is back in force."""
    token = state.gateway.admin_token_file.read_text().strip()
    url = f"{state.gateway.rest}/admin/models/{model}/policy"
    headers = {"Authorization": f"Bearer {token}"}
    if policy is None:
        reply = httpx.delete(url, headers=headers, timeout=10)
    else:
        body = {"policy": policy, "reason": "load-test target", "set_by": "loadtest"}
        reply = httpx.patch(url, json=body, headers=headers, timeout=10)
    if reply.status_code != 200:
        raise RuntimeError(f"setting {model}'s policy failed: {reply.status_code} {reply.text}")


def _reset_policies(state: RunState, models: tuple[str, ...]) -> None:
    """Leave no override behind: traffic after the sweep is the experiment's again."""
    for model in models:
        set_policy(state, model, None)


@contextmanager
def _stack(options: SweepOptions, progress: Progress) -> Iterator[RunState]:
    paths = StackPaths(options.model_store, options.run_dir.resolve())
    started_here = not paths.state_file.is_file()
    if started_here:
        progress("starting the stack (dualserve up)", 0, 1)
        up(paths)
    try:
        yield read_state(paths.run_dir)
    finally:
        if started_here:
            progress("stopping the stack (dualserve down)", 0, 1)
            down(paths)


def _start_nginx(
    stack: ExitStack,
    options: SweepOptions,
    state: RunState,
    servers: dict[str, Any],
    run_dir: Path,
    progress: Progress,
) -> tuple[str | None, list[str]]:
    if not any(t.startswith("nginx") for t in options.targets):
        return None, []
    run_dir.mkdir(parents=True, exist_ok=True)
    token = read_token(state.pytorch.token_file, "inference")
    try:
        proxy = nginx_mod.start_nginx(
            run_dir, state.tensorflow.rest, state.pytorch.inference, token
        )
    except nginx_mod.NginxError as exc:
        progress(f"nginx baseline skipped: {exc}", 0, 1)
        return None, [f"nginx baseline: {exc}"]
    stack.callback(nginx_mod.stop_nginx, proxy)
    stack.callback(lambda: None)
    servers.setdefault("nginx", {"rest": proxy.url, "pid": proxy.process.pid})
    return proxy.url, []


def _server_pids(servers: dict[str, Any], _: ExitStack) -> list[int]:
    return [int(v["pid"]) for v in servers.values() if isinstance(v, dict) and v.get("pid")]


def _named_pids(state: dict[str, Any]) -> dict[str, int]:
    return {k: int(v["pid"]) for k, v in state.items() if isinstance(v, dict) and v.get("pid")}


def _payload_file(raw: Path, model: str, capture: Path | None = None) -> Path:
    path = raw / f"payloads-{model}.json"
    bodies = payload_bodies(model) if capture is None else capture_bodies(capture, model)
    path.write_text(json.dumps(bodies))
    return path


def _backend_settings(run_dir: Path) -> dict[str, Any]:
    """The servers' resource settings as they ran (config files in the run dir)."""
    found: dict[str, Any] = {}
    for name in (
        "tfserving/batching_parameters.txt",
        "tfserving/tfserving.json",
        "torchserve/config.properties",
        "gateway/gateway.yaml",
    ):
        path = run_dir / name
        if path.is_file():
            found[name] = path.read_text()[:4000]
    return found
