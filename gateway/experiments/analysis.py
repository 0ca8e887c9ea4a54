"""An experiment's analysis: per-arm figures with intervals, arm-vs-arm tests, a verdict.

Deterministic for a given log (seeded bootstrap), so the same log gives the same JSON
before and after a restart, from SQLite or PostgreSQL. Offline:

    python -m gateway.experiments.analysis --db sqlite:///path/predictions.sqlite3 [--experiment ID]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gateway.experiments import statistics as st
from gateway.experiments.frame import LogFrame
from gateway.experiments.records import Event, Row
from gateway.experiments.stats import error_rate
from gateway.experiments.verdict import verdicts

ALPHA = 0.05
MIN_EFFECT = 0.02  # smallest accuracy difference worth sizing a test for
_PERCENTILES = (50, 90, 99)


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), digits)


def latency_figures(latency_ms: np.ndarray) -> dict[str, Any]:
    """p50/p90/p99 in ms, each with a 95% bootstrap interval."""
    figures: dict[str, Any] = {}
    for q in _PERCENTILES:
        value = float(np.percentile(latency_ms, q)) if latency_ms.size else math.nan
        low, high = st.bootstrap_percentile_ci(latency_ms, q, seed=q)
        figures[f"p{q}"] = {"value": _r(value, 4), "ci95": [_r(low, 4), _r(high, 4)]}
    return figures


def accuracy_figures(frame: LogFrame, served: np.ndarray) -> dict[str, Any]:
    """Online accuracy on the fed-back requests, with a Wilson interval."""
    labelled = served & (frame.status == 200) & ~np.isnan(frame.label) & ~np.isnan(frame.top1)
    n = int(labelled.sum())
    correct = int((frame.top1[labelled] == frame.label[labelled]).sum())
    low, high = st.wilson_interval(correct, n)
    value = correct / n if n else math.nan
    return {"labelled": n, "correct": correct, "value": _r(value), "ci95": [_r(low), _r(high)]}


def arm_figures(frame: LogFrame, arm: str) -> dict[str, Any]:
    served = frame.served(arm)
    ok = served & (frame.status == 200)
    requests, errors = int(served.sum()), int((served & (frame.status != 200)).sum())
    shadow = frame.shadowed(arm) & ~np.isnan(frame.agreed)
    compared = int(shadow.sum())
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": error_rate(errors, requests),
        "latency_ms": latency_figures(frame.latency_ms[ok]),
        "accuracy": accuracy_figures(frame, served),
        "shadow": {
            "compared": compared,
            "agreement": _r(float(frame.agreed[shadow].mean()) if compared else math.nan),
        },
    }


def compare_latency(frame: LogFrame, a: str, b: str) -> dict[str, Any]:
    """p50 of b minus p50 of a (bootstrap interval) and a Mann-Whitney U test."""
    la = frame.latency_ms[frame.served(a) & (frame.status == 200)]
    lb = frame.latency_ms[frame.served(b) & (frame.status == 200)]
    if la.size == 0 or lb.size == 0:
        return {"p50_diff_ms": None, "ci95": [None, None], "mann_whitney_u": None, "p_value": None}
    low, high = st.bootstrap_difference_ci(la, lb, 50, seed=7)
    u, p = st.mann_whitney_u(la, lb)
    diff = float(np.percentile(lb, 50) - np.percentile(la, 50))
    return {"p50_diff_ms": _r(diff, 4), "ci95": [_r(low, 4), _r(high, 4)],
            "mann_whitney_u": _r(u), "p_value": _r(p, 8)}  # fmt: skip


def compare_accuracy(acc_a: dict[str, Any], acc_b: dict[str, Any]) -> dict[str, Any]:
    """Two-proportion z test, and the labelled requests per arm a decision needs."""
    ka, na, kb, nb = acc_a["correct"], acc_a["labelled"], acc_b["correct"], acc_b["labelled"]
    z, p = st.two_proportion_z_test(ka, na, kb, nb)
    pa, pb = (ka / na if na else math.nan), (kb / nb if nb else math.nan)
    needed = None
    if na and nb:
        effect = max(abs(pb - pa), MIN_EFFECT)
        base = min(max((pa + pb) / 2, effect / 2), 1 - effect / 2)
        needed = st.sample_size_two_proportions(base - effect / 2, base + effect / 2, ALPHA)
    more = None if needed is None else max(0, needed - min(na, nb))
    return {"diff": _r(pb - pa), "z": _r(z), "p_value": _r(p, 8), "needed_per_arm": needed,
            "more_needed_per_arm": more}  # fmt: skip


def spec_from_events(events: Sequence[Event]) -> dict[str, Any] | None:
    """The experiment as defined (the latest `define` event) with later split changes."""
    spec: dict[str, Any] | None = None
    for event in events:
        if event.action == "define":
            spec = dict(event.details)
        elif event.action == "split" and spec is not None:
            spec["split"] = event.details["split"]
    return spec


def analyse(rows: Sequence[Row], events: Sequence[Event], experiment: str) -> dict[str, Any]:
    """The full analysis of one experiment from its log rows and events."""
    frame = LogFrame.from_rows(rows)
    spec = spec_from_events(events) or {}
    arms = [a["framework"] for a in spec.get("arms", [])] or frame.arms()
    per_arm = {arm: arm_figures(frame, arm) for arm in arms}
    size = (spec.get("stop") or {}).get("sample_size_per_arm")
    served = {arm: per_arm[arm]["requests"] - per_arm[arm]["errors"] for arm in arms}
    sample = {
        "size_per_arm": size,
        "served_per_arm": served,
        "reached": size is not None and all(v >= size for v in served.values()),
    }
    result: dict[str, Any] = {
        "experiment": experiment, "spec": spec, "sample": sample, "arms": per_arm
    }  # fmt: skip
    if len(arms) == 2:
        a, b = arms
        result["comparison"] = {
            "arms": [a, b],
            "latency": compare_latency(frame, a, b),
            "accuracy": compare_accuracy(per_arm[a]["accuracy"], per_arm[b]["accuracy"]),
        }
        result["verdict"] = verdicts(result, ALPHA)
    result["events"] = [event.as_dict() for event in events if event.action != "define"]
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Analyse an experiment from its prediction log.")
    parser.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--experiment", help="experiment id (default: every experiment)")
    args = parser.parse_args(argv)
    from pathlib import Path

    from gateway.experiments.store import open_store

    store = open_store(args.db, Path("."))
    try:
        every = sorted({event.experiment for event in store.events()})
        ids = [args.experiment] if args.experiment else every
        report = {i: analyse(store.records(i), store.events(i), i) for i in ids}
    finally:
        store.close()
    print(json.dumps(report if not args.experiment else report[args.experiment], indent=2))


if __name__ == "__main__":
    main()
