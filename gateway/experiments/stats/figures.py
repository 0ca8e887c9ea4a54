"""An experiment's metrics from its log: per arm, and candidate minus control.

Every metric is per routing key (the unit of assignment) with a cluster-adjusted
interval (`clustered`); every difference also carries the anytime-valid confidence
sequence and p-value (`sequential`), so it may be read at any time.

Metrics (all "candidate - control"):
    accuracy: share of fed-back answers that were right (higher is better);
    error_rate: share of requests that failed (lower is better);
    latency_p50_ms, latency_p99_ms: successful requests' percentiles (lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gateway.experiments.log.frame import LogFrame
from gateway.experiments.stats import clustered as cl
from gateway.experiments.stats import sequential as sq

LOWER_IS_BETTER = {
    "accuracy": False,
    "error_rate": True,
    "latency_p50_ms": True,
    "latency_p99_ms": True,
}


def r(value: float | None, digits: int = 6) -> float | None:
    """JSON-friendly rounding: NaN becomes None."""
    return None if value is None or math.isnan(value) else round(float(value), digits)


def _per_unit(frame: LogFrame, mask: np.ndarray, values: np.ndarray) -> cl.Estimate:
    size = int(frame.unit.max()) + 1 if frame.unit.size else 0
    x = cl.unit_sums(frame.unit[mask], values[mask], size)
    y = cl.unit_sums(frame.unit[mask], np.ones(int(mask.sum())), size)
    return cl.ratio(x, y)


def labelled(frame: LogFrame, arm: str) -> np.ndarray:
    """Served, successful, fed-back requests of `arm`."""
    ok = frame.served(arm) & (frame.status == 200)
    return ok & ~np.isnan(frame.label) & ~np.isnan(frame.top1)


def estimates(frame: LogFrame, arm: str) -> dict[str, cl.Estimate]:
    """Each metric's cluster-adjusted estimate for one arm."""
    served = frame.served(arm)
    ok = served & (frame.status == 200)
    right = (frame.top1 == frame.label) * 1.0
    out = {  # proportions: never a zero standard error
        "accuracy": cl.binomial_floor(_per_unit(frame, labelled(frame, arm), right)),
        "error_rate": cl.binomial_floor(_per_unit(frame, served, (frame.status != 200) * 1.0)),
    }
    p50, p99 = cl.quantiles(frame.latency_ms[ok], frame.unit[ok], (0.5, 0.99))
    return {**out, "latency_p50_ms": p50[0], "latency_p99_ms": p99[0]}


def wilson_interval(successes: float, trials: float, z: float = cl.Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927), clipped to [0, 1].

    Args:
        successes: the count of successes; may be fractional (a design-effect count).
        trials: the count of trials, > 0; may be fractional.
        z: the normal quantile; the default gives a 95% interval.

    Returns:
        (low, high). The same formula as statsmodels'
        `proportion_confint(successes, trials, method="wilson")`, the test oracle here.
    """
    p, z2 = successes / trials, z * z
    denominator = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def proportion_interval(estimate: cl.Estimate) -> list[float | None]:
    """95% Wilson interval (`wilson_interval`) on the design-effect sample: n_eff =
    p(1-p)/se^2 (Kish), so correlated requests of one unit count less than independent ones."""
    p, n = estimate.value, float(estimate.n)
    if math.isnan(p) or n == 0:
        return [None, None]
    if 0 < p < 1 and not math.isnan(estimate.se) and estimate.se > 0:
        n = min(n, p * (1 - p) / estimate.se**2)
    low, high = wilson_interval(p * n, n)
    return [r(low), r(high)]


def latency_figures(frame: LogFrame, ok: np.ndarray) -> dict[str, Any]:
    """p50, p90, p99 (ms) of the `ok` requests with cluster-bootstrap 95% intervals."""
    found = cl.quantiles(frame.latency_ms[ok], frame.unit[ok], (0.5, 0.9, 0.99))
    return {
        f"p{q}": {"value": r(value.value, 4), "ci95": [r(low, 4), r(high, 4)]}
        for q, (value, low, high) in zip((50, 90, 99), found, strict=True)
    }


def arm_figures(frame: LogFrame, arm: str) -> dict[str, Any]:
    """Counts and each metric's value with its cluster-adjusted 95% interval."""
    served = frame.served(arm)
    est = estimates(frame, arm)
    acc = est["accuracy"]
    shadow = frame.shadowed(arm) & ~np.isnan(frame.agreed)
    agreement = float(frame.agreed[shadow].mean()) if shadow.any() else math.nan
    return {
        "requests": int(served.sum()),
        "units": int(np.unique(frame.unit[served]).size),
        "errors": int((served & (frame.status != 200)).sum()),
        "error_rate": {
            "value": r(est["error_rate"].value),
            "ci95": proportion_interval(est["error_rate"]),
        },
        "latency_ms": latency_figures(frame, served & (frame.status == 200)),
        "accuracy": {
            "labelled": acc.n,
            "correct": round(acc.value * acc.n) if acc.n else 0,
            "value": r(acc.value),
            "ci95": proportion_interval(acc),
        },
        "shadow": {
            "compared": int(shadow.sum()),
            "agreement": r(agreement),
        },
    }


def differences(frame: LogFrame, control: str, candidate: str, alpha: float) -> dict[str, Any]:
    """candidate - control per metric: estimate, 95% interval, confidence sequence, p-value."""
    return compare(estimates(frame, control), estimates(frame, candidate), alpha)


def compare(a: dict[str, cl.Estimate], b: dict[str, cl.Estimate], alpha: float) -> dict[str, Any]:
    """candidate (`b`) - control (`a`) per metric of two arms' `estimates`."""
    return {metric: _difference(cl.difference(a[metric], b[metric]), alpha) for metric in a}


def _difference(d: cl.Estimate, alpha: float) -> dict[str, Any]:
    low, high = sq.confidence_sequence(d.value, d.se, d.units, alpha)
    p = sq.always_valid_p(d.value, d.se, d.units, alpha)
    return {
        "estimate": r(d.value),
        "se": r(d.se),
        "units": d.units,
        "ci95": [r(d.value - cl.Z95 * d.se), r(d.value + cl.Z95 * d.se)],
        "sequence": [r(float(low)), r(float(high))],
        "p_value": r(float(p), 8),
    }


def history(
    frame: LogFrame,
    control: str,
    candidate: str,
    alpha: float,
    looks: int = 10,
    compute: Callable[[LogFrame, str, str, float], dict[str, Any]] = differences,
) -> list[dict[str, Any]]:
    """The differences as they stood after each of `looks` equal steps in units seen.

    Returns:
        [{"ts", "units", <metric>: {estimate, sequence, p_value}}] oldest first; each
        metric's `p_value` is the running minimum (the always-valid p-value so far).
    """
    served = frame.kind == "serve"
    if not served.any():
        return []
    first_seen = _first_seen(frame.unit[served], frame.ts[served])
    cut_ts = np.unique(np.quantile(first_seen, np.linspace(0, 1, looks + 1)[1:], method="higher"))
    return history_of(
        (
            float(ts),
            int((first_seen <= ts).sum()),
            compute(frame.select(frame.ts <= ts), control, candidate, alpha),
        )
        for ts in cut_ts
    )


def history_of(looks: Iterable[tuple[float, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The history from each look's (ts, units seen, `differences`), oldest first; each
    metric's `p_value` is the running minimum (the always-valid p-value so far)."""
    out: list[dict[str, Any]] = []
    least: dict[str, float] = {}
    for ts, units, diffs in looks:
        look: dict[str, Any] = {"ts": ts, "units": units}
        for metric, d in diffs.items():
            p = d["p_value"] if d["p_value"] is not None else math.nan
            least[metric] = float(np.fmin(least.get(metric, math.nan), p))
            look[metric] = {
                "estimate": d["estimate"],
                "sequence": d["sequence"],
                "p_value": r(least[metric], 8),
            }
        out.append(look)
    return out


def _first_seen(units: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Each unit's first timestamp."""
    first = np.full(int(units.max()) + 1, np.inf)
    np.minimum.at(first, units, ts)
    return first[np.isfinite(first)]
