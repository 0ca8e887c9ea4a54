"""The report's tables, built from `Summary` rows only (so every number has one source).

The headline has one row per model, protocol and target (direct, gateway pinned, 50/50,
shadow, nginx): throughput at its best load, p50/p99 (and the p99 corrected for
coordinated omission) at one fixed load, goodput within the objective and the offered
rate where it saturated. The two frameworks of each route (direct, through the gateway,
through nginx) form a pair: the better one is marked only when the difference is shown
(Welch's t-test over the repeats significant and at least the practical threshold,
`loadtest.report.significance.decide`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from loadtest.report.capacity import Capacity, capacities, saturation_text
from loadtest.report.significance import confidence, decide
from loadtest.results import Summary

FRAMEWORKS = ("tensorflow", "pytorch")
ROUTES = ("direct", "gateway", "nginx")


@dataclass(frozen=True)
class HeadlineRow:
    """One target of one model and protocol; latencies in ms, rates in requests/s."""

    model: str
    protocol: str
    route: str
    framework: str
    target: str
    best_throughput: float
    best_load: str
    p50_ms: float
    p99_ms: float
    p99_corrected_ms: float
    error_rate: float
    dropped: int
    saturated: bool
    capacity: Capacity
    throughput_winner: bool = False
    latency_winner: bool = False
    throughput_confidence: str = ""
    latency_confidence: str = ""
    throughput_verdict: str = ""
    latency_verdict: str = ""


def primary(summaries: list[Summary]) -> list[Summary]:
    """The rows the headline's load levels come from: closed-loop ones when the sweep has
    any, else the open-loop ones."""
    closed = [s for s in summaries if not s.open_loop]
    return closed or summaries


def fixed_concurrency(summaries: list[Summary], wanted: int | None = None) -> int:
    """`wanted` if measured, else the largest measured level up to 16, else the smallest."""
    levels = sorted({s.concurrency for s in primary(summaries)})
    if not levels:
        return 0
    if wanted in levels:
        return int(wanted)  # type: ignore[arg-type]
    small = [c for c in levels if c <= 16]
    return small[-1] if small else levels[0]


def at_fixed(rows: list[Summary], fixed: int) -> Summary | None:
    """The row at the fixed load: closed loop at `fixed` users, else the lowest rate."""
    closed = [s for s in rows if not s.open_loop and s.concurrency == fixed]
    if closed:
        return closed[0]
    opened = sorted((s for s in rows if s.open_loop), key=lambda s: s.offered_rate)
    return opened[0] if opened else None


def headline(
    summaries: list[Summary], fixed: int, slo_ms: float | None = None
) -> list[HeadlineRow]:
    """Every target of every (model, protocol), the pairs' winners marked."""
    caps = {(c.model, c.protocol, c.target): c for c in capacities(summaries, slo_ms)}
    rows: list[HeadlineRow] = []
    for model, protocol in dict.fromkeys((s.model, s.protocol) for s in summaries):
        mine = [s for s in summaries if (s.model, s.protocol) == (model, protocol)]
        found = {t: _row(mine, t, fixed, caps[(model, protocol, t)]) for t in _targets(mine)}
        for route in ROUTES:
            pair = [r for r in found.values() if r.route == route and r.framework in FRAMEWORKS]
            for row in _mark_winners(pair, mine, fixed):
                found[row.target] = row
        rows += found.values()
    return rows


def _targets(rows: list[Summary]) -> list[str]:
    return list(dict.fromkeys(s.target for s in rows))


def _row(mine: list[Summary], target: str, fixed: int, cap: Capacity) -> HeadlineRow:
    rows = [s for s in mine if s.target == target]
    best = max(primary(rows), key=lambda s: -1.0 if math.isnan(s.throughput) else s.throughput)
    here = at_fixed(rows, fixed) or best
    return HeadlineRow(
        model=best.model,
        protocol=best.protocol,
        route=best.route,
        framework=best.framework,
        target=target,
        best_throughput=best.throughput,
        best_load=best.load,
        p50_ms=here.p50_ms,
        p99_ms=here.p99_ms,
        p99_corrected_ms=here.p99_corrected_ms,
        error_rate=max(s.error_rate for s in rows),
        dropped=sum(s.dropped for s in rows),
        saturated=any(s.saturated for s in rows),
        capacity=cap,
    )


def _mark_winners(pair: list[HeadlineRow], mine: list[Summary], fixed: int) -> list[HeadlineRow]:
    """Mark the better of a pair only where `significance.decide` shows a difference."""
    if len(pair) != 2:
        return pair
    a, b = pair
    by_load = {(s.target, s.load): s for s in mine}
    sa, sb = by_load[(a.target, a.best_load)], by_load[(b.target, b.best_load)]
    tput = decide(sa.throughput_samples, sb.throughput_samples, higher_is_better=True)
    fa = at_fixed([s for s in mine if s.target == a.target], fixed)
    fb = at_fixed([s for s in mine if s.target == b.target], fixed)
    lat = decide(fa.p50_samples, fb.p50_samples, higher_is_better=False) if fa and fb else None
    lat_shown, lat_b = (lat.shown, lat.b_better) if lat else (False, False)

    def mark(row: HeadlineRow, fast: bool, quick: bool) -> HeadlineRow:
        return replace(
            row,
            throughput_winner=fast,
            latency_winner=quick,
            throughput_confidence=confidence(sa.throughput_samples, sb.throughput_samples),
            latency_confidence=confidence(fa.p50_samples, fb.p50_samples) if fa and fb else "n/a",
            throughput_verdict=tput.text,
            latency_verdict=lat.text if lat else "n/a",
        )

    return [
        mark(a, tput.shown and not tput.b_better, lat_shown and not lat_b),
        mark(b, tput.shown and tput.b_better, lat_shown and lat_b),
    ]


@dataclass(frozen=True)
class Overhead:
    """What a proxy (gateway or nginx) adds over calling the backend directly."""

    model: str
    protocol: str
    proxy: str
    framework: str
    load: str
    added_p50_ms: float
    added_p99_ms: float
    throughput_ratio: float


def overheads(summaries: list[Summary]) -> list[Overhead]:
    direct = {
        (s.model, s.protocol, s.framework, s.load): s for s in summaries if s.route == "direct"
    }
    out = []
    for s in summaries:
        base = direct.get((s.model, s.protocol, s.framework, s.load))
        if s.route == "direct" or s.framework == "mixed" or base is None:
            continue
        ratio = s.throughput / base.throughput if base.throughput else math.nan
        out.append(
            Overhead(
                s.model,
                s.protocol,
                s.route,
                s.framework,
                s.load,
                s.p50_ms - base.p50_ms,
                s.p99_ms - base.p99_ms,
                ratio,
            )
        )
    return out


def fmt_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def fmt_ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def fmt_goodput(cap: Capacity) -> str:
    if math.isnan(cap.best_goodput):
        return "n/a"
    return f"{cap.best_goodput:.0f} ({cap.best_goodput_load})"


def headline_cells(row: HeadlineRow) -> list[str]:
    """One headline row as display strings (shared by the HTML, Markdown and console)."""
    star = " ★" if row.throughput_winner else ""
    lat_star = " ★" if row.latency_winner else ""
    flag = " ⚠ load generator saturated" if row.saturated else ""
    return [
        row.model,
        row.protocol,
        row.target,
        row.framework,
        f"{fmt_rate(row.best_throughput)}{star}",
        row.best_load,
        f"{fmt_ms(row.p50_ms)}{lat_star}",
        fmt_ms(row.p99_ms),
        fmt_ms(row.p99_corrected_ms),
        fmt_goodput(row.capacity),
        saturation_text(row.capacity),
        f"{100 * row.error_rate:.2f}%{flag}",
        str(row.dropped),
        row.throughput_confidence,
        row.latency_confidence,
        row.throughput_verdict,
    ]


HEADLINE_COLUMNS = [
    "model",
    "protocol",
    "target",
    "framework",
    "best req/s",
    "at",
    "p50 ms",
    "p99 ms",
    "p99 ms corrected",
    "goodput req/s",
    "saturates",
    "errors",
    "dropped",
    "req/s diff confidence",
    "p50 diff confidence",
    "req/s verdict",
]
