"""The sweep's raw table (`cells.csv`, one row per cell and repeat) and its summary.

The report is built only from `cells.csv` as parsed by `read_cells_csv`, through
`summarise`; tests check the report against the same parse. Repeats are summarised by
their median, with the min-max spread kept beside it.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from loadtest.cells import CellResult

_INT_FIELDS = {"concurrency", "repeat", "requests", "errors", "locust_requests"}
_STR_FIELDS = {"model", "target", "protocol", "framework", "route", "verdict"}


@dataclass(frozen=True)
class Summary:
    """One (model, target, protocol, concurrency) over its repeats."""

    model: str
    target: str
    protocol: str
    framework: str
    route: str
    concurrency: int
    repeats: int
    throughput: float
    throughput_min: float
    throughput_max: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int
    error_rate: float
    loadgen_cpu: float
    saturated: bool
    verdicts: str
    throughput_samples: tuple[float, ...]
    p50_samples: tuple[float, ...]


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


def summarise(cells: list[CellResult]) -> list[Summary]:
    """Group the repeats of each (model, target, protocol, concurrency), in sweep order."""
    groups: dict[tuple[str, str, str, int], list[CellResult]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.target, cell.protocol, cell.concurrency), []).append(
            cell
        )
    return [_summary(group) for group in groups.values()]


def _summary(group: list[CellResult]) -> Summary:
    first = group[0]
    tput = [c.throughput for c in group]
    requests, errors = sum(c.requests for c in group), sum(c.errors for c in group)
    return Summary(
        first.model,
        first.target,
        first.protocol,
        first.framework,
        first.route,
        first.concurrency,
        len(group),
        _median(tput),
        min(tput),
        max(tput),
        _median([c.p50_ms for c in group]),
        _median([c.p90_ms for c in group]),
        _median([c.p99_ms for c in group]),
        max(c.max_ms for c in group),
        requests,
        errors,
        errors / (requests + errors) if requests + errors else 0.0,
        max(c.loadgen_cpu for c in group),
        any(c.saturated for c in group),
        ",".join(sorted({c.verdict for c in group})),
        tuple(tput),
        tuple(c.p50_ms for c in group),
    )


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def confidence(a: tuple[float, ...], b: tuple[float, ...], relative_noise: float = 0.10) -> str:
    """How sure the difference between two sets of repeat measurements is.

    With two or more repeats on each side: Welch's statistic over the repeats (`high`
    past 3, `medium` past 2, else `low`). With one run: `medium` when the medians differ
    by more than twice the stability tolerance, else `low`, marked "(1 run)".
    """
    ma, mb = _median(list(a)), _median(list(b))
    if math.isnan(ma) or math.isnan(mb):
        return "n/a"
    if len(a) < 2 or len(b) < 2:
        rel = abs(ma - mb) / max(abs(ma), abs(mb), 1e-12)
        return ("medium" if rel > 2 * relative_noise else "low") + " (1 run)"
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    z = abs(ma - mb) / se if se > 0 else math.inf
    return "high" if z > 3 else "medium" if z > 2 else "low"
