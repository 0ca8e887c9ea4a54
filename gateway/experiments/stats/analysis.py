"""An experiment's analysis: decision, sample-ratio check, per-arm figures, differences
with confidence sequences and their history, and the paired shadow analysis.

Recomputable at any time from the log (no state, no randomness), so the same log gives
the same JSON before and after a restart, from SQLite or PostgreSQL, and may be read as
often as anyone likes: every difference is anytime-valid (`sequential`). Offline:

    python -m gateway.experiments.stats.analysis \
        --db sqlite:///path/predictions.sqlite3 [--experiment ID]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from gateway.experiments.log.frame import LogFrame
from gateway.experiments.log.records import Event, Row
from gateway.experiments.stats.decision import decide, margins_for
from gateway.experiments.stats.figures import arm_figures, differences, history
from gateway.experiments.stats.paired import paired_analysis
from gateway.experiments.stats.srm import srm_check
from gateway.settings import ExperimentSpec

_DEFAULTS = ExperimentSpec(id="defaults", model="any")  # for logs without a valid spec
_SPLIT_ACTIONS = ("split", "rollout")


def spec_from_events(events: Sequence[Event]) -> dict[str, Any] | None:
    """The experiment as defined (the latest `define` event) with later split changes."""
    spec: dict[str, Any] | None = None
    for event in events:
        if event.action == "define":
            spec = dict(event.details)
        elif event.action in _SPLIT_ACTIONS and spec is not None and "split" in event.details:
            spec["split"] = event.details["split"]
    return spec


def _validated(spec: dict[str, Any]) -> ExperimentSpec | None:
    try:
        return ExperimentSpec.model_validate(spec) if spec else None
    except ValidationError:  # an old or foreign define event: fall back to the log
        return None


def roles(spec: ExperimentSpec | None, frame: LogFrame) -> list[str]:
    """[control, candidate] from the spec, else the arms the log saw (sorted)."""
    if spec is not None and spec.control is not None and spec.candidate is not None:
        return [spec.control.framework, spec.candidate.framework]
    return frame.arms()


def sample(spec: dict[str, Any], per_arm: dict[str, Any]) -> dict[str, Any]:
    """The configured stop rule's progress (served requests per arm)."""
    size = (spec.get("stop") or {}).get("sample_size_per_arm")
    served = {arm: f["requests"] - f["errors"] for arm, f in per_arm.items()}
    reached = size is not None and all(v >= size for v in served.values())
    return {"size_per_arm": size, "served_per_arm": served, "reached": reached}


def analyse(rows: Sequence[Row], events: Sequence[Event], experiment: str) -> dict[str, Any]:
    """The full analysis of one experiment from its log rows and events.

    Returns:
        JSON-ready dict: experiment, spec, control, candidate, alpha, decision, srm, arms,
        differences, history, paired, sample, verdict (sentences), events, rollout.
    """
    frame = LogFrame.from_rows(rows)
    spec = spec_from_events(events) or {}
    model = _validated(spec)
    rules = model or _DEFAULTS  # alpha, margins, decision metrics
    arms = roles(model, frame)
    per_arm = {arm: arm_figures(frame, arm) for arm in arms}
    result: dict[str, Any] = {
        "experiment": experiment,
        "spec": spec,
        "alpha": rules.alpha,
        "control": arms[0] if len(arms) == 2 else None,
        "candidate": arms[1] if len(arms) == 2 else None,
        "sample": sample(spec, per_arm),
        "arms": per_arm,
    }
    if len(arms) == 2:
        result.update(_comparison(frame, events, arms, rules, per_arm))
    result["events"] = [event.as_dict() for event in events if event.action != "define"]
    result["rollout"] = [event.as_dict() for event in events if event.action == "rollout"]
    return result


def _comparison(
    frame: LogFrame,
    events: Sequence[Event],
    arms: list[str],
    rules: ExperimentSpec,
    per_arm: dict[str, Any],
) -> dict[str, Any]:
    control, candidate = arms
    alpha = rules.alpha
    diffs = differences(frame, control, candidate, alpha)
    srm = srm_check(frame, events, arms)
    limits = margins_for(rules.margins, per_arm[control]["latency_ms"]["p99"]["value"])
    decision = decide(diffs, limits, srm["flagged"], alpha, rules.decision_metrics)
    return {
        "decision": decision,
        "srm": srm,
        "differences": diffs,
        "history": history(frame, control, candidate, alpha),
        "paired": paired_analysis(frame, control, candidate),
        "verdict": [decision["sentence"]],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Analyse an experiment from its prediction log.")
    parser.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://...")
    parser.add_argument("--experiment", help="experiment id (default: every experiment)")
    args = parser.parse_args(argv)
    from pathlib import Path

    from gateway.experiments.log.store import open_store

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
