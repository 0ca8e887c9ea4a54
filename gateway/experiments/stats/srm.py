"""Sample-ratio mismatch: do the units per arm match the configured split?

A broken split (a router bug, a failing arm whose users retry elsewhere, a cache in
front of one arm) biases every other number, so no verdict is shown while this check
fires. As GrowthBook and Statsig do: Pearson's chi-square of the distinct routing keys
per arm against the split's expected counts, flagged at p < 0.001 (Fabijan et al.,
"Diagnosing Sample Ratio Mismatch in Online Controlled Experiments", KDD 2019).

The split may change during an experiment (a `split` or `rollout` event): each unit's
expected arm shares are the split in force when it was first seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gateway.experiments.log.frame import LogFrame
from gateway.experiments.log.records import Event
from gateway.experiments.stats.figures import r

THRESHOLD = 0.001
_SPLIT_ACTIONS = ("define", "split", "rollout")


def split_timeline(events: Sequence[Event]) -> list[tuple[float, dict[str, float]]]:
    """[(since ts, {arm: share})], oldest first, from the events that set a split."""
    timeline = []
    for event in events:
        split = event.details.get("split") if event.action in _SPLIT_ACTIONS else None
        if isinstance(split, Mapping) and sum(split.values()) > 0:
            timeline.append((event.ts, {str(k): float(v) for k, v in split.items()}))
    return sorted(timeline, key=lambda item: item[0])


def expected_shares(
    first_ts: np.ndarray, timeline: Sequence[tuple[float, dict[str, float]]], arms: Sequence[str]
) -> np.ndarray:
    """Per unit (row) and arm (column): the share the split in force gave that arm."""
    shares = np.array([[split.get(arm, 0.0) for arm in arms] for _, split in timeline])
    shares = shares / shares.sum(axis=1, keepdims=True)
    starts = np.array([ts for ts, _ in timeline])
    index = np.clip(np.searchsorted(starts, first_ts, side="right") - 1, 0, None)
    return np.asarray(shares[index], dtype=float)


def srm_check(frame: LogFrame, events: Sequence[Event], arms: Sequence[str]) -> dict[str, Any]:
    """Units per arm (each counted in the arm that first served it) against the split.

    Returns:
        {"units": {arm: n}, "expected": {arm: n}, "expected_shares": {arm: share},
         "p_value": float | None, "flagged": bool, "threshold": 0.001}
    """
    timeline = split_timeline(events)
    served = (frame.kind == "serve") & np.isin(frame.arm, list(arms))
    units, ts, arm = frame.unit[served], frame.ts[served], frame.arm[served]
    order = np.lexsort((ts, units))
    first = order[np.r_[True, units[order][1:] != units[order][:-1]]] if units.size else order
    observed = np.array([(arm[first] == a).sum() for a in arms], dtype=float)
    out: dict[str, Any] = {
        "units": dict(zip(arms, observed.astype(int).tolist(), strict=True)),
        "threshold": THRESHOLD,
    }
    if not timeline or observed.sum() < 2:
        return {**out, "expected": None, "expected_shares": None, "p_value": None, "flagged": False}
    expected = expected_shares(ts[first], timeline, arms).sum(axis=0)
    return {**out, **_chi_square(observed, expected, arms)}


def srm_from_counts(
    first_served: Mapping[str, Sequence[int]], events: Sequence[Event], arms: Sequence[str]
) -> dict[str, Any]:
    """`srm_check` from the database's counts: per arm, the units it served first, per
    segment of `split_timeline(events)` (one segment without a timeline). Each segment's
    units expect its split's shares, so the expected counts are sum(units x shares)."""
    timeline = split_timeline(events)
    counts = np.array([list(first_served[a]) for a in arms], dtype=float).reshape(len(arms), -1)
    observed = counts.sum(axis=1)
    out: dict[str, Any] = {
        "units": dict(zip(arms, observed.astype(int).tolist(), strict=True)),
        "threshold": THRESHOLD,
    }
    if not timeline or observed.sum() < 2:
        return {**out, "expected": None, "expected_shares": None, "p_value": None, "flagged": False}
    shares = np.array([[split.get(arm, 0.0) for arm in arms] for _, split in timeline])
    shares = shares / shares.sum(axis=1, keepdims=True)
    expected = counts.sum(axis=0) @ shares
    return {**out, **_chi_square(observed, expected, arms)}


def _chi_square(observed: np.ndarray, expected: np.ndarray, arms: Sequence[str]) -> dict[str, Any]:
    from scipy.stats import chisquare  # ~0.8 s: on the first analysis, not at start-up

    total = observed.sum()
    live = expected > 0
    if (observed[~live] > 0).any():  # units on an arm the split gave nothing
        p = 0.0
    elif live.sum() < 2:
        p = 1.0
    else:
        p = float(chisquare(observed[live], expected[live] * total / expected[live].sum()).pvalue)
    return {
        "expected": {a: r(e, 2) for a, e in zip(arms, expected, strict=True)},
        "expected_shares": {a: r(e / total, 4) for a, e in zip(arms, expected, strict=True)},
        "p_value": r(p, 10),
        "flagged": p < THRESHOLD,
    }
