"""The sweep's raw table (`cells.csv`, one row per cell and repeat) and its summary.

The report is built only from `cells.csv` as parsed by `read_cells_csv`, through
`summarise`; tests check the report against the same parse. Repeats are summarised by
their median, with the min-max spread and the per-repeat samples (for Welch's test,
`loadtest.report.significance`) kept beside it.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from loadtest.cells import CellResult

_INT_FIELDS = {"concurrency", "repeat", "requests", "errors", "locust_requests", "dropped"}
_STR_FIELDS = {"model", "target", "protocol", "framework", "route", "verdict", "arrival"}
GroupKey = tuple[str, str, str, str, int, float]


@dataclass(frozen=True)
class Summary:
    """One (model, target, protocol, load) over its repeats: medians, with spread and samples.

    The load is closed loop at `concurrency` users (`arrival` "closed") or open loop at
    `offered_rate` requests/s (`arrival` poisson or constant; `concurrency` is then the
    most requests in flight). Latencies in ms, rates in requests/s. Where the time went
    (medians, nan when unknown): `mean_ms` the client's mean latency; `gateway_ms` and
    `upstream_ms` the gateway's `Server-Timing` means; `server_ms`, `server_queue_ms`,
    `server_compute_ms` the backend's own (`loadtest.server_clock`); `box_cpu` the
    machine's highest CPU use over the repeats (0-1).
    """

    model: str
    target: str
    protocol: str
    framework: str
    route: str
    arrival: str
    concurrency: int
    offered_rate: float
    repeats: int
    throughput: float
    throughput_min: float
    throughput_max: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_corrected_ms: float
    max_ms: float
    goodput: float
    requests: int
    errors: int
    dropped: int
    error_rate: float
    dropped_rate: float
    loadgen_cpu: float
    saturated: bool
    verdicts: str
    throughput_samples: tuple[float, ...]
    p50_samples: tuple[float, ...]
    p99_samples: tuple[float, ...]
    goodput_samples: tuple[float, ...]
    mean_ms: float = math.nan
    gateway_ms: float = math.nan
    upstream_ms: float = math.nan
    server_ms: float = math.nan
    server_queue_ms: float = math.nan
    server_compute_ms: float = math.nan
    box_cpu: float = math.nan

    @property
    def open_loop(self) -> bool:
        return self.arrival != "closed"

    @property
    def load(self) -> str:
        """`c=16` or `poisson 400/s`."""
        if self.open_loop:
            return f"{self.arrival} {self.offered_rate:g}/s"
        return f"c={self.concurrency}"


def write_cells_csv(path: Path, cells: list[CellResult]) -> None:
    names = [f.name for f in fields(CellResult)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for cell in cells:
            writer.writerow(asdict(cell))


def read_cells_csv(path: Path) -> list[CellResult]:
    with path.open(newline="") as handle:
        return [_parse_row(row) for row in csv.DictReader(handle)]


def _parse_row(row: dict[str, str]) -> CellResult:
    values: dict[str, object] = {}
    for name, raw in row.items():
        if name in _STR_FIELDS:
            values[name] = raw
        elif name in _INT_FIELDS:
            values[name] = int(raw)
        elif name == "saturated":
            values[name] = raw == "True"
        else:
            values[name] = float(raw)
    return CellResult(**values)  # type: ignore[arg-type]


def group_key(cell: CellResult) -> GroupKey:
    """(model, target, protocol, arrival, concurrency, offered rate): what repeats share."""
    return (
        cell.model,
        cell.target,
        cell.protocol,
        cell.arrival,
        cell.concurrency,
        cell.offered_rate,
    )


def summarise(cells: list[CellResult]) -> list[Summary]:
    """Group the repeats of each cell, in sweep order."""
    groups: dict[GroupKey, list[CellResult]] = {}
    for cell in cells:
        groups.setdefault(group_key(cell), []).append(cell)
    return [_summary(group) for group in groups.values()]


def _summary(group: list[CellResult]) -> Summary:
    first = group[0]
    tput = [c.throughput for c in group]
    requests, errors = sum(c.requests for c in group), sum(c.errors for c in group)
    dropped = sum(c.dropped for c in group)
    return Summary(
        model=first.model,
        target=first.target,
        protocol=first.protocol,
        framework=first.framework,
        route=first.route,
        arrival=first.arrival,
        concurrency=first.concurrency,
        offered_rate=first.offered_rate,
        repeats=len(group),
        throughput=_median(tput),
        throughput_min=min(tput),
        throughput_max=max(tput),
        p50_ms=_median([c.p50_ms for c in group]),
        p90_ms=_median([c.p90_ms for c in group]),
        p99_ms=_median([c.p99_ms for c in group]),
        p99_corrected_ms=_median([c.p99_corrected_ms for c in group]),
        max_ms=max(c.max_ms for c in group),
        goodput=_median([c.goodput for c in group]),
        requests=requests,
        errors=errors,
        dropped=dropped,
        error_rate=errors / (requests + errors) if requests + errors else 0.0,
        dropped_rate=dropped / (requests + errors + dropped) if dropped else 0.0,
        loadgen_cpu=max(c.loadgen_cpu for c in group),
        saturated=any(c.saturated for c in group),
        verdicts=",".join(sorted({c.verdict for c in group})),
        throughput_samples=tuple(tput),
        p50_samples=tuple(c.p50_ms for c in group),
        p99_samples=tuple(c.p99_ms for c in group),
        goodput_samples=tuple(c.goodput for c in group),
        mean_ms=_median([c.mean_ms for c in group]),
        gateway_ms=_median([c.gateway_ms for c in group]),
        upstream_ms=_median([c.upstream_ms for c in group]),
        server_ms=_median([c.server_ms for c in group]),
        server_queue_ms=_median([c.server_queue_ms for c in group]),
        server_compute_ms=_median([c.server_compute_ms for c in group]),
        box_cpu=max((c.box_cpu for c in group if not math.isnan(c.box_cpu)), default=math.nan),
    )


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan
