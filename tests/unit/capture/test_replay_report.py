"""The replay's judgement and report on a capture read back from disk, with answers made
by hand: the counts are the hand-made ones, and the report's files are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gateway.capture.files import CaptureFiles
from gateway.capture.reader import read_capture
from gateway.capture.records import OUTPUT, tensors_of
from gateway.capture.replay import ReplayAnswer
from gateway.capture.replay_report import SELF, judge, write_report
from tests.unit.capture.test_files import record


def answer(outputs: dict[str, np.ndarray] | None, arm: str = "pytorch") -> ReplayAnswer:
    return ReplayAnswer(200 if outputs else 503, 0.004, outputs, arm, 1)


def test_judge_counts_what_was_made_and_writes_the_report(tmp_path: Path) -> None:
    files = CaptureFiles(tmp_path / "capture", 1 << 30, 3600.0, 1e9, None)
    files.write([record(i) for i in range(40)])
    files.close_all()
    frame = read_capture(tmp_path / "capture")
    rows = frame.to_dict("records")
    captured = [tensors_of(r, OUTPUT) for r in rows]
    top1 = [int(c["class"][0]) for c in captured]
    floor = [answer(c, "tensorflow") for c in captured]
    flipped = []
    for i, c in enumerate(captured):
        probs = c["probabilities"].copy()
        if i < 10:  # the first ten answered with another class
            probs = np.roll(probs, 1, axis=1)
        flipped.append(answer({"probabilities": probs}))
    flipped[39] = answer(None)  # one failure
    labels = {r["request_id"]: top1[i] for i, r in enumerate(rows)}  # the captured arm is right
    j = judge(frame, floor, {"pytorch": flipped}, labels)
    assert j.floor.disagreements == 0 and j.floor.diff_max == 0.0 and j.floor.arm == SELF
    arm = j.arms["pytorch"]
    assert (arm.examples, arm.failed, arm.disagreements) == (39, 1, 10)
    assert (arm.control_only, arm.candidate_only, arm.labelled) == (10, 0, 39)
    assert arm.beyond_floor == 10 and arm.other_arm == 0
    assert "worse" in j.sentences["pytorch"] and "10 of 39" in j.sentences["pytorch"]
    paths = write_report(j, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["arms"]["pytorch"]["disagreements"] == 10
    assert "data:image/png;base64," in paths["html"].read_text()
    assert "| pytorch | 40 | 1 | 39 |" in paths["markdown"].read_text()
