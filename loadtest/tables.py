"""The report's tables, built from `Summary` rows only (so every number has one source).

The headline answers "which framework serves this model better, here": for each model,
protocol and route (direct, through the gateway, through nginx) and each framework, the
throughput at its best concurrency and p50/p99 at one fixed concurrency, with the
better framework of each pair marked and the confidence of the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.results import Summary, confidence

FRAMEWORKS = ("tensorflow", "pytorch")
ROUTES = ("direct", "gateway", "nginx")


@dataclass(frozen=True)
class HeadlineRow:
    model: str
    protocol: str
    route: str
    framework: str
    target: str
    best_throughput: float
    best_concurrency: int
    p50_ms: float
    p99_ms: float
    error_rate: float
    saturated: bool
    throughput_winner: bool = False
    latency_winner: bool = False
    throughput_confidence: str = ""
    latency_confidence: str = ""


def fixed_concurrency(summaries: list[Summary], wanted: int | None = None) -> int:
    """`wanted` if measured, else the largest measured level up to 16, else the smallest."""
    levels = sorted({s.concurrency for s in summaries})
    if wanted in levels:
        return int(wanted)  # type: ignore[arg-type]
    small = [c for c in levels if c <= 16]
    return small[-1] if small else levels[0]


def headline(summaries: list[Summary], fixed: int) -> list[HeadlineRow]:
    rows: list[HeadlineRow] = []
    keys = dict.fromkeys((s.model, s.protocol) for s in summaries)
    for model, protocol in keys:
        for route in ROUTES:
            pair = [_row(summaries, model, protocol, route, fw, fixed) for fw in FRAMEWORKS]
            rows += _mark_winners([r for r in pair if r is not None], summaries, fixed)
    return rows


def _row(
    summaries: list[Summary], model: str, protocol: str, route: str, framework: str, fixed: int
) -> HeadlineRow | None:
    mine = [
        s
        for s in summaries
        if (s.model, s.protocol, s.route, s.framework) == (model, protocol, route, framework)
    ]
    if not mine:
        return None
    best = max(mine, key=lambda s: -1.0 if math.isnan(s.throughput) else s.throughput)
    at_fixed = next((s for s in mine if s.concurrency == fixed), best)
    return HeadlineRow(
        model,
        protocol,
        route,
        framework,
        best.target,
        best.throughput,
        best.concurrency,
        at_fixed.p50_ms,
        at_fixed.p99_ms,
        max(s.error_rate for s in mine),
        any(s.saturated for s in mine),
    )


def _mark_winners(
    pair: list[HeadlineRow], summaries: list[Summary], fixed: int
) -> list[HeadlineRow]:
    if len(pair) != 2:
        return pair
    a, b = pair
    by_target = {
        (s.target, s.concurrency): s
        for s in summaries
        if s.model == a.model and s.protocol == a.protocol
    }
    tput = confidence(
        by_target[(a.target, a.best_concurrency)].throughput_samples,
        by_target[(b.target, b.best_concurrency)].throughput_samples,
    )
    fa, fb = by_target.get((a.target, fixed)), by_target.get((b.target, fixed))
    lat = confidence(fa.p50_samples, fb.p50_samples) if fa and fb else "n/a"
    a_fast, a_quick = a.best_throughput >= b.best_throughput, a.p50_ms <= b.p50_ms
    return [
        _with(a, a_fast, a_quick, tput, lat),
        _with(b, not a_fast, not a_quick, tput, lat),
    ]


def _with(row: HeadlineRow, fast: bool, quick: bool, tput: str, lat: str) -> HeadlineRow:
    from dataclasses import replace

    return replace(
        row,
        throughput_winner=fast,
        latency_winner=quick,
        throughput_confidence=tput,
        latency_confidence=lat,
    )


@dataclass(frozen=True)
class Overhead:
    """What a proxy (gateway or nginx) adds over calling the backend directly."""

    model: str
    protocol: str
    proxy: str
    framework: str
    concurrency: int
    added_p50_ms: float
    added_p99_ms: float
    throughput_ratio: float


def overheads(summaries: list[Summary]) -> list[Overhead]:
    direct = {
        (s.model, s.protocol, s.framework, s.concurrency): s
        for s in summaries
        if s.route == "direct"
    }
    out = []
    for s in summaries:
        base = direct.get((s.model, s.protocol, s.framework, s.concurrency))
        if s.route == "direct" or s.framework == "mixed" or base is None:
            continue
        ratio = s.throughput / base.throughput if base.throughput else math.nan
        out.append(
            Overhead(
                s.model,
                s.protocol,
                s.route,
                s.framework,
                s.concurrency,
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


def headline_cells(row: HeadlineRow) -> list[str]:
    """One headline row as display strings (shared by the HTML, Markdown and console)."""
    star = " ★" if row.throughput_winner else ""
    lat_star = " ★" if row.latency_winner else ""
    flag = " ⚠ load generator saturated" if row.saturated else ""
    return [
        row.model,
        row.protocol,
        row.route,
        row.framework,
        f"{fmt_rate(row.best_throughput)}{star}",
        str(row.best_concurrency),
        f"{fmt_ms(row.p50_ms)}{lat_star}",
        fmt_ms(row.p99_ms),
        f"{100 * row.error_rate:.2f}%{flag}",
        row.throughput_confidence,
        row.latency_confidence,
    ]


HEADLINE_COLUMNS = [
    "model",
    "protocol",
    "route",
    "framework",
    "best req/s",
    "at c",
    "p50 ms",
    "p99 ms",
    "errors",
    "req/s diff confidence",
    "p50 diff confidence",
]
