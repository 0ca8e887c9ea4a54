"""`dualserve experiment report <id>`: the analysis as Markdown and HTML, with plots.

Order of reading: the decision first, then the sample-ratio check (if it fired, nothing
below may be trusted), each metric's confidence sequence over time, the arms, the paired
shadow analysis, and the rollout's steps. Plots are PNGs embedded as base64, so the HTML
needs no network and no side files.

Memory is sized by arms, units and bins, never by the log's rows (issue 23): the analysis
reads the database's aggregates (`analyse_store`), the latency and traffic plots the
database's histograms (`LogStore.histograms`). The row-level `analyse` stays the tests'
oracle.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.experiments.log.histograms import ReportHistograms
from gateway.experiments.log.records import Event
from gateway.experiments.log.store import LogStore
from gateway.experiments.plots import plots
from gateway.experiments.stats.analysis import analyse_store
from gateway.experiments.stats.figures import LOWER_IS_BETTER

_UNITS = {"accuracy": "points", "error_rate": "points"}


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in _UNITS:
        return f"{value * 100:+.2f} pt"
    return f"{value:+.3f} ms"


def _several(result: dict[str, Any]) -> list[str]:
    """The candidates when there are more than one (A/B/n), else []."""
    candidates = result.get("candidates") or []
    return list(candidates) if len(candidates) > 1 else []


def decision_lines(result: dict[str, Any]) -> list[str]:
    decision = result.get("decision")
    if decision is None:
        return ["No decision: the experiment needs two arms with traffic."]
    several = _several(result)
    if several:
        return [
            f"Each candidate against the control {result['control']}, at alpha "
            f"{result['comparison_alpha']:.4g} each ({result['alpha']} over "
            f"{len(several)} comparisons, {result['correction']}).",
            "",
            *(_candidate_decision(c, result["comparisons"][c]["decision"]) for c in several),
        ]
    return [
        f"**{decision['outcome']}** (decided by: {decision['metric']})",
        "",
        decision["sentence"],
    ]


def _candidate_decision(candidate: str, decision: dict[str, Any]) -> str:
    return (
        f"- **{candidate}**: **{decision['outcome']}** (decided by: {decision['metric']}). "
        f"{decision['sentence']}"
    )


def srm_lines(srm: dict[str, Any] | None) -> list[str]:
    if srm is None:
        return ["No sample-ratio check: fewer than two arms."]
    units = ", ".join(f"{arm} {n}" for arm, n in srm["units"].items())
    if srm["p_value"] is None:
        return [f"Units per arm: {units}. Too few units (or no split) for the check yet."]
    shares = ", ".join(f"{arm} {s:.1%}" for arm, s in (srm["expected_shares"] or {}).items())
    state = "**FLAGGED**: the decision is withheld" if srm["flagged"] else "passed"
    return [
        f"Units per arm: {units}; expected shares: {shares}; chi-square "
        f"p = {srm['p_value']:.4g} (flag below {srm['threshold']}): {state}."
    ]


def difference_lines(result: dict[str, Any]) -> list[str]:
    several = _several(result)
    if several:
        lines: list[str] = []
        for candidate in several:
            comparison = result["comparisons"][candidate]
            lines += [f"{candidate} - {result['control']}:", ""]
            lines += [*_difference_table(comparison, result["comparison_alpha"]), ""]
        return lines
    return _difference_table(result, result.get("comparison_alpha", result["alpha"]))


def _difference_table(result: dict[str, Any], alpha: float) -> list[str]:
    diffs = result.get("differences") or {}
    if not diffs:
        return []
    margins = (result.get("decision") or {}).get("margins", {})
    status = (result.get("decision") or {}).get("metrics", {})
    lines = [
        "| metric (candidate - control) | estimate | 95% interval | "
        f"{100 * (1 - alpha):.4g}% confidence sequence | always-valid p | "
        "margin | status |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for metric, d in diffs.items():
        better = "lower" if LOWER_IS_BETTER[metric] else "higher"
        ci, cs = d["ci95"], d["sequence"]
        margin = _fmt(metric, margins[metric]) if metric in margins else "shown only"
        lines.append(
            f"| {metric} ({better} is better) | {_fmt(metric, d['estimate'])} | "
            f"[{_fmt(metric, ci[0])}, {_fmt(metric, ci[1])}] | "
            f"[{_fmt(metric, cs[0])}, {_fmt(metric, cs[1])}] | {d['p_value']} | {margin} | "
            f"{status.get(metric, '-')} |"
        )
    return lines


def paired_lines(paired: dict[str, Any] | None) -> list[str]:
    if not paired:
        return ["No shadow pairs (set the experiment's shadow_sample_rate to mirror requests)."]
    acc, lat = paired["accuracy"], paired["latency_ms"]
    return [
        f"- pairs: {paired['pairs']}, top-1 disagreements: {paired['disagreements']}",
        f"- labelled pairs: {acc['labelled_pairs']}; only control right: "
        f"{acc['control_only_right']}, only candidate right: {acc['candidate_only_right']}; "
        f"McNemar exact p = {acc['mcnemar_exact_p']}",
        f"- latency, candidate - control per request: mean {lat['mean_diff']} ms "
        f"(95% interval {lat['ci95']}, {lat['units']} routing keys), "
        f"median {lat['median_diff']} ms",
    ]


def rollout_lines(result: dict[str, Any]) -> list[str]:
    """The rollout's current step and share, then every transition with its figures."""
    steps = result.get("rollout") or []
    if not steps:
        return ["This experiment has no rollout."]
    last = steps[-1]["details"]
    lines = [
        f"Now: step {last.get('step', '-')}, candidate share {last.get('share', '-')}% "
        f"(last transition: {last.get('kind', '-')}).",
        "",
    ]
    for event in steps:
        d, evidence = event["details"], event["details"].get("evidence") or {}
        when = datetime.fromtimestamp(event["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        figures = [f"step {d.get('step', '-')}", f"candidate {d.get('share', '-')}%"]
        figures.append(f"decided by {d.get('metric', '-')}")
        if evidence.get("units"):
            figures.append(f"units {json.dumps(evidence['units'], sort_keys=True)}")
        if (evidence.get("srm") or {}).get("p_value") is not None:
            figures.append(f"SRM p {evidence['srm']['p_value']}")
        lines.append(
            f"- {when} UTC, {d.get('kind', '-')}: {event['reason']} ({', '.join(figures)})"
        )
    return lines


_HEADER = (
    "| arm | units | requests | error rate | p50 ms | p99 ms [95% CI] | accuracy [95% CI] "
    "| shadow |",
    "|---|---:|---:|---:|---:|---|---|---:|",
)


def _arm_line(arm: str, f: dict[str, Any]) -> str:
    lat, acc = f["latency_ms"], f["accuracy"]
    p99 = f"{lat['p99']['value']} {lat['p99']['ci95']}"
    accuracy = (
        "no feedback yet"
        if acc["value"] is None
        else (f"{acc['value']:.4f} {acc['ci95']} (n={acc['labelled']})")
    )
    cells = [
        arm,
        f["units"],
        f["requests"],
        f["error_rate"]["value"],
        lat["p50"]["value"],
        p99,
        accuracy,
        f["shadow"]["agreement"],
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _arm_label(result: dict[str, Any], arm: str | None) -> str:
    """`tf-v2 (tensorflow v2)`, `torch-pt2 (pytorch on oip latest)`: the arm's name and
    what it serves (and where, when the arm names its server), when the spec says."""
    spec = (result.get("arm_specs") or {}).get(arm)
    if spec is None:
        return str(arm)
    version, server = spec.get("version"), spec.get("server")
    on = f" on {server}" if server else ""
    return f"{arm} ({spec['framework']}{on} {'latest' if version is None else f'v{version}'})"


def role_line(result: dict[str, Any]) -> str:
    """`control A, candidate B` (two arms) or `control A; candidates B, C`, with what
    each arm serves."""
    control = _arm_label(result, result.get("control"))
    several = _several(result)
    if several:
        return f"control {control}; candidates " + ", ".join(_arm_label(result, c) for c in several)
    return f"control {control}, candidate {_arm_label(result, result.get('candidate'))}"


def _sections(result: dict[str, Any]) -> list[tuple[str, list[str]]]:
    role = role_line(result)
    return [
        (f"# Experiment {result['experiment']}", [role]),
        ("## Decision", decision_lines(result)),
        ("## Sample-ratio check", srm_lines(result.get("srm"))),
        ("## Differences", difference_lines(result)),
        ("## Arms", [*_HEADER, *(_arm_line(a, f) for a, f in result["arms"].items())]),
        ("## Paired shadow analysis", paired_lines(result.get("paired"))),
        ("## Rollout", rollout_lines(result)),
        ("## Full analysis", ["```json", json.dumps(result, indent=2), "```"]),
    ]


def _join(sections: list[tuple[str, list[str]]]) -> str:
    return "\n".join(line for title, body in sections for line in (title, "", *body, "")) + "\n"


def markdown(result: dict[str, Any]) -> str:
    """The report's text (without images), decision first."""
    return _join(_sections(result))


def status_markdown(result: dict[str, Any]) -> str:
    """`dualserve experiment status`: the report's text without the arms and the JSON."""
    keep = ("# ", "## Decision", "## Sample", "## Differences", "## Paired", "## Rollout")
    return _join([s for s in _sections(result) if s[0].startswith(keep)])


def write_report(
    store: LogStore, experiment: str, out_dir: Path, events: Sequence[Event] | None = None
) -> tuple[Path, Path]:
    """Write `report.md` and `index.html` for one experiment of the log in `store`;
    returns both paths. `events`: the experiment's (else read from the store).

    Reads aggregates and histograms computed by the database, never the rows: memory is
    sized by the experiment's units, arms and bins.
    """
    result = analyse_store(store, experiment, None, events)
    histograms = store.histograms(experiment, list(result["arms"]))
    return write_files(result, histograms, out_dir)


def write_files(
    result: dict[str, Any], histograms: ReportHistograms, out_dir: Path
) -> tuple[Path, Path]:
    """Write `report.md` and `index.html` from an analysis (`analyse`'s JSON) and the
    log's histograms of its arms; returns both paths."""
    experiment = str(result["experiment"])
    decided = list((result.get("decision") or {}).get("metrics", {}))
    images = plots(histograms, result, decided)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    md_path.write_text(
        md + "".join(f"\n![{n}](data:image/png;base64,{b})\n" for n, b in images.items())
    )
    figures = "".join(
        f'<h2>{n}</h2><img alt="{n}" src="data:image/png;base64,{b}">' for n, b in images.items()
    )
    html_path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(experiment)}</title>"
        f"<body style='font-family:sans-serif;max-width:60em'>"
        f"<pre>{html.escape(md.split('## Full analysis')[0])}</pre>{figures}"
        f"<details><summary>full analysis</summary><pre>{html.escape(md)}</pre></details>"
        "</body>"
    )
    return md_path, html_path
