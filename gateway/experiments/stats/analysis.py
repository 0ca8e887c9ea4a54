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
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from gateway.experiments.log.aggregates import ExperimentAggregates
from gateway.experiments.log.frame import LogFrame
from gateway.experiments.log.records import Event, Row
from gateway.experiments.stats.decision import decide, margins_for
from gateway.experiments.stats.figures import arm_figures, differences, history
from gateway.experiments.stats.paired import paired_analysis
from gateway.experiments.stats.srm import split_timeline, srm_check, srm_from_counts
from gateway.experiments.stats.summed import (
    arm_figures_of,
    differences_of,
    history_of_aggregates,
    paired_of,
)
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
    return roles_of(spec, None) or frame.arms()


def roles_of(spec: ExperimentSpec | None, served: list[str] | None) -> list[str] | None:
    """[control, candidate] from the spec, else `served` (the arms the log saw, sorted)."""
    if spec is not None and spec.control is not None and spec.candidate is not None:
        return [spec.control.framework, spec.candidate.framework]
    return served


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

    def comparison() -> dict[str, Any]:
        control, candidate = arms
        return _comparison(
            differences(frame, control, candidate, rules.alpha),
            srm_check(frame, events, arms),
            history(frame, control, candidate, rules.alpha),
            paired_analysis(frame, control, candidate),
            arms, rules, per_arm,
        )  # fmt: skip

    return _result(experiment, spec, rules, arms, per_arm, events, comparison)


def analyse_aggregates(
    aggregates: ExperimentAggregates, events: Sequence[Event], experiment: str
) -> dict[str, Any]:
    """`analyse` from the database's aggregates (`log.aggregates`) instead of rows: the
    same JSON, the same numbers (percentiles: see `log.aggregates` on the sample)."""
    spec = spec_from_events(events) or {}
    rules = _validated(spec) or _DEFAULTS
    arms = aggregates.arms
    per_arm = {arm: arm_figures_of(aggregates, arm) for arm in arms}

    def comparison() -> dict[str, Any]:
        control, candidate = arms
        return _comparison(
            differences_of(aggregates, control, candidate, rules.alpha),
            srm_from_counts(aggregates.first_served, events, arms),
            history_of_aggregates(aggregates, control, candidate, rules.alpha),
            paired_of(aggregates.paired),
            arms, rules, per_arm,
        )  # fmt: skip

    return _result(experiment, spec, rules, arms, per_arm, events, comparison)


def analyse_store(
    store: Any,
    experiment: str,
    since: float | None = None,
    events: Sequence[Event] | None = None,
) -> dict[str, Any]:
    """The analysis of one experiment read from its log's database as aggregates:
    `SqlLogStore.aggregates` for the spec's arms (rows at or after `since` when given),
    then `analyse_aggregates`. `events`: the experiment's (the control plane's), else the
    log database's. Memory: sized by units, never by requests."""
    events = store.events(experiment) if events is None else events
    model = _validated(spec_from_events(events) or {})
    timeline = [ts for ts, _ in split_timeline(events)]
    aggregates = store.aggregates(experiment, roles_of(model, None), timeline, since)
    return analyse_aggregates(aggregates, events, experiment)


def _result(
    experiment: str,
    spec: dict[str, Any],
    rules: ExperimentSpec,
    arms: list[str],
    per_arm: dict[str, Any],
    events: Sequence[Event],
    comparison: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
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
        result.update(comparison())
    result["events"] = [event.as_dict() for event in events if event.action != "define"]
    result["rollout"] = [event.as_dict() for event in events if event.action == "rollout"]
    return result


def _comparison(
    diffs: dict[str, Any],
    srm: dict[str, Any],
    looks: list[dict[str, Any]],
    paired: dict[str, Any] | None,
    arms: list[str],
    rules: ExperimentSpec,
    per_arm: dict[str, Any],
) -> dict[str, Any]:
    limits = margins_for(rules.margins, per_arm[arms[0]]["latency_ms"]["p99"]["value"])
    decision = decide(diffs, limits, srm["flagged"], rules.alpha, rules.decision_metrics)
    return {
        "decision": decision,
        "srm": srm,
        "differences": diffs,
        "history": looks,
        "paired": paired,
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
        report = {i: analyse_store(store, i) for i in ids}
    finally:
        store.close()
    print(json.dumps(report if not args.experiment else report[args.experiment], indent=2))


if __name__ == "__main__":
    main()
