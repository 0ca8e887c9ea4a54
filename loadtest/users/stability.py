"""When a cell has run long enough, and whether the load generator was the bottleneck.

The stability rule is Triton perf_analyzer's: a measurement is stable when the last
`windows` consecutive windows' throughput and mean latency each lie within
`tolerance` (10%) of their own mean. A cell stops at the first stable point after its
minimum duration, or at its time cap (then it is reported as "capped", not stable).
"""

from __future__ import annotations

from dataclasses import dataclass

SATURATION_SHARE = 0.9


@dataclass(frozen=True)
class Window:
    """One measurement window: how many requests ended in it and their summed latency."""

    seconds: float
    requests: int
    latency_ms_sum: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_latency_ms(self) -> float:
        return self.latency_ms_sum / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class StabilityRule:
    """`windows` consecutive windows of `window_s` seconds within `tolerance` of each other."""

    window_s: float = 1.0
    windows: int = 3
    tolerance: float = 0.10


def within(values: list[float], tolerance: float) -> bool:
    """True when every value lies within `tolerance` (a share) of the values' mean."""
    if not values:
        return False
    mean = sum(values) / len(values)
    if mean <= 0:
        return False
    return all(abs(v - mean) <= tolerance * mean for v in values)


def is_stable(history: list[Window], rule: StabilityRule) -> bool:
    """Apply the rule to the most recent windows of `history`."""
    recent = history[-rule.windows :]
    if len(recent) < rule.windows or any(w.requests == 0 for w in recent):
        return False
    return within([w.throughput for w in recent], rule.tolerance) and within(
        [w.mean_latency_ms for w in recent], rule.tolerance
    )


def should_stop(
    history: list[Window], measured_s: float, min_s: float, cap_s: float, rule: StabilityRule
) -> str | None:
    """ "stable" or "capped" when the cell should end now, else None."""
    if measured_s >= cap_s:
        return "capped"
    if measured_s >= min_s and is_stable(history, rule):
        return "stable"
    return None


def saturated(cpu_seconds: float, wall_seconds: float, share: float = SATURATION_SHARE) -> bool:
    """True when one load-generator process used more than `share` of a core.

    Locust users run in one OS thread per process, so one busy core is its ceiling: past
    it the numbers describe the load generator, not the server.
    """
    return wall_seconds > 0 and cpu_seconds / wall_seconds > share
