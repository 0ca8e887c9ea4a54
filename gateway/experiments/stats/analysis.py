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
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.experiments.log.aggregates import LOOKS, ExperimentAggregates
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
    """[control, *candidates] from the spec, else the arms the log saw (sorted: the first
    is taken as the control)."""
    return roles_of(spec, None) or frame.arms()


def roles_of(spec: ExperimentSpec | None, served: list[str] | None) -> list[str] | None:
    """[control, *candidates] from the spec, else `served` (the arms the log saw, sorted);
    the one place arm roles come from, for rows and aggregates alike."""
    if spec is not None:
        return spec.roles
    return served


def corrected_alpha(alpha: float, candidates: int) -> float:
    """Each comparison's error rate so that the family's stays `alpha`: Bonferroni,
    `alpha / candidates`.

    Why Bonferroni and not Holm: every decision reads anytime-valid confidence sequences
    against non-inferiority margins (`decision`), not only p-values against zero.
    Bonferroni's union bound makes the sequences of all candidates hold together, at
    every stopping time (each holds uniformly over time at `alpha / k`, so all do at
    `alpha`); Holm's step-down is more powerful for rejecting zero differences but gives
    no simultaneous intervals to compare with margins, and its order would change as the
    p-values move while the experiment runs. With one candidate nothing changes.
    (Dunnett's many-to-one test is sharper still but is fixed-sample, not anytime-valid.)
    """
    return alpha / max(1, candidates)


def sample(spec: dict[str, Any], per_arm: dict[str, Any]) -> dict[str, Any]:
    """The configured stop rule's progress (served requests per arm)."""
    size = (spec.get("stop") or {}).get("sample_size_per_arm")
    served = {arm: f["requests"] - f["errors"] for arm, f in per_arm.items()}
    reached = size is not None and all(v >= size for v in served.values())
    return {"size_per_arm": size, "served_per_arm": served, "reached": reached}


def analyse(rows: Sequence[Row], events: Sequence[Event], experiment: str) -> dict[str, Any]:
    """The full analysis of one experiment from its log rows and events.

    Every candidate is compared with the control (`comparisons`, by candidate arm name),
    each at `corrected_alpha` (Bonferroni over the candidates), so the chance that any
    comparison's decision is wrong stays `alpha`. The top-level `candidate`, `decision`,
    `differences`, `history`, `paired` and `verdict` are those of the candidate a rollout
    moves (the first candidate unless `rollout.candidate` names one), as for two arms.

    Returns:
        JSON-ready dict: experiment, spec, control, candidate, candidates, alpha,
        comparison_alpha, correction, decision, srm, arms, arm_specs (what each arm serves,
        from the spec), differences, history, paired,
        comparisons, sample, verdict (sentences, one per candidate), events, rollout.
    """
    frame = LogFrame.from_rows(rows)
    spec = spec_from_events(events) or {}
    model = _validated(spec)
    arms = roles(model, frame)
    source = Figures(
        per_arm=lambda arm: arm_figures(frame, arm),
        differences=lambda control, candidate, alpha: differences(frame, control, candidate, alpha),
        history=lambda control, candidate, alpha: history(frame, control, candidate, alpha),
        paired=lambda control, candidate: paired_analysis(frame, control, candidate),
        srm=lambda chosen: srm_check(frame, events, chosen),
    )
    return _result(experiment, spec, model, arms, events, source)


def analyse_aggregates(
    aggregates: ExperimentAggregates, events: Sequence[Event], experiment: str
) -> dict[str, Any]:
    """`analyse` from the database's aggregates (`log.aggregates`) instead of rows: the
    same JSON, the same numbers (percentiles: see `log.aggregates` on the sample)."""
    spec = spec_from_events(events) or {}
    model = _validated(spec)
    source = Figures(
        per_arm=lambda arm: arm_figures_of(aggregates, arm),
        differences=lambda control, candidate, alpha: differences_of(
            aggregates, control, candidate, alpha
        ),
        history=lambda control, candidate, alpha: history_of_aggregates(
            aggregates, control, candidate, alpha
        ),
        paired=lambda control, candidate: paired_of(aggregates.paired.get(candidate)),
        srm=lambda chosen: srm_from_counts(aggregates.first_served, events, chosen),
    )
    result = _result(experiment, spec, model, aggregates.arms, events, source)
    if aggregates.upto is not None:
        result["upto"] = aggregates.upto  # an incremental look: the rows logged up to it
    return result


def analyse_store(
    store: Any,
    experiment: str,
    since: float | None = None,
    events: Sequence[Event] | None = None,
    history: bool = True,
) -> dict[str, Any]:
    """The analysis of one experiment read from its log's database as aggregates:
    `SqlLogStore.aggregates` for the spec's arms (rows at or after `since` when given),
    then `analyse_aggregates`. `events`: the experiment's (the control plane's), else the
    log database's. `history` False: no `history` looks (empty lists; what the rollout
    controller reads is the same, at less cost): the rollout controller's look, read
    incrementally (`SqlLogStore.step_aggregates`: what arrived since the store's last look
    at the same step, up to the database's now less `LOOK_LAG_S`; `upto` in the result;
    `paired` None). Memory: sized by units, never by requests."""
    events = store.events(experiment) if events is None else events
    model = _validated(spec_from_events(events) or {})
    timeline = [ts for ts, _ in split_timeline(events)]
    arms = roles_of(model, None)
    if history:
        aggregates = store.aggregates(experiment, arms, timeline, since, LOOKS)
    else:
        aggregates = store.step_aggregates(experiment, arms, timeline, since)
    return analyse_aggregates(aggregates, events, experiment)


@dataclass(frozen=True)
class Figures:
    """What the analysis reads of a log, from its rows (`analyse`) or from the database's
    aggregates (`analyse_aggregates`): one arm's figures; a candidate's differences from
    the control and their history at a given alpha; the paired shadow analysis; the SRM
    check over the arms."""

    per_arm: Callable[[str], dict[str, Any]]
    differences: Callable[[str, str, float], dict[str, Any]]
    history: Callable[[str, str, float], list[dict[str, Any]]]
    paired: Callable[[str, str], dict[str, Any] | None]
    srm: Callable[[list[str]], dict[str, Any]]


def _result(
    experiment: str,
    spec: dict[str, Any],
    model: ExperimentSpec | None,
    arms: list[str],
    events: Sequence[Event],
    source: Figures,
) -> dict[str, Any]:
    rules = model or _DEFAULTS  # alpha, margins, decision metrics
    per_arm = {arm: source.per_arm(arm) for arm in arms}
    candidates = arms[1:]
    focus = model.candidate if model is not None else (candidates[0] if candidates else None)
    alpha = corrected_alpha(rules.alpha, len(candidates))
    result: dict[str, Any] = {
        "experiment": experiment,
        "spec": spec,
        "alpha": rules.alpha,
        "comparison_alpha": alpha,
        "correction": "bonferroni",
        "control": arms[0] if len(arms) >= 2 else None,
        "candidate": focus if len(arms) >= 2 else None,
        "candidates": candidates if len(arms) >= 2 else [],
        "sample": sample(spec, per_arm),
        "arms": per_arm,
        "arm_specs": {} if model is None else {n: a.model_dump() for n, a in model.arms.items()},
    }
    if len(arms) >= 2:
        srm = source.srm(arms)
        comparisons = {
            c: _comparison(source, [arms[0], c], rules, alpha, per_arm, srm["flagged"])
            for c in candidates
        }
        result.update({**comparisons[str(focus)], "srm": srm, "comparisons": comparisons})
        named = len(candidates) > 1  # two arms: the sentence as before arms had names
        result["verdict"] = [_named(c, comparisons[c]["decision"], named) for c in candidates]
    result["events"] = [event.as_dict() for event in events if event.action != "define"]
    result["rollout"] = [event.as_dict() for event in events if event.action == "rollout"]
    return result


def _named(candidate: str, decision: dict[str, Any], named: bool) -> str:
    return f"{candidate}: {decision['sentence']}" if named else str(decision["sentence"])


def _comparison(
    source: Figures,
    arms: list[str],
    rules: ExperimentSpec,
    alpha: float,
    per_arm: dict[str, Any],
    srm_flagged: bool,
) -> dict[str, Any]:
    """One candidate against the control, at the (corrected) `alpha`."""
    control, candidate = arms
    diffs = source.differences(control, candidate, alpha)
    limits = margins_for(rules.margins, per_arm[control]["latency_ms"]["p99"]["value"])
    decision = decide(diffs, limits, srm_flagged, alpha, rules.decision_metrics)
    return {
        "decision": decision,
        "differences": diffs,
        "history": source.history(control, candidate, alpha),
        "paired": source.paired(control, candidate),
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
