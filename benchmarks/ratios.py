"""The gateway benchmark's figures as ratios to the floor, and issue 15's goals.

Absolute figures on a shared 2-core machine move with whatever else runs; ratios of rows
measured interleaved in one run move much less, so the goals are stated as ratios:

- REST ingress throughput at the highest concurrency >= 0.9x the floor's, for both arms;
- gRPC ingress throughput >= 0.8x the REST ingress's;
- p50 at concurrency 1 <= the floor's p50 + 0.3 ms (the same as the added p50, since
  both go to the same backend);
- CPU per request <= 1.3x the floor's, at every concurrency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

REST_VS_FLOOR = 0.9
GRPC_VS_REST = 0.8
ADDED_P50_MS = 0.3
CPU_VS_FLOOR = 1.3


@dataclass(frozen=True)
class Row:
    """One (target, concurrency) pooled over rounds; `kind` is direct, floor or a gateway
    variant's label (`gw1`, `gw2/rest`)."""

    kind: str
    arm: str
    ingress: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_req: float

    @property
    def name(self) -> str:
        return f"{self.kind}{'-grpc' if self.ingress == 'grpc' else ''}->{self.arm}"

    @property
    def gateway(self) -> bool:
        return self.kind not in ("direct", "floor")


@dataclass(frozen=True)
class FloorRatio:
    """A gateway row against the floor and the direct row of the same arm and concurrency."""

    gateway: str
    arm: str
    ingress: str
    concurrency: int
    throughput_vs_floor: float
    p50_minus_floor_ms: float
    added_p50_ms: float  # versus the direct REST row
    cpu_vs_floor: float
    throughput_vs_rest: float | None  # gRPC rows: versus the same gateway's REST ingress


def floor_ratios(rows: list[Row]) -> list[FloorRatio]:
    """Every gateway row divided by the floor row of its arm and concurrency."""
    by_key = {(r.kind, r.arm, r.ingress, r.concurrency): r for r in rows}
    out = []
    for row in rows:
        floor = by_key.get(("floor", row.arm, "rest", row.concurrency))
        direct = by_key.get(("direct", row.arm, "rest", row.concurrency))
        if not row.gateway or floor is None or direct is None:
            continue
        rest = by_key.get((row.kind, row.arm, "rest", row.concurrency))
        versus_rest = row.throughput / rest.throughput if row.ingress == "grpc" and rest else None
        out.append(FloorRatio(
            gateway=row.kind, arm=row.arm, ingress=row.ingress, concurrency=row.concurrency,
            throughput_vs_floor=row.throughput / floor.throughput,
            p50_minus_floor_ms=row.p50_ms - floor.p50_ms,
            added_p50_ms=row.p50_ms - direct.p50_ms,
            cpu_vs_floor=row.cpu_ms_per_req / floor.cpu_ms_per_req,
            throughput_vs_rest=versus_rest,
        ))  # fmt: skip
    return out


def goals(ratios: list[FloorRatio]) -> list[tuple[str, str, float, bool]]:
    """(goal, row, figure, met) for every ratio a goal applies to."""
    top = max((r.concurrency for r in ratios), default=0)
    out = []
    for r in ratios:
        where = f"{r.gateway} {r.ingress}->{r.arm} c={r.concurrency}"
        if r.ingress == "rest" and r.concurrency == top:
            out.append((f"REST req/s >= {REST_VS_FLOOR}x floor", where, r.throughput_vs_floor,
                        r.throughput_vs_floor >= REST_VS_FLOOR))  # fmt: skip
        if r.throughput_vs_rest is not None and r.concurrency == top:
            out.append((f"gRPC req/s >= {GRPC_VS_REST}x REST", where, r.throughput_vs_rest,
                        r.throughput_vs_rest >= GRPC_VS_REST))  # fmt: skip
        if r.concurrency == 1:
            out.append((f"p50 - floor p50 <= {ADDED_P50_MS} ms", where, r.p50_minus_floor_ms,
                        r.p50_minus_floor_ms <= ADDED_P50_MS))  # fmt: skip
        out.append((f"CPU/req <= {CPU_VS_FLOOR}x floor", where, r.cpu_vs_floor,
                    r.cpu_vs_floor <= CPU_VS_FLOOR))  # fmt: skip
    return out


def print_report(console: Console, rows: list[Row]) -> None:
    """Every row, the ratios to the floor, and the goals."""
    table = Table(title="every row (exact latencies; CPU = the process tree's user + system)")
    for col in ("target", "conc", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req"):
        table.add_column(col, justify="right")
    for r in rows:
        cpu = f"{r.cpu_ms_per_req:.3f}" if r.kind != "direct" else ""
        table.add_row(r.name, str(r.concurrency), f"{r.throughput:.0f}", f"{r.p50_ms:.3f}",
                      f"{r.p99_ms:.3f}", str(r.errors), cpu)  # fmt: skip
    console.print(table)
    ratios = floor_ratios(rows)
    _print_ratios(console, ratios)
    _print_goals(console, goals(ratios))


def _print_ratios(console: Console, ratios: list[FloorRatio]) -> None:
    table = Table(title="gateway / floor (the pass-through proxy), same arm and concurrency")
    for col in ("gw", "in", "arm", "c", "req/s /floor", "p50-floor ms", "p50-direct ms",
                "CPU /floor", "gRPC/REST"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in ratios:
        versus = "" if r.throughput_vs_rest is None else f"{r.throughput_vs_rest:.2f}x"
        table.add_row(r.gateway, r.ingress, r.arm, str(r.concurrency),
                      f"{r.throughput_vs_floor:.2f}x", f"{r.p50_minus_floor_ms:+.3f}",
                      f"{r.added_p50_ms:+.3f}", f"{r.cpu_vs_floor:.2f}x", versus)  # fmt: skip
    console.print(table)


def _print_goals(console: Console, checks: list[tuple[str, str, float, bool]]) -> None:
    table = Table(title="issue 15 goals")
    for col in ("goal", "row", "figure", "met"):
        table.add_column(col, justify="right")
    for goal, where, figure, met in checks:
        table.add_row(goal, where, f"{figure:.2f}", "yes" if met else "[red]no[/red]")
    console.print(table)


def report_json(rows: list[Row]) -> dict[str, Any]:
    """Rows, ratios and goals as plain JSON."""
    ratios = floor_ratios(rows)
    return {
        "rows": [{"name": r.name, **asdict(r)} for r in rows],
        "ratios": [asdict(r) for r in ratios],
        "goals": [{"goal": g, "row": w, "figure": f, "met": m} for g, w, f, m in goals(ratios)],
    }
