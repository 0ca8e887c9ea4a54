"""Goodput and saturation of each target, from open-loop (and closed-loop) summaries.

Goodput (NVIDIA perf_analyzer / AIPerf, inference-perf): the requests per second answered
within the latency objective (`--slo-p99-ms`). A target *saturates* at the lowest offered
rate where either its p99 crosses the objective or its throughput stops following the
offered rate (below `FOLLOW` of it: the rest queued, failed or was dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.results import Summary

FOLLOW = 0.9  # throughput below 90% of the offered rate: it no longer follows


@dataclass(frozen=True)
class Capacity:
    """One target's goodput and saturation point over the offered rates of a sweep.

    Attributes:
        best_goodput: the highest goodput over every measured level, requests/s (nan
            without an objective).
        best_goodput_load: where it was reached (`c=16`, `poisson 400/s`).
        saturation_rate: the lowest offered rate that saturated it, requests/s; None when
            none did or no open-loop cell ran.
        sustained_rate: the highest offered rate below that, requests/s; None if none.
        reason: why it counts as saturated at `saturation_rate` ("" when it did not).
    """

    model: str
    protocol: str
    target: str
    best_goodput: float
    best_goodput_load: str
    saturation_rate: float | None
    sustained_rate: float | None
    reason: str


def saturation_reason(s: Summary, slo_ms: float | None) -> str:
    """Why an open-loop cell counts as saturated (`served 471/s`, `p99 37 ms`), or ""."""
    if s.offered_rate > 0 and s.throughput < FOLLOW * s.offered_rate:
        return f"served {s.throughput:.0f}/s"
    if slo_ms and not math.isnan(s.p99_ms) and s.p99_ms > slo_ms:
        return f"p99 {s.p99_ms:.0f} ms"
    return ""


def saturation(rows: list[Summary], slo_ms: float | None) -> tuple[Summary | None, float | None]:
    """The first saturated open-loop row by offered rate, and the highest rate before it."""
    sustained: float | None = None
    for s in sorted((s for s in rows if s.open_loop), key=lambda s: s.offered_rate):
        if saturation_reason(s, slo_ms):
            return s, sustained
        sustained = s.offered_rate
    return None, sustained


def capacity(rows: list[Summary], slo_ms: float | None) -> Capacity:
    """The capacity of one target: `rows` are all its summaries (any arrival)."""
    first = rows[0]
    with_goodput = [s for s in rows if not math.isnan(s.goodput)]
    best = max(with_goodput, key=lambda s: s.goodput) if with_goodput else None
    hit, sustained = saturation(rows, slo_ms)
    return Capacity(
        model=first.model,
        protocol=first.protocol,
        target=first.target,
        best_goodput=best.goodput if best else math.nan,
        best_goodput_load=best.load if best else "",
        saturation_rate=hit.offered_rate if hit else None,
        sustained_rate=sustained,
        reason=saturation_reason(hit, slo_ms) if hit else "",
    )


def capacities(summaries: list[Summary], slo_ms: float | None) -> list[Capacity]:
    """One `Capacity` per (model, protocol, target), in sweep order."""
    groups: dict[tuple[str, str, str], list[Summary]] = {}
    for s in summaries:
        groups.setdefault((s.model, s.protocol, s.target), []).append(s)
    return [capacity(rows, slo_ms) for rows in groups.values()]


def saturation_text(c: Capacity) -> str:
    """`500/s (served 310/s)`, `not by 400/s`, or `n/a` (no open-loop cell)."""
    if c.saturation_rate is None:
        return f"not by {c.sustained_rate:g}/s" if c.sustained_rate is not None else "n/a"
    return f"{c.saturation_rate:g}/s ({c.reason})"
