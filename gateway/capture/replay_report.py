"""`dualserve replay`'s judgement and report: `judge` compares every replayed arm with the
captured answers (`compare`), `write_report` writes `replay.md`, `index.html` (with the
plots, base64 PNGs as the experiment report has them) and `replay.json`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.capture.compare import (
    NO_ANSWER,
    ArmComparison,
    Examples,
    compare_arm,
    examples_of,
    verdict,
)
from gateway.capture.records import OUTPUT, tensors_of
from gateway.capture.replay import ReplayAnswer

if TYPE_CHECKING:
    import pandas as pd

SELF = "captured arm (noise floor)"


@dataclass
class Judgement:
    """Every arm's comparison, the noise floor's, the arms' pairwise agreement and one
    sentence per arm."""

    model: str
    requests: int
    floor: ArmComparison
    arms: dict[str, ArmComparison]
    pairwise: dict[str, float]
    sentences: dict[str, str]
    diffs: dict[str, np.ndarray]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "requests": self.requests, "floor": self.floor.as_dict(),
            "arms": {a: c.as_dict() for a, c in self.arms.items()},
            "pairwise_agreement": self.pairwise, "sentences": self.sentences,
        }  # fmt: skip


def _batches(frame: pd.DataFrame) -> list[int]:
    return [int(np.asarray(shape)[0]) if len(shape) else 1 for shape in _first_shapes(frame)]


def _first_shapes(frame: pd.DataFrame) -> list[Any]:
    column = next(c for c in frame.columns if c.startswith("input.") and c.endswith(".shape"))
    return list(frame[column])


def example_labels(
    frame: pd.DataFrame, batches: Sequence[int], labels: Mapping[str, int]
) -> np.ndarray:
    """Per example, the label fed back for its request (requests of one example only:
    a label names one class), `NO_ANSWER` elsewhere."""
    out = np.full(int(sum(batches)), NO_ANSWER, np.int64)
    at = 0
    for request_id, batch in zip(frame["request_id"], batches, strict=True):
        if batch == 1 and request_id in labels:
            out[at] = int(labels[request_id])
        at += batch
    return out


def _replayed(answers: Sequence[ReplayAnswer], batches: Sequence[int]) -> Examples:
    return examples_of([a.outputs for a in answers], batches)


def _one(
    name: str, answers: Sequence[ReplayAnswer], captured: Examples, batches: Sequence[int],
    labels: np.ndarray, floor_max: float,
) -> tuple[ArmComparison, Examples]:  # fmt: skip
    replayed = _replayed(answers, batches)
    latency = np.array([a.latency_s * 1000 for a in answers if a.outputs is not None])
    by: dict[str, int] = {}
    for a in answers:
        key = f"{a.arm}:{a.version}" if a.arm else "no answer"
        by[key] = by.get(key, 0) + 1
    failed = sum(a.outputs is None for a in answers)
    result = compare_arm(name, captured, replayed, labels, latency, failed, floor_max, by)
    result.requests = len(answers)
    result.other_arm = (
        sum(
            a.outputs is not None and a.arm is not None and a.arm != name.split(":")[0]
            for a in answers
        )
        if name != SELF
        else 0
    )
    return result, replayed


def judge(
    frame: pd.DataFrame,
    floor_answers: Sequence[ReplayAnswer],
    arm_answers: Mapping[str, Sequence[ReplayAnswer]],
    labels: Mapping[str, int],
) -> Judgement:
    """Compare the noise floor and every arm with the captured answers (rows of `frame`
    in the answers' order)."""
    batches = _batches(frame)
    rows = frame.to_dict("records")
    captured = examples_of(
        [tensors_of(r, OUTPUT) if r["status"] == 200 else None for r in rows], batches
    )
    per_example = example_labels(frame, batches, labels)
    floor, floor_ex = _one(SELF, floor_answers, captured, batches, per_example, float("nan"))
    floor_max = floor.diff_max
    floor.beyond_floor = 0
    arms: dict[str, ArmComparison] = {}
    replayed: dict[str, Examples] = {}
    diffs = {SELF: _diffs(captured, floor_ex)}
    for name, answers in arm_answers.items():
        arms[name], replayed[name] = _one(name, answers, captured, batches, per_example, floor_max)
        diffs[name] = _diffs(captured, replayed[name])
    pairwise = {}
    names = list(replayed)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = (replayed[a].top1 != NO_ANSWER) & (replayed[b].top1 != NO_ANSWER)
            same = replayed[a].top1[both] == replayed[b].top1[both]
            pairwise[f"{a} vs {b}"] = float(same.mean()) if same.size else float("nan")
    sentences = {name: verdict(result, floor) for name, result in arms.items()}
    model = str(frame["model"].iloc[0]) if len(frame) else ""
    return Judgement(model, len(frame), floor, arms, pairwise, sentences, diffs)


def _diffs(captured: Examples, replayed: Examples) -> np.ndarray:
    both = (captured.top1 != NO_ANSWER) & (replayed.top1 != NO_ANSWER)
    if not both.any():
        return np.zeros(0)
    return np.nanmax(np.abs(captured.probs[both] - replayed.probs[both]), axis=1, initial=0.0)


def markdown(j: Judgement) -> str:
    """The report as markdown: the sentences first, then one table row per arm."""
    lines = [f"# Replay of {j.requests} captured requests of {j.model}", ""]
    lines += [f"- {s}" for s in j.sentences.values()] or ["- no arm was replayed"]
    lines += [
        "", "| arm | requests | failed | examples | top-1 agreement | max / p99 prob diff |"
        " beyond floor | chi-square p (classes) | KS p (top-1 prob) | labelled | accuracy"
        " (captured / arm) | McNemar b / c, p | latency p50 / p90 / p99 ms | answered by |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]  # fmt: skip
    for c in [j.floor, *j.arms.values()]:
        acc = f"{_p(c.accuracy_captured)} / {_p(c.accuracy_arm)}" if c.labelled else "n/a"
        mcn = f"{c.control_only} / {c.candidate_only}, {_g(c.mcnemar_p)}" if c.labelled else "n/a"
        lat = c.latency_ms
        lines.append(
            f"| {c.arm} | {c.requests} | {c.failed} | {c.examples} | {_p(c.agreement)} |"
            f" {c.diff_max:.3g} / {c.diff_p99:.3g} | {c.beyond_floor} | {_g(c.chi2_p)} |"
            f" {_g(c.ks_p)} | {c.labelled} | {acc} | {mcn} |"
            f" {lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} |"
            f" {', '.join(f'{k} ({v})' for k, v in c.answered_by.items())} |"
        )
    if j.pairwise:
        lines += ["", "Arms against each other (top-1 agreement):", ""]
        lines += [f"- {pair}: {_p(share)}" for pair, share in j.pairwise.items()]
    lines += [
        "", "The noise floor is the captured arm (its framework and version) replayed against"
        " itself; `beyond floor` counts examples whose largest probability difference passes"
        " the floor's largest. Latency is the replay client's, at the replay's pace.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(j: Judgement) -> str:
    """Base64 PNG: the per-example probability differences of each arm and of the floor,
    and each arm's replayed latency percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, diffs in j.diffs.items():
        if diffs.size:
            left.hist(
                np.maximum(diffs, 1e-9), bins=np.logspace(-9, 0, 37), histtype="step", label=name
            )
    left.set_xscale("log")
    left.set_xlabel("largest |probability difference| per example (1e-9 = none)")
    left.set_ylabel("examples")
    left.legend(fontsize=7)
    names = [j.floor.arm, *j.arms]
    results = [j.floor, *j.arms.values()]
    for k, q in enumerate(("p50", "p90", "p99")):
        right.bar(
            np.arange(len(names)) + k * 0.27, [r.latency_ms[q] for r in results], 0.27, label=q
        )
    right.set_xticks(
        np.arange(len(names)) + 0.27, [n.replace(" (", "\n(") for n in names], fontsize=7
    )
    right.set_ylabel("replay latency, ms")
    right.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(j: Judgement, out_dir: Path) -> dict[str, Path]:
    """`replay.md`, `index.html` (the markdown and the plot) and `replay.json` in
    `out_dir` (made if missing); returns their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(j)
    paths = {"markdown": out_dir / "replay.md", "html": out_dir / "index.html",
             "json": out_dir / "replay.json"}  # fmt: skip
    paths["markdown"].write_text(md)
    figure = (
        f"<img alt='probability differences and latency' src='data:image/png;base64,{plot(j)}'>"
    )
    paths["html"].write_text(
        f"<!doctype html><meta charset='utf-8'><title>replay of {html.escape(j.model)}</title>"
        f"<pre>{html.escape(md)}</pre>{figure}"
    )
    paths["json"].write_text(json.dumps(j.as_dict(), indent=2, default=float))
    return paths


def _p(share: float | None) -> str:
    return "n/a" if share is None or np.isnan(share) else f"{100 * share:.2f}%"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
