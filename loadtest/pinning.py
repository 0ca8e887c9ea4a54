"""CPU pinning, so the load generator and the servers do not fight for the same core.

`--pin-cpus auto` gives the load generator the last quarter of the cores (at least one)
and the servers the rest, when there are at least two cores; `--pin-cpus 3/0-2` says it
explicitly (load generator / servers); `none` (the default) leaves scheduling alone.
Pinning a running stack changes its affinity only for the sweep: `restore` puts it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil


@dataclass
class Pinning:
    loadgen: set[int] | None = None
    servers: set[int] | None = None
    saved: dict[int, list[int]] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.loadgen or not self.servers:
            return "none"
        return f"load generator on CPUs {sorted(self.loadgen)}, servers on {sorted(self.servers)}"


def parse_cpus(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def plan_pinning(spec: str, available: list[int] | None = None) -> Pinning:
    """Turn `none`, `auto` or `LOADGEN/SERVERS` into a `Pinning`."""
    cpus = sorted(available if available is not None else psutil.Process().cpu_affinity() or [])
    if spec == "none" or len(cpus) < 2:
        return Pinning()
    if spec == "auto":
        count = max(1, len(cpus) // 4)
        return Pinning(set(cpus[-count:]), set(cpus[:-count]))
    loadgen, _, servers = spec.partition("/")
    if not servers:
        raise ValueError(f"--pin-cpus must be none, auto or LOADGEN/SERVERS, got '{spec}'")
    return Pinning(parse_cpus(loadgen), parse_cpus(servers))


def pin_servers(pinning: Pinning, pids: list[int]) -> None:
    """Pin each server process and its children; remember the old affinity."""
    if not pinning.servers:
        return
    for proc in _trees(pids):
        try:
            pinning.saved[proc.pid] = proc.cpu_affinity() or []
            proc.cpu_affinity(sorted(pinning.servers))
        except psutil.Error:
            continue


def restore(pinning: Pinning) -> None:
    for pid, cpus in pinning.saved.items():
        try:
            psutil.Process(pid).cpu_affinity(cpus)
        except psutil.Error:
            continue
    pinning.saved.clear()


def _trees(pids: list[int]) -> list[psutil.Process]:
    out: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            out += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return out
